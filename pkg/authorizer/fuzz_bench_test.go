package authorizer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/policy"
	"github.com/keyward/keyward/pkg/route"
	"github.com/keyward/keyward/pkg/store"
)

// FuzzAuthorize feeds arbitrary Authorization headers and arbitrary event
// JSON to the authorizer: it must never panic, and it may allow a request
// only when the credential is the one valid token.
func FuzzAuthorize(f *testing.F) {
	for _, name := range []string{"authorizer-bearer.json", "authorizer-basic.json", "authorizer-missing.json",
		"authorizer-two-credentials.json", "authorizer-post-invoices.json", "authorizer-browser-ipv6.json"} {
		raw, err := os.ReadFile(filepath.Join("..", "..", "events", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add("Bearer ${TOKEN}", raw)
	}
	f.Add("Basic ${BASIC}", []byte(`{}`))
	f.Add("bearer  x", []byte(`{"headers":{"authorization":"x"},"multiValueHeaders":{"AUTHORIZATION":["a","b"]}}`))

	e := newEnv(f, storetest.Temp(f), clock.NewManual(start))
	valid := e.key(lifecycle.CreateParams{Scopes: []string{"*"}}).Token.Plain()
	e.logs = &bytes.Buffer{}
	e.build()
	f.Fuzz(func(t *testing.T, header string, raw []byte) {
		raw = bytes.ReplaceAll(raw, []byte("${TOKEN}"), []byte(valid))
		var ev events.APIGatewayCustomAuthorizerRequestTypeRequest
		if json.Unmarshal(raw, &ev) != nil {
			return
		}
		header = string(bytes.ReplaceAll([]byte(header), []byte("${TOKEN}"), []byte(valid)))
		if ev.Headers == nil {
			ev.Headers = map[string]string{}
		}
		ev.Headers["Authorization"] = header
		resp, err := e.a.Authorize(context.Background(), ev)
		if err != nil || !policy.Allows(resp.PolicyDocument, ev.MethodArn) {
			return
		}
		if header != "Bearer "+valid && !bytes.EqualFold([]byte(header[:min(len(header), 6)]), []byte("bearer")) &&
			!bytes.EqualFold([]byte(header[:min(len(header), 5)]), []byte("basic")) {
			t.Fatalf("allowed with header %q", header)
		}
		if resp.Context["key_id"] != "key_"+valid[8:20] {
			t.Fatalf("allowed as %v", resp.Context["key_id"])
		}
	})
}

// readOnlyStore holds keys in a map: the key read of a decision without
// the store's own cost (a DynamoDB GetItem in AWS, measured apart), so that
// a benchmark shows what the authorizer itself spends.
type readOnlyStore map[string]store.Key

func (s readOnlyStore) GetKey(_ context.Context, id string) (store.Key, error) {
	if k, ok := s[id]; ok {
		return k, nil
	}
	return store.Key{}, store.ErrNotFound
}

func (readOnlyStore) TouchKey(context.Context, string, time.Time, time.Duration) (bool, error) {
	return false, nil
}

func (readOnlyStore) RehashKey(context.Context, string, []byte, int) error { return nil }

// benchAuthorizer is an authorizer with one key in a map, logging JSON to
// nowhere: the whole decision, minus the network and the store.
func benchAuthorizer(b *testing.B, decisions io.Writer) (*authorizer.Authorizer, events.APIGatewayCustomAuthorizerRequestTypeRequest) {
	b.Helper()
	e := newEnv(b, storetest.Temp(b), clock.NewManual(start))
	k := e.key(lifecycle.CreateParams{Scopes: []string{"invoices:read", "customers:read"}, AllowedIPs: []string{"203.0.113.0/24"}})
	stored, err := e.st.GetKey(b.Context(), k.Key.ID)
	if err != nil {
		b.Fatal(err)
	}
	stored.LastUsedAt = time.Now() // as a key in use: no last_used_at write due
	e.logs = &bytes.Buffer{}
	format, _ := apikey.NewFormat("sk")
	a, err := authorizer.New(authorizer.Config{Store: readOnlyStore{stored.ID: stored}, Peppers: e.ring, Format: format, Routes: e.routes,
		Gateway: e.gw, Decisions: decisions, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join("..", "..", "events", "authorizer-bearer.json"))
	var ev events.APIGatewayCustomAuthorizerRequestTypeRequest
	if err := json.Unmarshal(bytes.ReplaceAll(raw, []byte("${TOKEN}"), []byte(k.Token.Plain())), &ev); err != nil {
		b.Fatal(err)
	}
	return a, ev
}

// BenchmarkAuthorize is one full decision: header, parse, key read (from
// a map: the store's own cost is its benchmarks'), HMAC, status, IP
// allow-list, policy, context, and its share of the decision log and
// metrics. Compare with BenchmarkHMACFloor in package pepper.
func BenchmarkAuthorize(b *testing.B) { benchmarkAuthorize(b, io.Discard) }

// BenchmarkAuthorizeRefused is a decision refused after the HMAC (an IP
// outside the key's allow-list), whose log line is written one by one.
func BenchmarkAuthorizeRefused(b *testing.B) {
	a, ev := benchAuthorizer(b, io.Discard)
	ev.RequestContext.Identity.SourceIP = "198.51.100.7"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp, err := a.Authorize(ctx, ev); err != nil || resp.Context["error_code"] != authorizer.ReasonIP {
			b.Fatal(err, resp.Context)
		}
	}
}

// BenchmarkAuthorizeUnlogged is the same decision with no decision log:
// what the decision costs apart from writing it down.
func BenchmarkAuthorizeUnlogged(b *testing.B) { benchmarkAuthorize(b, nil) }

func benchmarkAuthorize(b *testing.B, decisions io.Writer) {
	a, ev := benchAuthorizer(b, decisions)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := a.Authorize(ctx, ev)
		if err != nil || resp.PrincipalID == "" {
			b.Fatal(err)
		}
	}
}

// BenchmarkInit is the authorizer's cold-start work with the store and KMS
// in memory: configuration, route table, pepper load and unwrap.
func BenchmarkInit(b *testing.B) {
	kr, _ := pepper.NewLocalKeyring(bytes.Repeat([]byte{5}, pepper.Size))
	st := storetest.Temp(b)
	if _, err := pepper.Create(context.Background(), st, kr, time.Now()); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ring, err := pepper.Load(ctx, st, kr)
		if err != nil {
			b.Fatal(err)
		}
		rt, err := config.Routes("")
		if err != nil {
			b.Fatal(err)
		}
		routes, err := route.Compile(config.APIRoutes(rt)...)
		if err != nil {
			b.Fatal(err)
		}
		gw, err := config.LoadGateway()
		if err != nil {
			b.Fatal(err)
		}
		format, _ := apikey.NewFormat("sk")
		if _, err := authorizer.New(authorizer.Config{Store: st, Peppers: ring, Format: format, Routes: routes, Gateway: gw}); err != nil {
			b.Fatal(err)
		}
	}
}
