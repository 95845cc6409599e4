package leaks

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

// Signature errors: the request did not come from GitHub.
var (
	ErrUnsigned     = errors.New("leaks: request not signed")
	ErrBadSignature = errors.New("leaks: signature does not verify")
)

// Verify checks GitHub's signature over the raw body: the header
// Github-Public-Key-Signature is a base64 DER ECDSA signature, with SHA-256,
// made with the key named by Github-Public-Key-Identifier.
func Verify(ctx context.Context, src KeySource, keyID, signature string, body []byte) error {
	if keyID == "" || signature == "" {
		return ErrUnsigned
	}
	key, err := src.Key(ctx, keyID)
	if err != nil {
		return err
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil {
		return ErrBadSignature
	}
	digest := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(key, digest[:], sig) {
		return ErrBadSignature
	}
	return nil
}

// Report is one match GitHub found.
type Report struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// Feedback is GitHub's optional answer format: whether each reported token
// was one of ours, named by its SHA-256, never by itself.
type Feedback struct {
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"` // true_positive or false_positive
}

// Policy is what happens to an exposed key, of either environment; the
// deployment's setting (KEYWARD_LEAK_POLICY), defined in package config.
type Policy = config.LeakPolicy

const (
	// Revoke ends exposed keys at once, as Stripe may on its users'
	// behalf; the default.
	Revoke = config.LeakRevoke
	// Flag only records the exposure (a key.leaked event) for the owner.
	Flag = config.LeakFlag
)

// Store reads keys by id.
type Store interface {
	GetKey(ctx context.Context, id string) (store.Key, error)
}

// Peppers verifies a token against its stored hash.
type Peppers interface {
	Verify(ctx context.Context, version int, token string, want []byte) (bool, error)
}

// Responder decides and records what each reported token means.
type Responder struct {
	Keys    *lifecycle.Service
	Store   Store
	Peppers Peppers
	Format  apikey.Format
	// Policy applies to live keys; test keys are always only flagged, since
	// they reach no live data.
	Policy Policy
	Now    func() time.Time // default time.Now
}

// Outcome is what Respond did.
type Outcome struct {
	Feedback []Feedback
	Revoked  int // keys revoked: the caller flushes the authorizer cache
}

// Respond handles the reports: a token that fails the format or checksum,
// names no key or does not match its key's hash is a false positive and
// costs at most one store read; a real one is a true positive, and its key
// gets a key.leaked event, revoked first if it is live and the policy says
// so. A token reported twice is handled once.
func (r Responder) Respond(ctx context.Context, actor lifecycle.Actor, reports []Report) (Outcome, error) {
	var out Outcome
	done := map[string]string{} // token -> label
	for _, rep := range reports {
		label, ok := done[rep.Token]
		if !ok {
			var revoked bool
			var err error
			label, revoked, err = r.one(ctx, actor, rep)
			if revoked {
				out.Revoked++
			}
			if err != nil {
				// What was revoked stays revoked: the caller still flushes.
				return out, err
			}
			done[rep.Token] = label
		}
		sum := sha256.Sum256([]byte(rep.Token))
		out.Feedback = append(out.Feedback, Feedback{TokenHash: hex.EncodeToString(sum[:]), TokenType: rep.Type, Label: label})
	}
	return out, nil
}

const (
	truePositive  = "true_positive"
	falsePositive = "false_positive"
)

func (r Responder) one(ctx context.Context, actor lifecycle.Actor, rep Report) (string, bool, error) {
	tok, err := r.Format.Parse(rep.Token)
	if err != nil {
		return falsePositive, false, nil
	}
	k, err := r.Store.GetKey(ctx, tok.ID())
	if errors.Is(err, store.ErrNotFound) {
		return falsePositive, false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("leaks: reading key: %w", err)
	}
	// A dead key's pepper may be retired, so it cannot be told apart from
	// a forgery; it opens nothing either way. For a live key, a failure to
	// verify is an error, not an answer: GitHub retries the report.
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	if st := k.Effective(now()).Status; st == store.KeyRevoked || st == store.KeyExpired {
		return falsePositive, false, nil
	}
	ok, err := r.Peppers.Verify(ctx, k.PepperVersion, tok.Plain(), k.Hash)
	if err != nil {
		return "", false, fmt.Errorf("leaks: verifying key: %w", err)
	}
	if !ok {
		return falsePositive, false, nil
	}
	// Test keys too: one reaches the tenant's test data and, with
	// management scopes, mints and revokes its test keys.
	revoke := r.Policy != Flag
	details := map[string]string{"url": rep.URL, "source": rep.Source, "reporter": "github"}
	_, revoked, err := r.Keys.Leak(ctx, actor, k, revoke, details)
	if err != nil {
		return "", false, err
	}
	return truePositive, revoked, nil
}
