package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

// operatorNamespace holds the operators' Idempotency-Keys; it cannot be a
// tenant id, which starts with a letter or digit.
const operatorNamespace = "_operators"

const (
	// idempotencyTTL is how long a key's answer is kept for retries.
	idempotencyTTL = 24 * time.Hour
	// abandonAfter is how long a request may hold its Idempotency-Key
	// unanswered before a retry may take it over: longer than the admin
	// function's timeout, so it only applies to a crashed request.
	abandonAfter  = 2 * time.Minute
	maxIdemKeyLen = 255
)

// capture passes a response through and keeps a copy for the record.
type capture struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (c *capture) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *capture) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.body.Write(b)
	return c.ResponseWriter.Write(b)
}

// held is the Idempotency-Key claim a request holds, in its context.
type held struct {
	claim store.Idempotency
	// answered is set when a change was written with the claim's receipt:
	// the change completed the record itself.
	answered bool
	// forgotten is set when the answer must not be replayed, whatever its
	// status (forget).
	forgotten bool
}

type heldKey struct{}

// receipt lets the change a request makes complete its Idempotency-Key
// record in the change's own transaction (lifecycle.Receipt), with the answer
// answer renders from what the change writes: a replay of a create or
// rotate returns the key, never its secret, and never makes another. Nil
// when the request holds no Idempotency-Key.
func (s *Server) receipt(r *http.Request, answer func(lifecycle.Outcome) (int, any)) *lifecycle.Receipt {
	h, ok := r.Context().Value(heldKey{}).(*held)
	if !ok {
		return nil
	}
	return &lifecycle.Receipt{Claim: h.claim, Answer: func(o lifecycle.Outcome) (int, []byte, error) {
		status, v := answer(o)
		body, err := json.Marshal(v)
		if err != nil {
			return 0, nil, err
		}
		h.answered = true
		return status, append(body, '\n'), nil
	}}
}

// forget releases the request's claim once it is answered, whatever the
// answer: a retry runs the request again. For answers that report a
// failure to be retried rather than an outcome.
func forget(r *http.Request) {
	if h, ok := r.Context().Value(heldKey{}).(*held); ok {
		h.forgotten = true
	}
}

// idempotent makes POST and PATCH requests that carry an Idempotency-Key
// safe to retry: the same key and body get the first answer back with
// Idempotent-Replayed: true; the same key with another body gets 422; the
// same key while the first request runs gets 409. Keys are per tenant and
// kept 24 hours. A request that makes keys (create, rotate, onboard)
// completes its record in the transaction of its change, so a retry finds
// the answer or no change, whatever failed in between; other requests
// record their answer after it. A request that failed on the server's side
// (5xx) releases its key unless its change completed the record, so a
// retry runs again; the changes of those requests are idempotent in
// effect.
func (s *Server) idempotent(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		c, ok := callerFrom(r.Context())
		if _, present := r.Header["Idempotency-Key"]; !present || !ok || (r.Method != http.MethodPost && r.Method != http.MethodPatch) {
			next.ServeHTTP(w, r)
			return
		}
		// Per tenant and environment, as the management key sees keys: a
		// test key never replays, nor learns of, a live key's request.
		namespace := c.TenantID + ":" + c.Environment
		if c.Operator {
			namespace = operatorNamespace
		}
		if !c.Operator && (c.TenantID == "" || c.Environment == "") {
			next.ServeHTTP(w, r) // unauthenticated: the route refuses it
			return
		}
		if !validIdemKey(key) {
			writeError(w, invalidRequest("Idempotency-Key", "The Idempotency-Key header must be 1 to %d printable ASCII characters.", maxIdemKeyLen))
			return
		}
		body, e := readBody(w, r)
		if e != nil {
			writeError(w, e)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sum := sha256.Sum256([]byte(r.Method + " " + r.URL.RequestURI() + "\n" + string(body)))
		s.once(w, r, s.idempotency(namespace, key, hex.EncodeToString(sum[:])), body, next)
	})
}

// idempotency is a new record of the Idempotency-Key key in namespace, for
// the request whose digest is hash.
func (s *Server) idempotency(namespace, key, hash string) store.Idempotency {
	now := s.cfg.Now()
	return store.Idempotency{TenantID: namespace, Key: key, RequestHash: hash, CreatedAt: now, ExpiresAt: now.Add(idempotencyTTL)}
}

