package admin

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

type rotateBody struct {
	ExpireOldIn *int64 `json:"expire_old_in"`
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request, c Caller) *apiError {
	id, e := keyID(r)
	if e != nil {
		return e
	}
	body, e := readBody(w, r)
	if e != nil {
		return e
	}
	overlap := lifecycle.DefaultOverlap
	if len(body) > 0 {
		var b rotateBody
		if e := decode(body, &b); e != nil {
			return e
		}
		if b.ExpireOldIn != nil {
			if *b.ExpireOldIn < 0 || *b.ExpireOldIn > int64(lifecycle.MaxOverlap/time.Second) {
				return invalidRequest("expire_old_in", "expire_old_in must be 0 to %d seconds.", int64(lifecycle.MaxOverlap/time.Second))
			}
			overlap = time.Duration(*b.ExpireOldIn) * time.Second
		}
	}
	actor := vetted(c)
	actor.Prepare = s.limits.Prepare()
	actor.Receipt = s.receipt(r, func(o lifecycle.Outcome) (int, any) {
		prev := resource(o.Keys[0])
		return http.StatusCreated, created{Key: resource(o.Keys[1]), PreviousKey: &prev}
	})
	nk, old, err := s.cfg.Keys.Rotate(r.Context(), actor, c.TenantID, id, overlap)
	if err != nil {
		return s.internal(r, "rotating key", err)
	}
	if overlap == 0 {
		// The old key ends now: cached decisions must not outlive it. The
		// rotation is saved and its secret exists only in this answer, so
		// a failed flush is reported beside the secret, not instead of it.
		s.limits.Remove(r.Context(), old)
		if e := s.flush(r); e != nil {
			w.Header().Set("Warning", `199 keyward "`+e.Message+`"`)
		}
	}
	prev := resource(old)
	writeJSON(w, http.StatusCreated, created{Key: resource(nk.Key), Secret: nk.Token.Plain(), PreviousKey: &prev})
	return nil
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, c Caller) *apiError {
	id, e := keyID(r)
	if e != nil {
		return e
	}
	if e := noBody(w, r); e != nil {
		return e
	}
	k, err := s.cfg.Keys.Revoke(r.Context(), vetted(c), c.TenantID, id)
	if err != nil {
		return s.internal(r, "revoking key", err)
	}
	s.limits.Remove(r.Context(), k)
	if e := s.flush(r); e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, resource(k))
	return nil
}

type revokedCount struct {
	Object  string `json:"object"`
	Revoked int    `json:"revoked"`
}

func (s *Server) revokeMember(w http.ResponseWriter, r *http.Request, c Caller) *apiError {
	if e := noBody(w, r); e != nil {
		return e
	}
	n, err := s.cfg.Keys.RevokeMember(r.Context(), actorOf(c), c.TenantID, r.PathValue("member_id"))
	if e := s.bulkRevoked(w, r, n, err, "revoking member keys"); e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, revokedCount{Object: "revocation", Revoked: n})
	return nil
}

// bulkRevoked settles a bulk revocation that revoked n keys and then
// returned err: the authorizer cache is flushed for what it revoked, or
// may have (a write whose answer was lost counts no key), whatever
// happened after; only a request refused before any write is not. One
// that stopped at its time budget is 503 revocation_incomplete, to be
// called again.
func (s *Server) bulkRevoked(w http.ResponseWriter, r *http.Request, n int, err error, what string) *apiError {
	if n > 0 || fromDomain(err) == nil {
		if e := s.flush(r); e != nil {
			return e
		}
	}
	switch {
	case errors.Is(err, lifecycle.ErrIncomplete):
		w.Header().Set("Retry-After", "1")
		return &apiError{Status: http.StatusServiceUnavailable, Type: "api_error", Code: "revocation_incomplete",
			Message: fmt.Sprintf("This call revoked %d keys and stopped before the end; call again to continue.", n)}
	case err != nil:
		return s.internal(r, what, err)
	}
	return nil
}

type auditResource struct {
	ID        string            `json:"id"`
	Object    string            `json:"object"`
	Time      string            `json:"time"`
	Actor     string            `json:"actor"`
	Action    string            `json:"action"`
	KeyID     *string           `json:"key_id"`
	RequestID *string           `json:"request_id"`
	Details   map[string]string `json:"details"`
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, c Caller) *apiError {
	q, e := query(r, "key_id", "limit", "cursor")
	if e != nil {
		return e
	}
	limit, e := pageLimit(q)
	if e != nil {
		return e
	}
	aq := store.AuditQuery{Environment: c.Environment, Limit: limit, Cursor: q.Get("cursor")}
	if v := q.Get("key_id"); v != "" {
		id, ok := apikey.ParsePublicID(v)
		if !ok {
			return invalidRequest("key_id", "key_id must be a key id such as key_AbCdEfGhIjKl.")
		}
		aq.KeyID = id
	}
	page, err := s.cfg.Store.ListAudit(r.Context(), c.TenantID, aq)
	if err != nil {
		if errors.Is(err, store.ErrInvalidCursor) {
			return invalidRequest("cursor", "cursor is not a cursor from this listing.")
		}
		return s.internal(r, "listing audit", err)
	}
	out := list[auditResource]{Object: "list", Data: []auditResource{}, NextCursor: stringOrNil(page.NextCursor)}
	for _, a := range page.Entries {
		details := a.Details
		if details == nil {
			details = map[string]string{}
		}
		out.Data = append(out.Data, auditResource{ID: "aud_" + a.ID, Object: "audit_entry", Time: a.Time.UTC().Format(time.RFC3339Nano),
			Actor: a.Actor, Action: a.Action, KeyID: keyOrNil(a.KeyID), RequestID: stringOrNil(a.RequestID), Details: details})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
