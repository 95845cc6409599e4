package leaks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/clock"
)

func pemOf(t *testing.T, pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func keyListJSON(t *testing.T, keys map[string]any) []byte {
	var l keyList
	for id, pub := range keys {
		l.PublicKeys = append(l.PublicKeys, struct {
			KeyIdentifier string `json:"key_identifier"`
			Key           string `json:"key"`
			IsCurrent     bool   `json:"is_current"`
		}{id, pemOf(t, pub), true})
	}
	b, _ := json.Marshal(l)
	return b
}

func TestVerify(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	src := StaticKeys{"k1": &k.PublicKey}
	body := []byte(`[{"token":"x"}]`)
	digest := sha256.Sum256(body)
	sig, _ := ecdsa.SignASN1(rand.Reader, k, digest[:])
	good := base64.StdEncoding.EncodeToString(sig)
	if err := Verify(t.Context(), src, "k1", good, body); err != nil {
		t.Fatal(err)
	}
	cases := map[string]error{
		"unsigned":    Verify(t.Context(), src, "k1", "", body),
		"no key id":   Verify(t.Context(), src, "", good, body),
		"unknown key": Verify(t.Context(), src, "k2", good, body),
		"tampered":    Verify(t.Context(), src, "k1", good, append(body, ' ')),
		"not base64":  Verify(t.Context(), src, "k1", "%%%", body),
	}
	want := map[string]error{"unsigned": ErrUnsigned, "no key id": ErrUnsigned, "unknown key": ErrUnknownKey,
		"tampered": ErrBadSignature, "not base64": ErrBadSignature}
	for name, err := range cases {
		if !errors.Is(err, want[name]) {
			t.Errorf("%s: %v, want %v", name, err, want[name])
		}
	}
}

func TestKeysFile(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	path := filepath.Join(t.TempDir(), "keys.json")
	os.WriteFile(path, keyListJSON(t, map[string]any{"k1": &k.PublicKey}), 0o600)
	keys, err := KeysFile(path)
	if err != nil || keys["k1"] == nil || !keys["k1"].Equal(&k.PublicKey) {
		t.Fatalf("KeysFile: %v", err)
	}
	r, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, data := range map[string][]byte{
		"rsa":      keyListJSON(t, map[string]any{"k": &r.PublicKey}),
		"p384":     keyListJSON(t, map[string]any{"k": &p384.PublicKey}),
		"not pem":  []byte(`{"public_keys":[{"key_identifier":"k","key":"nope"}]}`),
		"not json": []byte(`nope`),
	} {
		if _, err := parseKeys(data); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestGitHubKeysFetchesCachesAndRefetches(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	published := map[string]any{"k1": &k1.PublicKey}
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Write(keyListJSON(t, published))
	}))
	defer srv.Close()
	clk := clock.NewManual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	g := &GitHubKeys{URL: srv.URL, Now: clk.Now}
	if k, err := g.Key(t.Context(), "k1"); err != nil || !k.Equal(&k1.PublicKey) {
		t.Fatalf("k1: %v", err)
	}
	g.Key(t.Context(), "k1")
	if fetches.Load() != 1 {
		t.Fatalf("%d fetches for a cached key", fetches.Load())
	}
	// An unknown identifier refetches at most once a minute.
	for range 5 {
		if _, err := g.Key(t.Context(), "bogus"); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("bogus: %v", err)
		}
	}
	if fetches.Load() != 1 {
		t.Fatalf("%d fetches after bogus identifiers within a minute", fetches.Load())
	}
	// GitHub adds a key: found after the minute.
	published["k2"] = &k2.PublicKey
	clk.Advance(time.Minute)
	if k, err := g.Key(t.Context(), "k2"); err != nil || !k.Equal(&k2.PublicKey) || fetches.Load() != 2 {
		t.Fatalf("k2: %v, %d fetches", err, fetches.Load())
	}
	// GitHub down after a successful fetch: the cached keys still serve.
	srv.Close()
	clk.Advance(2 * time.Hour)
	if _, err := g.Key(t.Context(), "k1"); err != nil {
		t.Fatalf("k1 with GitHub down: %v", err)
	}
	// Never fetched and GitHub down: an error, not a silent refusal.
	if _, err := (&GitHubKeys{URL: srv.URL}).Key(t.Context(), "k1"); err == nil || errors.Is(err, ErrUnknownKey) {
		t.Fatalf("no keys at all: %v", err)
	}
}
