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

// benchAuthorizer is an authorizer over the in-memory store with one key,
// logging JSON to nowhere: the whole decision, minus the network.
func benchAuthorizer(b *testing.B, log *slog.Logger) (*authorizer.Authorizer, events.APIGatewayCustomAuthorizerRequestTypeRequest) {
	b.Helper()
	e := newEnv(b, storetest.Temp(b), clock.NewManual(start))
	k := e.key(lifecycle.CreateParams{Scopes: []string{"invoices:read", "customers:read"}, AllowedIPs: []string{"203.0.113.0/24"}})
	e.logs = &bytes.Buffer{}
	format, _ := apikey.NewFormat("sk")
	a, err := authorizer.New(authorizer.Config{Store: e.st.Store, Peppers: e.ring, Format: format, Routes: e.routes,
		Gateway: e.gw, Logger: log, Now: e.clk.Now})
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

// BenchmarkAuthorize is one full decision: header, parse, store read,
// HMAC, status, IP allow-list, all-routes policy, context, log line and
// metrics. Compare with BenchmarkHMACFloor in package pepper.
func BenchmarkAuthorize(b *testing.B) {
	benchmarkAuthorize(b, slog.New(slog.NewJSONHandler(io.Discard, nil)))
}

// BenchmarkAuthorizeUnlogged is the same decision with the log line
// switched off: what the decision costs apart from writing it down.
func BenchmarkAuthorizeUnlogged(b *testing.B) {
	benchmarkAuthorize(b, slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError + 1})))
}

func benchmarkAuthorize(b *testing.B, log *slog.Logger) {
	a, ev := benchAuthorizer(b, log)
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
		routes, err := route.Compile(rt, config.AdminRoutes())
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