// once serves next under the claim rec, whose request has body: an
// earlier answer under it is replayed, and next's answer is recorded for
// later ones, except a server-side failure (5xx), a conflict (409) or a
// forgotten answer, which release the claim so that a retry runs again.
func (s *Server) once(w http.ResponseWriter, r *http.Request, rec store.Idempotency, body []byte, next http.Handler) {
	if done := s.claim(w, r, rec, body); done {
		return
	}
	cw := &capture{ResponseWriter: w}
	h := &held{claim: rec}
	next.ServeHTTP(cw, r.WithContext(context.WithValue(r.Context(), heldKey{}, h)))
	if h.answered && cw.status < 300 {
		return // the change completed the record
	}
	// What follows runs even if the client has gone: a claim left
	// open would hold the key for two minutes.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), flushTimeout)
	defer cancel()
	if cw.status >= 500 || cw.status == http.StatusConflict || h.forgotten {
		// Nothing to replay: let a retry run again. A record its change
		// completed stays: that change happened.
		if err := s.cfg.Store.DeleteIdempotency(ctx, rec); err != nil && !errors.Is(err, store.ErrConflict) {
			s.cfg.Logger.ErrorContext(ctx, "releasing an idempotency key failed", "error", err)
		}
		return
	}
	rec.Done, rec.StatusCode, rec.Body = true, cw.status, cw.body.Bytes()
	if err := s.cfg.Store.CompleteIdempotency(ctx, rec); err != nil {
		s.cfg.Logger.ErrorContext(ctx, "recording an idempotent answer failed", "error", err)
	}
}

// claim takes the Idempotency-Key for this request, or answers from an
// earlier request with it; it reports whether it answered.
func (s *Server) claim(w http.ResponseWriter, r *http.Request, rec store.Idempotency, body []byte) bool {
	for attempt := 0; attempt < 2; attempt++ {
		err := s.cfg.Store.PutIdempotency(r.Context(), rec)
		if err == nil {
			return false
		}
		if !errors.Is(err, store.ErrAlreadyExists) {
			writeError(w, s.internal(r, "recording idempotency key", err))
			return true
		}
		prev, err := s.cfg.Store.GetIdempotency(r.Context(), rec.TenantID, rec.Key)
		if errors.Is(err, store.ErrNotFound) {
			continue // released or expired meanwhile: claim it again
		}
		if err != nil {
			writeError(w, s.internal(r, "reading idempotency key", err))
			return true
		}
		switch {
		case !prev.Done && prev.RequestHash == rec.RequestHash && prev.CreatedAt.Equal(rec.CreatedAt):
			// This request's own claim: its first put was applied and the
			// answer lost, and the store's retry met it.
			return false
		case prev.RequestHash != rec.RequestHash:
			writeError(w, &apiError{Status: http.StatusUnprocessableEntity, Type: "idempotency_error", Code: "idempotency_key_reused",
				Message: "This Idempotency-Key was used with a different request; use a new key for a new request."})
			return true
		case prev.Done:
			// The first request may have died between its change and the
			// cache flush that makes it effective: flush again.
			if prev.StatusCode < 300 && takesAccess(r, body) {
				if e := s.flush(r); e != nil {
					writeError(w, e)
					return true
				}
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Idempotent-Replayed", "true")
			w.WriteHeader(prev.StatusCode)
			_, _ = w.Write(prev.Body)
			return true
		case s.cfg.Now().Sub(prev.CreatedAt) > abandonAfter:
			// Another retry may take it over first; then it is in use.
			if err := s.cfg.Store.DeleteIdempotency(r.Context(), prev); err != nil && !errors.Is(err, store.ErrConflict) {
				writeError(w, s.internal(r, "releasing an abandoned idempotency key", err))
				return true
			}
			continue
		default:
			writeError(w, errKeyInUse)
			return true
		}
	}
	writeError(w, errKeyInUse)
	return true
}

// takesAccess reports whether a request takes access away, as its handler
// decides when to flush the authorizer cache: a revocation, a leak report,
// a PATCH of a narrowing field, a rotation that ends the old key at once.
func takesAccess(r *http.Request, body []byte) bool {
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(body, &fields)
	switch {
	case r.Method == http.MethodPatch:
		return slices.ContainsFunc(narrowing, func(f string) bool { _, ok := fields[f]; return ok })
	case strings.HasSuffix(r.URL.Path, "/rotate"):
		return string(fields["expire_old_in"]) == "0"
	}
	return r.URL.Path != "/v1/keys" && r.URL.Path != "/v1/tenants"
}

var errKeyInUse = &apiError{Status: http.StatusConflict, Type: "conflict", Code: "idempotency_key_in_use",
	Message: "A request with this Idempotency-Key is still being processed; retry later."}

func validIdemKey(k string) bool {
	if len(k) < 1 || len(k) > maxIdemKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}
