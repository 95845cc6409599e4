package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

// secretData is the page that shows a new secret, once: the answer to the
// POST that made it (Cache-Control: no-store), never a page a URL leads
// to. Its button leads to the key's page, which shows no secret.
type secretData struct {
	Key      keyRow
	Secret   string
	Previous *keyRow
	Warning  string
}

// formTTL is how long a sent create form is remembered, so that sending
// it again (a reload, a double click) makes no second key.
const formTTL = 24 * time.Hour

func validFormID(id string) bool {
	if len(id) < 16 || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// createKey makes a key from the create form and answers with its secret.
func (s *Server) createKey(w http.ResponseWriter, r *http.Request, m *member) error {
	ctx := r.Context()
	f := readKeyForm(r, s.cfg.Resources)
	if f.Environment == "live" && !s.fresh(m) {
		s.reauth(w, r, Prefix+"/keys/new?env=live")
		return nil
	}
	onForm := func(err error) error {
		e := s.internal(r, "creating key", err)
		if e.Status >= 500 || e == errNotFound {
			return e
		}
		s.render(w, r, e.Status, "newkey", m, s.newKeyData(f, e))
		return nil
	}
	p, err := s.params(m, f)
	if err != nil {
		return onForm(err)
	}
	if !validFormID(f.FormID) {
		f.FormID = randomToken(18)
		return onForm(&pageError{Status: http.StatusBadRequest, Title: "Check the form", Message: "This form is not one the console made; check it and send it again."})
	}
	now := s.cfg.Now()
	claim := store.Idempotency{TenantID: namespace(m.Tenant), Key: "form:" + f.FormID, RequestHash: "create",
		CreatedAt: now, ExpiresAt: now.Add(formTTL)}
	if err := s.cfg.Store.PutIdempotency(ctx, claim); errors.Is(err, store.ErrAlreadyExists) {
		return s.sentAlready(r, m, claim)
	} else if err != nil {
		return s.internal(r, "claiming the create form", err)
	}
	actor := m.actor(r, f.Environment)
	actor.Prepare = s.limits.Prepare()
	actor.Receipt = &lifecycle.Receipt{Claim: claim, Answer: func(o lifecycle.Outcome) (int, []byte, error) {
		return http.StatusCreated, []byte(apikey.PublicID(o.Keys[0].ID)), nil
	}}
	c, err := s.cfg.Keys.Create(ctx, actor, m.Tenant, p)
	if err != nil {
		// No key was made: the form may be sent again, corrected. A claim
		// its change completed is done, and stays.
		if err := s.cfg.Store.DeleteIdempotency(context.WithoutCancel(ctx), claim); err != nil && !errors.Is(err, store.ErrConflict) {
			s.cfg.Logger.WarnContext(ctx, "releasing a create form failed", "error", err)
		}
		return onForm(err)
	}
	s.render(w, r, http.StatusOK, "secret", m, secretData{Key: m.row(c.Key), Secret: c.Token.Plain()})
	return nil
}

// sentAlready answers a create form sent a second time.
func (s *Server) sentAlready(r *http.Request, m *member, claim store.Idempotency) error {
	rec, err := s.cfg.Store.GetIdempotency(r.Context(), claim.TenantID, claim.Key)
	if err == nil && rec.Done {
		id := string(rec.Body)
		return &pageError{Status: http.StatusConflict, Title: "Sent already",
			Message: "This form was sent already and made the key " + id + ". Its secret was shown once, on the page that answered it; regenerate the key if it was not copied.",
			Link:    Prefix + "/keys/" + url.PathEscape(id)}
	}
	return &pageError{Status: http.StatusConflict, Title: "Sent already",
		Message: "This form is being sent already; look for the key in the list of keys.", Link: Prefix + "/keys"}
}

// changeable reads a key the member may change, for the pages that ask
// before a change; the lifecycle decides on the change itself.
func (s *Server) changeable(r *http.Request, m *member) (store.Key, error) {
	k, err := s.key(r, m)
	if err != nil {
		return store.Key{}, err
	}
	if !m.owns(k) {
		return store.Key{}, forbidden("This key was created by %s; a %s changes only the keys they created.", orNobody(k.CreatedBy), m.Role)
	}
	return k, nil
}

// key is the key the request's path names, in the member's tenant.
func (s *Server) key(r *http.Request, m *member) (store.Key, error) {
	id, err := keyID(r)
	if err != nil {
		return store.Key{}, err
	}
	k, err := s.cfg.Keys.Get(r.Context(), m.Tenant, id)
	if err != nil {
		return store.Key{}, s.internal(r, "reading key", err)
	}
	return k, nil
}

func orNobody(member string) string {
	if member == "" {
		return "no member (a backend's key)"
	}
	return member
}

type rotateData struct {
	Key      keyRow
	Hours    int
	MaxHours int
	Error    string
}

const maxOverlapHours = int(lifecycle.MaxOverlap / time.Hour)

func (s *Server) rotatePage(w http.ResponseWriter, r *http.Request, m *member) error {
	k, err := s.changeable(r, m)
	if err != nil {
		return err
	}
	if k.Environment == "live" && !s.fresh(m) {
		s.reauth(w, r, r.URL.Path)
		return nil
	}
	s.render(w, r, http.StatusOK, "rotate", m, rotateData{Key: m.row(k), Hours: int(lifecycle.DefaultOverlap / time.Hour), MaxHours: maxOverlapHours})
	return nil
}

// rotateKey regenerates a key: the new key's secret is shown once; the old
// key stops at once or keeps working for the overlap chosen.
func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request, m *member) error {
	k, err := s.key(r, m)
	if err != nil {
		return err
	}
	id := k.ID
	if k.Environment == "live" && !s.fresh(m) {
		s.reauth(w, r, r.URL.Path)
		return nil
	}
	overlap := lifecycle.DefaultOverlap
	if r.PostForm.Get("mode") == "now" {
		overlap = 0
	} else if v := r.PostForm.Get("hours"); v != "" {
		h, err := strconv.Atoi(v)
		if err != nil || h < 1 || h > maxOverlapHours {
			s.render(w, r, http.StatusBadRequest, "rotate", m, rotateData{Key: m.row(k), Hours: int(lifecycle.DefaultOverlap / time.Hour),
				MaxHours: maxOverlapHours, Error: "Keep the old key working for 1 to " + strconv.Itoa(maxOverlapHours) + " hours, or end it now."})
			return nil
		}
		overlap = time.Duration(h) * time.Hour
	}
	actor := m.actor(r, k.Environment)
	actor.Prepare = s.limits.Prepare()
	nk, old, err := s.cfg.Keys.Rotate(r.Context(), actor, m.Tenant, id, overlap)
	if err != nil {
		return s.internal(r, "regenerating key", err)
	}
	d := secretData{Key: m.row(nk.Key), Secret: nk.Token.Plain()}
	if overlap == 0 {
		// The old key ends now: cached decisions must not outlive it. The
		// secret exists only in this answer, so a failed flush is shown
		// beside it, not instead of it.
		s.limits.Remove(r.Context(), old)
		if err := s.flush(r.Context()); err != nil {
			d.Warning = "The old key has ended, but the gateway's cache could not be flushed: it may still be accepted for a few minutes."
		}
	}
	prev := m.row(old)
	d.Previous = &prev
	s.render(w, r, http.StatusOK, "secret", m, d)
	return nil
}

