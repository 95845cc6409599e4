package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLeakedKeyReport: GitHub (a test key pair, named in the file given
// by KEYWARD_GITHUB_KEYS_FILE) reports a live key found in public code; the
// key is refused on the very next request, though a decision was cached.
func TestLeakedKeyReport(t *testing.T) {
	t.Parallel()
	signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&signer.PublicKey)
	list, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{
		"key_identifier": "e2e-key", "is_current": true,
		"key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	}}})
	keysFile := filepath.Join(t.TempDir(), "github-keys.json")
	if err := os.WriteFile(keysFile, list, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, stackOptions{env: []string{"KEYWARD_GITHUB_KEYS_FILE=" + keysFile}})
	_, secret, _ := s.createKey(s.adminKey(), `{"name":"leaky","environment":"live","scopes":["invoices:read"]}`)
	if r := s.get("/invoices", secret); r.status != http.StatusOK {
		t.Fatalf("before the report: %s", r)
	}

	body, _ := json.Marshal([]map[string]string{
		{"token": secret, "type": "keyward_live_key", "url": "https://github.com/o/r/blob/main/.env", "source": "content"},
		{"token": "sk_live_not_a_real_token", "type": "keyward_live_key", "url": "https://github.com/o/r", "source": "content"},
	})
	digest := sha256.Sum256(body)
	sig, _ := ecdsa.SignASN1(rand.Reader, signer, digest[:])
	send := func(signature string) response {
		req, _ := http.NewRequest(http.MethodPost, s.base+"/v1/leaks/github", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Github-Public-Key-Identifier", "e2e-key")
		req.Header.Set("Github-Public-Key-Signature", signature)
		return s.do(req)
	}
	if r := send(base64.StdEncoding.EncodeToString([]byte("forged"))); r.status != http.StatusUnauthorized {
		t.Fatalf("a badly signed report: %s", r)
	}
	if r := s.get("/invoices", secret); r.status != http.StatusOK {
		t.Fatalf("a refused report changed the key: %s", r)
	}
	r := send(base64.StdEncoding.EncodeToString(sig))
	var feedback []map[string]string
	if r.status != http.StatusOK || json.Unmarshal(r.body, &feedback) != nil || len(feedback) != 2 ||
		feedback[0]["label"] != "true_positive" || feedback[1]["label"] != "false_positive" {
		t.Fatalf("the report: %s", r)
	}
	if r := s.get("/invoices", secret); r.status != http.StatusUnauthorized {
		t.Fatalf("the leaked key after the report: %s", r)
	}
	s.stop()
	events, err := os.ReadFile(filepath.Join(s.dataDir, "events.jsonl"))
	if err != nil || !strings.Contains(string(events), `"type":"key.leaked"`) || strings.Contains(string(events), secret) {
		t.Fatalf("events.jsonl: %v", err)
	}
}
