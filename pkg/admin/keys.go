package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

// keyResource is a key as the API shows it: never a hash, a pepper
// version or a secret.
type keyResource struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	Name               string            `json:"name"`
	Description        string            `json:"description"`
	Display            string            `json:"display"`
	Environment        string            `json:"environment"`
	Scopes             []string          `json:"scopes"`
	Status             string            `json:"status"`
	CreatedAt          string            `json:"created_at"`
	CreatedBy          *string           `json:"created_by"`
	ExpiresAt          *string           `json:"expires_at"`
	LastUsedAt         *string           `json:"last_used_at"`
	RevokedAt          *string           `json:"revoked_at"`
	AllowedIPs         []string          `json:"allowed_ips"`
	AllowedOrigins     []string          `json:"allowed_origins"`
	AllowBrowserWrites bool              `json:"allow_browser_writes"`
	Contact            *string           `json:"contact"`
	RateLimit          store.RateLimit   `json:"rate_limit"`
	Replaces           *string           `json:"replaces"`
	ReplacedBy         *string           `json:"replaced_by"`
	Metadata           map[string]string `json:"metadata"`
}

func timeOrNil(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

func stringOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func keyOrNil(id string) *string {
	if id == "" {
		return nil
	}
	return stringOrNil(apikey.PublicID(id))
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func resource(k store.Key) keyResource {
	meta := k.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	return keyResource{
		ID: apikey.PublicID(k.ID), Object: "api_key", Name: k.Name, Description: k.Description,
		Display: apikey.Display(k.Prefix, k.Environment, k.Last4), Environment: k.Environment,
		Scopes: nonNil(k.Scopes), Status: string(k.Status), CreatedAt: k.CreatedAt.UTC().Format(time.RFC3339),
		CreatedBy: stringOrNil(k.CreatedBy), ExpiresAt: timeOrNil(k.ExpiresAt), LastUsedAt: timeOrNil(k.LastUsedAt),
		RevokedAt: timeOrNil(k.RevokedAt), AllowedIPs: nonNil(k.AllowedIPs), AllowedOrigins: nonNil(k.AllowedOrigins),
		AllowBrowserWrites: k.AllowBrowserWrites, Contact: stringOrNil(k.Contact), RateLimit: k.RateLimit, Replaces: keyOrNil(k.Replaces), ReplacedBy: keyOrNil(k.ReplacedBy), Metadata: meta,
	}
}

// created is the answer to a create or rotate: the only place a secret
// ever appears.
type created struct {
	Key         keyResource  `json:"key"`
	Secret      string       `json:"secret,omitempty"`
	PreviousKey *keyResource `json:"previous_key,omitempty"`
}

type createBody struct {
	Name               string            `json:"name"`
	Description        string            `json:"description"`
	Environment        string            `json:"environment"`
	Scopes             []string          `json:"scopes"`
	ExpiresAt          *string           `json:"expires_at"`
	ExpiresIn          *int64            `json:"expires_in"`
	AllowedIPs         []string          `json:"allowed_ips"`
	AllowedOrigins     []string          `json:"allowed_origins"`
	AllowBrowserWrites bool              `json:"allow_browser_writes"`
	Contact            string            `json:"contact"`
	RateLimit          *rateLimitBody    `json:"rate_limit"`
	CreatedBy          string            `json:"created_by"`
	Metadata           map[string]string `json:"metadata"`
}

func parseTime(field, s string) (time.Time, *apiError) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, invalidRequest(field, "%s must be an RFC 3339 time such as 2027-01-31T12:00:00Z.", field)
	}
	return t, nil
}

// flushTimeout bounds the gateway calls that clean up after a request,
// which run even if the client has gone.
const flushTimeout = authorizer.InvalidateTimeout