func (s *Server) revokePage(w http.ResponseWriter, r *http.Request, m *member) error {
	k, err := s.changeable(r, m)
	if err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "revoke", m, m.row(k))
	return nil
}

// revokeKey revokes a key and makes it effective on the next request.
func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, m *member) error {
	k, err := s.key(r, m)
	if err != nil {
		return err
	}
	id := k.ID
	k, err = s.cfg.Keys.Revoke(r.Context(), m.actor(r, k.Environment), m.Tenant, id)
	if err != nil {
		return s.internal(r, "revoking key", err)
	}
	s.limits.Remove(r.Context(), k)
	if err := s.flush(r.Context()); err != nil {
		return errFlush
	}
	http.Redirect(w, r, s.url(Prefix)+"/keys/"+apikey.PublicID(id)+"?done=revoked", http.StatusSeeOther)
	return nil
}

var errFlush = &pageError{Status: http.StatusInternalServerError, Title: "Saved, but not yet effective everywhere",
	Message: "The change is saved, but the gateway's authorizer cache could not be flushed, so cached decisions may still allow the old access for a few minutes. Do it again to retry the flush."}

type revokeMemberData struct {
	Member     string
	Alive      int
	Incomplete bool
	Revoked    int
}

func (s *Server) revokeMemberPage(w http.ResponseWriter, r *http.Request, m *member) error {
	who := r.URL.Query().Get("member")
	if !validMember(who) {
		return &pageError{Status: http.StatusBadRequest, Title: "No such member", Message: "A member id is 1 to 128 letters, digits or _ - . @ : + |."}
	}
	d := revokeMemberData{Member: who}
	cursor := ""
	for range membersScan {
		page, err := s.cfg.Keys.List(r.Context(), m.Tenant, store.KeyQuery{CreatedBy: who, Limit: store.MaxPageSize, Cursor: cursor})
		if err != nil {
			return s.internal(r, "listing the member's keys", err)
		}
		for _, k := range page.Keys {
			if k.Status == store.KeyActive || k.Status == store.KeyExpiring {
				d.Alive++
			}
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	s.render(w, r, http.StatusOK, "revokemember", m, d)
	return nil
}

// revokeMember revokes every key a member created, in both environments
// (a removed member's keys die with them).
func (s *Server) revokeMember(w http.ResponseWriter, r *http.Request, m *member) error {
	who := r.PostForm.Get("member")
	if !validMember(who) {
		return &pageError{Status: http.StatusBadRequest, Title: "No such member", Message: "A member id is 1 to 128 letters, digits or _ - . @ : + |."}
	}
	n, err := s.cfg.Keys.RevokeMember(r.Context(), m.actor(r, ""), m.Tenant, who)
	// Flushed for what it revoked, or may have, whatever happened after;
	// only a request refused before any write is not.
	if n > 0 || fromDomain(err) == nil {
		if ferr := s.flush(r.Context()); ferr != nil {
			return errFlush
		}
	}
	switch {
	case errors.Is(err, lifecycle.ErrIncomplete):
		s.render(w, r, http.StatusServiceUnavailable, "revokemember", m, revokeMemberData{Member: who, Incomplete: true, Revoked: n})
		return nil
	case err != nil:
		return s.internal(r, "revoking the member's keys", err)
	}
	http.Redirect(w, r, s.url(Prefix)+"/members?"+url.Values{"member": {who}, "revoked": {strconv.Itoa(n)}}.Encode(), http.StatusSeeOther)
	return nil
}

// The gateway's part, as the admin API does it: a key's rate-limit
// identity exists before the key does and goes when it ends
// (ratelimits.Identities); a change that takes access away flushes the
// authorizer cache twice (authorizer.Invalidate).

// flush makes a change that took access away effective on the next
// request where the gateway caches decisions, even if the browser leaves.
func (s *Server) flush(ctx context.Context) error {
	if err := authorizer.InvalidateChange(ctx, s.cfg.Flusher, s.cfg.Gateway.Authorizer.CacheTTLSeconds, s.cfg.Now, s.cfg.Sleep); err != nil {
		s.cfg.Logger.ErrorContext(ctx, "flushing the authorizer cache failed", "error", err)
		return err
	}
	return nil
}
