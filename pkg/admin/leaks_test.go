package admin_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/admin"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/leaks"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

// github signs reports as GitHub does, with a test key pair.
type github struct {
	id  string
	key *ecdsa.PrivateKey
}

func newGitHub(t *testing.T) github {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return github{id: "test-key-1", key: k}
}

func (g github) sign(t *testing.T, body []byte) string {
	digest := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, g.key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

type report struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

func reportsBody(tokens ...string) []byte {
	var rs []report
	for i, tok := range tokens {
		rs = append(rs, report{Token: tok, Type: "keyward_api_key", URL: fmt.Sprintf("https://github.com/o/r/blob/main/f%d.env", i), Source: "content"})
	}
	b, _ := json.Marshal(rs)
	return b
}

// countingReads counts the leak responder's key reads.
type countingReads struct {
	leaks.Store
	n atomic.Int64
}

func (c *countingReads) GetKey(ctx context.Context, id string) (store.Key, error) {
	c.n.Add(1)
	return c.Store.GetKey(ctx, id)
}

func (h *harness) withGitHub(g github) *countingReads {
	reads := &countingReads{Store: h.leaks.Responder.Store}
	h.leaks.Keys = leaks.StaticKeys{g.id: &g.key.PublicKey}
	h.leaks.Responder.Store = reads
	h.build()
	return reads
}

func (h *harness) secret(c admin.Caller, env string) (string, string) {
	h.t.Helper()
	_, raw := h.ok(c, "POST", "/v1/keys", map[string]any{"name": "leaky", "environment": env, "scopes": []string{"invoices:read"}}, 201)
	var out struct {
		Key    struct{ ID string }
		Secret string
	}
	_ = json.Unmarshal(raw, &out)
	return out.Key.ID, out.Secret
}

func (h *harness) statusOf(id string) (store.KeyStatus, []string) {
	h.t.Helper()
	raw, _ := apikey.ParsePublicID(id)
	k, err := h.st.GetKey(h.t.Context(), raw)
	if err != nil {
		h.t.Fatal(err)
	}
	return k.Status, k.Notices
}

func TestGitHubLeakReports(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		g := newGitHub(t)
		h.withGitHub(g)
		liveID, live := h.secret(h.writer, "live")
		testID, test := h.secret(h.testAdmin, "test")
		deadID, dead := h.secret(h.writer, "live")
		h.ok(h.writer, "POST", "/v1/keys/"+deadID+"/revoke", nil, 200)
		betaID, beta := h.secret(h.beta, "live")
		format, _ := apikey.NewFormat("sk")
		unknown, _ := format.Generate(apikey.Live)
		forged := live[:20] + strings.Repeat("A", 32) + live[52:] // wrong secret, and checksum
		body := reportsBody(live, test, dead, beta, "sk_live_garbage", unknown.Plain(), forged, live)

		flushes := h.flusher.count()
		_, raw := h.ok(admin.Caller{RequestID: "gh-1"}, "POST", "/v1/leaks/github", body, 200,
			"Github-Public-Key-Identifier", g.id, "Github-Public-Key-Signature", g.sign(t, body))
		var feedback []struct{ TokenHash, TokenType, Label string }
		if err := json.Unmarshal(raw, &feedback); err != nil || len(feedback) != 8 {
			t.Fatalf("feedback %s", raw)
		}
		labels := ""
		for i, f := range feedback {
			var rep []report
			_ = json.Unmarshal(body, &rep)
			sum := sha256.Sum256([]byte(rep[i].Token))
			if f.TokenHash != "" && f.TokenHash != hex.EncodeToString(sum[:]) {
				t.Fatalf("feedback %d names another token", i)
			}
			labels += f.Label[:1]
		}
		var parsed []map[string]string
		_ = json.Unmarshal(raw, &parsed)
		// live, test and beta are real; a dead key's token opens nothing
		// and cannot be told from a forgery; garbage, unknown, forged are
		// not ours; the repeated live token is real again.
		if parsed[0]["token_hash"] == "" || labels != "ttftffft" {
			t.Fatalf("labels %s: %s", labels, raw)
		}
		// Every real leaked key is revoked, test keys too.
		for id, want := range map[string]store.KeyStatus{liveID: store.KeyRevoked, testID: store.KeyRevoked, betaID: store.KeyRevoked} {
			status, notices := h.statusOf(id)
			if status != want || fmt.Sprint(notices) != "[leaked]" {
				t.Errorf("key %s after the report: %s %v, want %s [leaked]", id, status, notices, want)
			}
		}
		if status, notices := h.statusOf(deadID); status != store.KeyRevoked || len(notices) != 0 {
			t.Errorf("the dead key after the report: %s %v", status, notices)
		}
		if h.flusher.count() != flushes+1 {
			t.Fatal("revocations did not flush the authorizer cache")
		}
		leakEvents := func(tenant string) int {
			page, _ := h.st.ListAudit(t.Context(), tenant, store.AuditQuery{Limit: 100})
			n := 0
			for _, a := range page.Entries {
				if a.Action == "key.leaked" {
					n++
					if a.Details["url"] == "" || a.Details["source"] != "content" || a.Actor != "github:secret-scanning" {
						t.Errorf("key.leaked entry %+v", a)
					}
				}
			}
			return n
		}
		if leakEvents("acme") != 2 || leakEvents("beta") != 1 {
			t.Fatalf("key.leaked entries: acme %d beta %d", leakEvents("acme"), leakEvents("beta"))
		}

		// GitHub resends the same report: the same answer, nothing changed.
		hdr, again := h.ok(admin.Caller{RequestID: "gh-2"}, "POST", "/v1/leaks/github", body, 200,
			"Github-Public-Key-Identifier", g.id, "Github-Public-Key-Signature", g.sign(t, body))
		if string(again) != string(raw) || hdr.Get("Idempotent-Replayed") != "true" || leakEvents("acme") != 2 {
			t.Fatalf("replay: %v %s", hdr, again)
		}
	})
}

