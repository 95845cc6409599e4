package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"

	"github.com/keyward/keyward/pkg/leaks"
	"github.com/keyward/keyward/pkg/lifecycle"
)

// maxLeakBody bounds GitHub's reports, as its partner program does.
const maxLeakBody = 1 << 20

// maxLeakField bounds a tenant's description of where its key leaked.
const maxLeakField = 2048

// leakNamespace keeps the answers to GitHub's reports, by body digest, so
// a replayed report changes nothing and gets the first answer back.
const leakNamespace = "_github-secret-scanning"

var (
	errNotGitHub = &apiError{Status: http.StatusUnauthorized, Type: "unauthorized",
		Message: "The request is not signed by a GitHub secret scanning key."}
	errReportTooLarge = &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request", Code: "body_too_large",
		Message: "The report is larger than 1 MiB."}
)

// githubLeaks is GitHub's secret scanning partner callback: public, since
// GitHub's signature over the raw body is the credential. Nothing is
// decoded before the signature is verified. A report is answered once, by
// its body's digest: GitHub's resending of it changes nothing and gets the
// first answer back.
func (s *Server) githubLeaks(w http.ResponseWriter, r *http.Request, _ Caller) *apiError {
	body, e := readLimited(w, r, maxLeakBody, errReportTooLarge)
	if e != nil {
		return e
	}
	err := leaks.Verify(r.Context(), s.cfg.Leaks.Keys, r.Header.Get("Github-Public-Key-Identifier"), r.Header.Get("Github-Public-Key-Signature"), body)
	switch {
	case errors.Is(err, leaks.ErrUnsigned), errors.Is(err, leaks.ErrBadSignature), errors.Is(err, leaks.ErrUnknownKey):
		s.cfg.Logger.WarnContext(r.Context(), "refused a secret scanning report", "reason", err.Error())
		return errNotGitHub
	case err != nil:
		return s.internal(r, "verifying GitHub's signature", err)
	}
	var reports []leaks.Report
	if decode(body, &reports) != nil {
		return invalidRequest("", "The report must be a JSON array of {token, type, url, source}.")
	}
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	s.once(w, r, s.idempotency(leakNamespace, digest, digest), body, handle(func(w http.ResponseWriter, r *http.Request, c Caller) *apiError {
		return s.answerReports(w, r, c, reports)
	}))
	return nil
}

// answerReports revokes or flags the reported keys and answers GitHub's
// feedback.
func (s *Server) answerReports(w http.ResponseWriter, r *http.Request, c Caller, reports []leaks.Report) *apiError {
	out, err := s.cfg.Leaks.Responder.Respond(r.Context(), lifecycle.Actor{ID: "github:secret-scanning", RequestID: c.RequestID}, reports)
	if out.Revoked > 0 {
		// Also when the report failed part-way: what was revoked stays
		// revoked. A failed flush leaves cached decisions for at most the
		// cache TTL, and GitHub must not retry for that.
		if e := s.flush(r); e != nil {
			s.cfg.Logger.ErrorContext(r.Context(), "cache flush after leaked-key revocations failed", "revoked", out.Revoked)
		}
	}
	if err != nil {
		// Nothing to replay: GitHub retries, and the report runs again.
		forget(r)
		return s.internal(r, "handling a secret scanning report", err)
	}
	writeJSON(w, http.StatusOK, nonNil(out.Feedback))
	return nil
}

type reportLeakBody struct {
	URL    string `json:"url"`
	Source string `json:"source"`
}

// reportLeak is a tenant reporting its own key exposed: handled as GitHub's
// reports are, by the policy for live keys.
func (s *Server) reportLeak(w http.ResponseWriter, r *http.Request, c Caller) *apiError {
	id, e := keyID(r)
	if e != nil {
		return e
	}
	body, e := readBody(w, r)
	if e != nil {
		return e
	}
	var b reportLeakBody
	if len(body) > 0 {
		if e := decode(body, &b); e != nil {
			return e
		}
	}
	// Both go into the audit log and the key.leaked event.
	if len(b.URL) > maxLeakField || len(b.Source) > maxLeakField {
		return invalidRequest("url", "url and source must be at most %d characters.", maxLeakField)
	}
	if _, e := s.changeable(r, c, id); e != nil {
		return e
	}
	// The key as stored: the status only the clock changed is not
	// written back.
	k, err := s.cfg.Keys.Stored(r.Context(), c.TenantID, id)
	if err != nil {
		return s.internal(r, "reading key", err)
	}
	details := map[string]string{"reporter": "tenant"}
	if b.URL != "" {
		details["url"] = b.URL
	}
	if b.Source != "" {
		details["source"] = b.Source
	}
	revoke := s.cfg.Leaks.Responder.Policy != leaks.Flag
	actor := vetted(c)
	actor.Receipt = s.receipt(r, func(o lifecycle.Outcome) (int, any) {
		return http.StatusOK, resource(o.Keys[0].Effective(s.cfg.Now()))
	})
	k, revoked, err := s.cfg.Keys.Leak(r.Context(), actor, k, revoke, details)
	if err != nil {
		return s.internal(r, "reporting a leak", err)
	}
	if revoked {
		s.limits.Remove(r.Context(), k)
		if e := s.flush(r); e != nil {
			return e
		}
	}
	writeJSON(w, http.StatusOK, resource(k))
	return nil
}