// flush makes a revocation or narrowing effective on the next request even
// where the gateway caches decisions: at once, and again once a decision
// that read the key before the change can no longer land in the cache
// (authorizer.Invalidate).
func (s *Server) flush(r *http.Request) *apiError {
	// Both flushes run even if the client hangs up: the change is made.
	if err := authorizer.InvalidateChange(r.Context(), s.cfg.Flusher, s.cfg.Gateway.Authorizer.CacheTTLSeconds, s.cfg.Now, s.cfg.Sleep); err != nil {
		s.cfg.Logger.ErrorContext(r.Context(), "flushing the authorizer cache failed", "error", err)
		return &apiError{Status: http.StatusInternalServerError, Type: "api_error", Code: "cache_flush_failed",
			Message: "The change is saved, but the gateway's authorizer cache could not be flushed, so cached decisions may still allow the old access; retry the request."}
	}
	return nil
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, c Caller) *apiError {
	body, e := readBody(w, r)
	if e != nil {
		return e
	}
	var b createBody
	if e := decode(body, &b); e != nil {
		return e
	}
	p := lifecycle.CreateParams{Name: b.Name, Description: b.Description, Environment: apikey.Environment(b.Environment),
		Scopes: b.Scopes, AllowedIPs: b.AllowedIPs, AllowedOrigins: b.AllowedOrigins,
		AllowBrowserWrites: b.AllowBrowserWrites, Contact: b.Contact, CreatedBy: b.CreatedBy, Metadata: b.Metadata}
	if b.Scopes == nil {
		return invalidRequest("scopes", "scopes is required.")
	}
	switch {
	case b.ExpiresAt != nil && b.ExpiresIn != nil:
		return invalidRequest("expires_in", "Give expires_at or expires_in, not both.")
	case b.ExpiresAt != nil:
		if p.ExpiresAt, e = parseTime("expires_at", *b.ExpiresAt); e != nil {
			return e
		}
	case b.ExpiresIn != nil:
		if *b.ExpiresIn <= 0 || *b.ExpiresIn > int64(lifecycle.MaxLifetime/time.Second) {
			return invalidRequest("expires_in", "expires_in must be 1 to %d seconds.", int64(lifecycle.MaxLifetime/time.Second))
		}
		p.ExpiresAt = s.cfg.Now().Add(time.Duration(*b.ExpiresIn) * time.Second)
	}
	if p.RateLimit, e = s.rateLimit(b.RateLimit); e != nil {
		return e
	}
	if e := mayGrant(c, b.Scopes); e != nil {
		return e
	}
	actor := actorOf(c)
	actor.Prepare = s.limits.Prepare()
	actor.Receipt = s.receipt(r, func(o lifecycle.Outcome) (int, any) {
		return http.StatusCreated, created{Key: resource(o.Keys[0])}
	})
	k, err := s.cfg.Keys.Create(r.Context(), actor, c.TenantID, p)
	if err != nil {
		return s.internal(r, "creating key", err)
	}
	writeJSON(w, http.StatusCreated, created{Key: resource(k.Key), Secret: k.Token.Plain()})
	return nil
}

// query reads the allowed query parameters, refusing any other.
func query(r *http.Request, allowed ...string) (url.Values, *apiError) {
	q := r.URL.Query()
	for name, vals := range q {
		switch {
		case !slices.Contains(allowed, name):
			return nil, invalidRequest(name, "Unknown query parameter %q.", name)
		case len(vals) > 1:
			return nil, invalidRequest(name, "Query parameter %q is given more than once.", name)
		case vals[0] == "":
			return nil, invalidRequest(name, "Query parameter %q is empty; leave it out instead.", name)
		}
	}
	return q, nil
}