// failingReads fails the leak responder's key reads with err.
type failingReads struct {
	leaks.Store
	err error
}

func (f failingReads) GetKey(context.Context, string) (store.Key, error) { return store.Key{}, f.err }

// TestFailedReportIsAnsweredAgain: a report whose handling failed is not
// kept for replay, whatever the failure's answer: GitHub's retry runs it.
func TestFailedReportIsAnsweredAgain(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		g := newGitHub(t)
		h.withGitHub(g)
		liveID, live := h.secret(h.writer, "live")
		body := reportsBody(live)
		headers := []string{"Github-Public-Key-Identifier", g.id, "Github-Public-Key-Signature", g.sign(t, body)}
		working := h.leaks.Responder.Store
		for _, err := range []error{errors.New("throttled"), &lifecycle.ValidationError{Field: "url", Message: "is too long"}} {
			h.leaks.Responder.Store = failingReads{Store: working, err: err}
			h.build()
			if status, _, out := h.do(admin.Caller{}, "POST", "/v1/leaks/github", body, headers...); status < 400 {
				t.Fatalf("%v: answered %d %s", err, status, out)
			}
		}
		h.leaks.Responder.Store = working
		h.build()
		hdr, raw := h.ok(admin.Caller{}, "POST", "/v1/leaks/github", body, 200, headers...)
		if hdr.Get("Idempotent-Replayed") != "" || !strings.Contains(string(raw), "true_positive") {
			t.Fatalf("the retry: %v %s", hdr, raw)
		}
		if status, _ := h.statusOf(liveID); status != store.KeyRevoked {
			t.Fatalf("the key after the retry: %s", status)
		}
	})
}

func TestGitHubReportsMustBeSigned(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		g := newGitHub(t)
		reads := h.withGitHub(g)
		liveID, live := h.secret(h.writer, "live")
		body := reportsBody(live)
		other := newGitHub(t)
		cases := []struct {
			name    string
			body    []byte
			headers []string
			status  int
		}{
			{"unsigned", body, nil, 401},
			{"no key id", body, []string{"Github-Public-Key-Signature", g.sign(t, body)}, 401},
			{"unknown key id", body, []string{"Github-Public-Key-Identifier", "nope", "Github-Public-Key-Signature", g.sign(t, body)}, 401},
			{"signed by another key", body, []string{"Github-Public-Key-Identifier", g.id, "Github-Public-Key-Signature", other.sign(t, body)}, 401},
			{"signature not base64", body, []string{"Github-Public-Key-Identifier", g.id, "Github-Public-Key-Signature", "!!"}, 401},
			{"body changed after signing", reportsBody(live, live), []string{"Github-Public-Key-Identifier", g.id, "Github-Public-Key-Signature", g.sign(t, body)}, 401},
		}
		for _, c := range cases {
			h.fails(admin.Caller{}, "POST", "/v1/leaks/github", c.body, c.status, "unauthorized", "", c.headers...)
		}
		malformed := []byte(`{"token":"x"}`)
		h.fails(admin.Caller{}, "POST", "/v1/leaks/github", malformed, 400, "invalid_request", "",
			"Github-Public-Key-Identifier", g.id, "Github-Public-Key-Signature", g.sign(t, malformed))
		huge := []byte(`[` + strings.Repeat(`{"token":"sk_live_x","type":"t","url":"u","source":"s"},`, 20000) + `{}]`)
		h.fails(admin.Caller{}, "POST", "/v1/leaks/github", huge, 413, "body_too_large", "",
			"Github-Public-Key-Identifier", g.id, "Github-Public-Key-Signature", g.sign(t, huge))
		if status, notices := h.statusOf(liveID); status != store.KeyActive || len(notices) != 0 || reads.n.Load() != 0 {
			t.Fatalf("refused reports changed something: %s %v, %d reads", status, notices, reads.n.Load())
		}
	})
}

