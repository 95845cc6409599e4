// Package leaks is keyward's answer to leaked keys: a GitHub secret
// scanning partner endpoint. GitHub scans public code for keyward's token
// format and posts every match; keyward verifies GitHub's signature, checks
// each token (checksum first, so garbage costs no store read), and revokes
// exposed live keys at once, or flags them, with a key.leaked event.
package leaks

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// GitHubKeysURL is where GitHub publishes the keys it signs secret
// scanning alerts with.
const GitHubKeysURL = "https://api.github.com/meta/public_keys/secret_scanning"

// KeySource finds the public key GitHub signed a payload with.
type KeySource interface {
	// Key returns the key with the identifier; ErrUnknownKey if none.
	Key(ctx context.Context, id string) (*ecdsa.PublicKey, error)
}

// ErrUnknownKey: no published key has the identifier.
var ErrUnknownKey = errors.New("leaks: unknown signing key")

// keyList is GitHub's format for its signing keys.
type keyList struct {
	PublicKeys []struct {
		KeyIdentifier string `json:"key_identifier"`
		Key           string `json:"key"`
		IsCurrent     bool   `json:"is_current"`
	} `json:"public_keys"`
}

// parseKeys reads GitHub's key list into ECDSA P-256 keys by identifier.
func parseKeys(data []byte) (map[string]*ecdsa.PublicKey, error) {
	var l keyList
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("leaks: key list: %w", err)
	}
	keys := map[string]*ecdsa.PublicKey{}
	for _, k := range l.PublicKeys {
		block, _ := pem.Decode([]byte(k.Key))
		if block == nil {
			return nil, fmt.Errorf("leaks: key %s is not PEM", k.KeyIdentifier)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("leaks: key %s: %w", k.KeyIdentifier, err)
		}
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok || ec.Curve.Params().Name != "P-256" {
			return nil, fmt.Errorf("leaks: key %s is not an ECDSA P-256 key", k.KeyIdentifier)
		}
		keys[k.KeyIdentifier] = ec
	}
	return keys, nil
}

// StaticKeys is a fixed key list: the local stack's (from a file in
// GitHub's format) and the tests'.
type StaticKeys map[string]*ecdsa.PublicKey

// Key returns the key with the identifier.
func (s StaticKeys) Key(_ context.Context, id string) (*ecdsa.PublicKey, error) {
	if k, ok := s[id]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}

// KeysFile reads a key list in GitHub's format from a file.
func KeysFile(path string) (StaticKeys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("leaks: %w", err)
	}
	return parseKeys(data)
}

// GitHubKeys fetches GitHub's published keys, with a timeout, and caches
// them; an identifier it does not know makes it fetch again, at most once
// per minute, so that a key GitHub just added is found and a flood of
// bogus identifiers cannot make it hammer GitHub.
type GitHubKeys struct {
	URL    string
	Client *http.Client
	TTL    time.Duration // default 1 hour
	Now    func() time.Time

	mu      sync.Mutex
	keys    map[string]*ecdsa.PublicKey
	fetched time.Time
}

const refetchAfter = time.Minute

// Key returns the key with the identifier.
func (g *GitHubKeys) Key(ctx context.Context, id string) (*ecdsa.PublicKey, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	ttl := g.TTL
	if ttl == 0 {
		ttl = time.Hour
	}
	stale := g.keys == nil || now().Sub(g.fetched) >= ttl
	if k, ok := g.keys[id]; ok && !stale {
		return k, nil
	}
	if stale || now().Sub(g.fetched) >= refetchAfter {
		if err := g.fetch(ctx, now()); err != nil && g.keys == nil {
			return nil, err
		}
	}
	if k, ok := g.keys[id]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}

func (g *GitHubKeys) fetch(ctx context.Context, now time.Time) error {
	g.fetched = now // a failed fetch also waits its turn
	client := g.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.URL, nil)
	if err != nil {
		return fmt.Errorf("leaks: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("leaks: fetching GitHub's keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("leaks: fetching GitHub's keys: %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("leaks: fetching GitHub's keys: %w", err)
	}
	keys, err := parseKeys(data)
	if err != nil {
		return err
	}
	g.keys = keys
	return nil
}