func pageLimit(q url.Values) (int, *apiError) {
	v := q.Get("limit")
	if v == "" {
		return 20, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > store.MaxPageSize {
		return 0, invalidRequest("limit", "limit must be 1 to %d.", store.MaxPageSize)
	}
	return n, nil
}

type list[T any] struct {
	Object     string  `json:"object"`
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, c Caller) *apiError {
	q, e := query(r, "environment", "status", "created_by", "limit", "cursor")
	if e != nil {
		return e
	}
	limit, e := pageLimit(q)
	if e != nil {
		return e
	}
	env := q.Get("environment")
	if env != "" && env != c.Environment {
		return environmentMismatch(c)
	}
	page, err := s.cfg.Keys.List(r.Context(), c.TenantID, store.KeyQuery{Environment: c.Environment,
		Status: store.KeyStatus(q.Get("status")), CreatedBy: q.Get("created_by"), Limit: limit, Cursor: q.Get("cursor")})
	if err != nil {
		return s.internal(r, "listing keys", err)
	}
	out := list[keyResource]{Object: "list", Data: []keyResource{}, NextCursor: stringOrNil(page.NextCursor)}
	for _, k := range page.Keys {
		out.Data = append(out.Data, resource(k))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request, c Caller) *apiError {
	id, e := keyID(r)
	if e != nil {
		return e
	}
	k, e := s.visible(r, c, id)
	if e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, resource(k))
	return nil
}

// updateFields are the fields PATCH accepts; null clears a clearable one.
var updateFields = []string{"name", "description", "scopes", "allowed_ips", "allowed_origins", "allow_browser_writes", "contact", "rate_limit", "expires_at", "metadata"}

// narrowing fields are those whose change may take access away, so the
// authorizer cache must be flushed.
var narrowing = []string{"scopes", "allowed_ips", "allowed_origins", "allow_browser_writes", "expires_at"}

func (s *Server) updateKey(w http.ResponseWriter, r *http.Request, c Caller) *apiError {
	id, e := keyID(r)
	if e != nil {
		return e
	}
	body, e := readBody(w, r)
	if e != nil {
		return e
	}
	var raw map[string]json.RawMessage
	if e := decode(body, &raw); e != nil {
		return e
	}
	if len(raw) == 0 {
		return invalidRequest("", "Name at least one field to change: %s.", strings.Join(updateFields, ", "))
	}
	var p lifecycle.UpdateParams
	for name, v := range raw {
		if !slices.Contains(updateFields, name) {
			return invalidRequest(name, "Unknown field %q.", name)
		}
		if e := s.setField(&p, name, v); e != nil {
			return e
		}
	}
	if p.Scopes != nil {
		if e := mayGrant(c, *p.Scopes); e != nil {
			return e
		}
	}
	// A new rate limit is provisioned before it is written, and put back
	// if the key does not hold it after a failed write (which may have
	// been applied, its answer lost), so that the gateway never enforces
	// another limit than the key holds.
	var undo func()
	if p.RateLimit != nil {
		old, e := s.visible(r, c, id)
		if e != nil {
			return e
		}
		if old.Status == store.KeyActive || old.Status == store.KeyExpiring {
			next := old
			next.RateLimit = *p.RateLimit
			if err := s.provision(r, next); err != nil {
				return s.internal(r, "provisioning rate limit", err)
			}
			undo = func() {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), flushTimeout)
				defer cancel()
				stored, err := s.cfg.Keys.Stored(ctx, c.TenantID, id)
				if err != nil {
					s.cfg.Logger.ErrorContext(ctx, "a rate limit change failed, and the key could not be read to settle it; the gateway keeps the new limit", "key_id", apikey.PublicID(id), "error", err)
					return
				}
				was, _ := s.cfg.Gateway.TierOf(old.RateLimit)
				if holds, _ := s.cfg.Gateway.TierOf(stored.RateLimit); holds.Name != was.Name {
					return // written after all, or changed since: the gateway has the key's tier
				}
				if err := s.provision(r.WithContext(ctx), old); err != nil {
					s.cfg.Logger.ErrorContext(ctx, "putting back a rate limit failed", "key_id", apikey.PublicID(id), "error", err)
				}
			}
		}
	}
	actor := vetted(c)
	actor.Receipt = s.receipt(r, func(o lifecycle.Outcome) (int, any) {
		return http.StatusOK, resource(o.Keys[0].Effective(s.cfg.Now()))
	})
	k, err := s.cfg.Keys.Update(r.Context(), actor, c.TenantID, id, p)
	if err != nil {
		if undo != nil {
			undo()
		}
		return s.internal(r, "updating key", err)
	}
	for _, f := range narrowing {
		if _, ok := raw[f]; ok {
			if e := s.flush(r); e != nil {
				return e
			}
			break
		}
	}
	writeJSON(w, http.StatusOK, resource(k))
	return nil
}

// setField decodes one PATCH field into p; null clears what may be
// cleared.
func (s *Server) setField(p *lifecycle.UpdateParams, name string, v json.RawMessage) *apiError {
	null := string(v) == "null"
	bad := func(kind string) *apiError { return invalidRequest(name, "%s must be %s.", name, kind) }
	switch name {
	case "name":
		var x string
		if null || json.Unmarshal(v, &x) != nil {
			return bad("a string")
		}
		p.Name = &x
	case "description":
		var x string
		if !null && json.Unmarshal(v, &x) != nil {
			return bad("a string or null")
		}
		p.Description = &x
	case "contact":
		var x string
		if !null && json.Unmarshal(v, &x) != nil {
			return bad("an email address or null")
		}
		p.Contact = &x
	case "scopes":
		var x []string
		if null || json.Unmarshal(v, &x) != nil {
			return bad("an array of scopes")
		}
		p.Scopes = &x
	case "allowed_ips", "allowed_origins":
		x := []string{}
		if !null && json.Unmarshal(v, &x) != nil {
			return bad("an array of strings or null")
		}
		if name == "allowed_ips" {
			p.AllowedIPs = &x
		} else {
			p.AllowedOrigins = &x
		}
	case "rate_limit":
		var b *rateLimitBody
		if !null {
			b = &rateLimitBody{}
			if e := decode(v, b); e != nil {
				e.Param = strings.TrimSuffix("rate_limit."+e.Param, ".")
				return e
			}
		}
		rl, e := s.rateLimit(b)
		if e != nil {
			return e
		}
		p.RateLimit = &rl
	case "expires_at":
		var t time.Time
		if !null {
			var x string
			if json.Unmarshal(v, &x) != nil {
				return bad("an RFC 3339 time or null")
			}
			var e *apiError
			if t, e = parseTime(name, x); e != nil {
				return e
			}
		}
		p.ExpiresAt = &t
	case "allow_browser_writes":
		var x bool
		if null || json.Unmarshal(v, &x) != nil {
			return bad("true or false")
		}
		p.AllowBrowserWrites = &x
	case "metadata":
		x := map[string]string{}
		if !null && json.Unmarshal(v, &x) != nil {
			return bad("an object of strings or null")
		}
		p.Metadata = &x
	}
	return nil
}