// TestThousandTokens: a large report costs one key read per well-formed
// token and none for garbage.
func TestThousandTokens(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		g := newGitHub(t)
		reads := h.withGitHub(g)
		format, _ := apikey.NewFormat("sk")
		var tokens []string
		for i := range 1000 {
			if i%2 == 0 {
				tok, _ := format.Generate(apikey.Live) // well-formed, unknown
				tokens = append(tokens, tok.Plain())
			} else {
				tokens = append(tokens, fmt.Sprintf("sk_live_%050d", i)) // bad checksum
			}
		}
		body := reportsBody(tokens...)
		_, raw := h.ok(admin.Caller{}, "POST", "/v1/leaks/github", body, 200,
			"Github-Public-Key-Identifier", g.id, "Github-Public-Key-Signature", g.sign(t, body))
		if n := reads.n.Load(); n != 500 {
			t.Fatalf("%d key reads for 500 well-formed tokens", n)
		}
		if strings.Count(string(raw), "false_positive") != 1000 {
			t.Fatal("not every token was answered")
		}
	})
}

func TestTenantReportsItsOwnLeak(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		liveID, _ := h.secret(h.writer, "live")
		testID, _ := h.secret(h.testAdmin, "test")
		otherID, _ := h.secret(h.writer, "live")
		flushes := h.flusher.count()
		_, raw := h.ok(h.writer, "POST", "/v1/keys/"+liveID+"/report-leak", map[string]string{"url": "https://pastebin.example/x", "source": "paste"}, 200)
		if !strings.Contains(string(raw), `"status":"revoked"`) || h.flusher.count() != flushes+1 {
			t.Fatalf("reporting a live key: %s", raw)
		}
		// A test key is revoked too, and only by a key of its environment.
		h.fails(h.writer, "POST", "/v1/keys/"+testID+"/report-leak", nil, 404, "not_found", "")
		_, raw = h.ok(h.testAdmin, "POST", "/v1/keys/"+testID+"/report-leak", nil, 200)
		if !strings.Contains(string(raw), `"status":"revoked"`) {
			t.Fatalf("reporting a test key: %s", raw)
		}
		h.fails(h.beta, "POST", "/v1/keys/"+otherID+"/report-leak", nil, 404, "not_found", "")
		h.fails(h.writer, "POST", "/v1/keys/"+otherID+"/report-leak", map[string]string{"url": strings.Repeat("u", 3000)}, 400, "invalid_request", "url")
		h.fails(h.writer, "POST", "/v1/keys/"+h.admin.KeyID+"/report-leak", nil, 403, "insufficient_scope", "")
		h.fails(h.reader, "POST", "/v1/keys/"+otherID+"/report-leak", nil, 403, "insufficient_scope", "")
	})
}

// TestReportLeakAfterExpiryKeepsItDue: a report about a key past its
// expiry, before the sweep came, leaves the stored status alone: the sweep
// still finds the key and ends its cached decisions.
func TestReportLeakAfterExpiryKeepsItDue(t *testing.T) {
	forEachStore(t, func(t *testing.T, h *harness) {
		h.leaks.Responder.Policy = leaks.Flag
		h.build()
		k := h.create(h.writer, map[string]any{"name": "short", "environment": "live", "scopes": []string{"invoices:read"}, "expires_in": 3})
		h.clk.Advance(4 * time.Second)
		_, raw := h.ok(h.writer, "POST", "/v1/keys/"+k.ID+"/report-leak", nil, 200)
		if !strings.Contains(string(raw), `"status":"expired"`) {
			t.Fatalf("the report shows %s", raw)
		}
		id, _ := apikey.ParsePublicID(k.ID)
		page, err := h.st.ListExpiring(t.Context(), store.ExpiryQuery{Before: h.clk.Now(), Limit: 10})
		if err != nil || len(page.Keys) != 1 || page.Keys[0].ID != id || page.Keys[0].Status != store.KeyActive {
			t.Fatalf("after the report the sweep sees %v %+v", err, page.Keys)
		}
	})
}
