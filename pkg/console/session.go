package console

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/scope"
	"github.com/keyward/keyward/pkg/store"
)

// Cookies, all HttpOnly, SameSite=Lax, Path=/console, and Secure unless the
// console is served over http from localhost.
const (
	sessionCookie = "keyward_console"
	flowCookie    = "keyward_console_flow"
	envCookie     = "keyward_console_env"
)

// session is what the session cookie holds, sealed: who is signed in, in
// which tenant and role, since when, and the CSRF token of their forms.
// Never a management key nor any secret of a key.
//
// Sign-out records the session's id in the store (Store.PutIdempotency,
// under a namespace no tenant's Idempotency-Key can reach) until the
// session would have ended anyway, and every request checks it: a
// signed-out cookie replayed fails on every instance of the function, which
// an in-memory list would not (AWS runs many), at the cost of one read by
// primary key per request.
type session struct {
	ID       string         `json:"id"`
	Tenant   string         `json:"t"`
	Member   string         `json:"m"`
	Role     lifecycle.Role `json:"r"`
	AuthTime int64          `json:"at"`   // the provider's auth_time (Unix seconds); 0 if unknown
	Issued   int64          `json:"iat"`  // sign-in here
	Seen     int64          `json:"seen"` // the last request, to the minute
	CSRF     string         `json:"csrf"`
}

// namespace is the console's part of a tenant's idempotency records: a
// tenant id starts with a letter or digit, and the admin API's namespaces
// are tenant ids with an environment, or "_operators".
func namespace(tenant string) string { return "_console:" + tenant }

func sessionRecord(sess session) string { return "session:" + sess.ID }

// sealer seals cookies with AES-256-GCM under the session key of the
// current pepper version, and opens them under the version they name.
type sealer struct {
	keys  KeySource
	mu    sync.Mutex
	aeads map[int]cipher.AEAD
}

func newSealer(keys KeySource) *sealer { return &sealer{keys: keys, aeads: map[int]cipher.AEAD{}} }

func (s *sealer) aead(ctx context.Context, version int) (cipher.AEAD, error) {
	s.mu.Lock()
	a := s.aeads[version]
	s.mu.Unlock()
	if a != nil {
		return a, nil
	}
	key, err := s.keys.HashVersion(ctx, version, SessionKeyLabel)
	if err != nil {
		return nil, err
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("console: session key of version %d has %d bytes, want 32", version, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if a, err = cipher.NewGCM(block); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.aeads[version] = a
	s.mu.Unlock()
	return a, nil
}

// aad binds a sealed value to what it is for, so that one cookie cannot
// stand for another.
func aad(purpose string, version int) []byte {
	return []byte("keyward console|" + purpose + "|" + strconv.Itoa(version))
}

// seal returns "<version>.<base64url(nonce|ciphertext)>".
func (s *sealer) seal(ctx context.Context, purpose string, v any) (string, error) {
	version := s.keys.Current()
	a, err := s.aead(ctx, version)
	if err != nil {
		return "", err
	}
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	sealed := a.Seal(nonce, nonce, plain, aad(purpose, version))
	return strconv.Itoa(version) + "." + base64.RawURLEncoding.EncodeToString(sealed), nil
}

var errBadCookie = errors.New("console: cookie does not open")

// open opens a sealed value and returns the version it was sealed under.
// Only versions the ring has reached are tried, so garbage cannot make
// the ring reload.
func (s *sealer) open(ctx context.Context, purpose, value string, v any) (int, error) {
	vs, data, ok := strings.Cut(value, ".")
	version, err := strconv.Atoi(vs)
	if !ok || err != nil || version < 1 || version > s.keys.Current() || len(data) > 4096 {
		return 0, errBadCookie
	}
	sealed, err := base64.RawURLEncoding.DecodeString(data)
	if err != nil {
		return 0, errBadCookie
	}
	a, err := s.aead(ctx, version)
	if err != nil || len(sealed) < a.NonceSize() {
		return 0, errBadCookie
	}
	plain, err := a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], aad(purpose, version))
	if err != nil || json.Unmarshal(plain, v) != nil {
		return 0, errBadCookie
	}
	return version, nil
}

func (s *Server) cookie(name, value string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{Name: name, Value: value, Path: s.url(Prefix), MaxAge: int(maxAge / time.Second),
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode}
	if maxAge <= 0 {
		c.MaxAge = -1 // Max-Age=0: delete it
	}
	return c
}

func (s *Server) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, s.cookie(name, "", 0))
}

// setSession seals sess into the session cookie, which the browser keeps
// until the session's absolute end.
func (s *Server) setSession(ctx context.Context, w http.ResponseWriter, sess session) error {
	v, err := s.seal.seal(ctx, sessionCookie, sess)
	if err != nil {
		return err
	}
	left := time.Unix(sess.Issued, 0).Add(s.cfg.SessionLifetime).Sub(s.cfg.Now())
	http.SetCookie(w, s.cookie(sessionCookie, v, left))
	return nil
}

// errNoSession: no session, or one that ended; the member signs in.
var errNoSession = errors.New("console: no session")

// loadSession opens the session cookie and checks that the session has
// neither ended nor been signed out, and that its member has not been
// removed since. The version it was sealed under is
// returned too.
func (s *Server) loadSession(r *http.Request) (session, int, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, 0, errNoSession
	}
	var sess session
	version, err := s.seal.open(r.Context(), sessionCookie, c.Value, &sess)
	if err != nil {
		return session{}, 0, errNoSession
	}
	now := s.cfg.Now()
	if _, err := lifecycle.ParseRole(string(sess.Role)); err != nil || sess.ID == "" || sess.Tenant == "" || sess.Member == "" ||
		!now.Before(time.Unix(sess.Issued, 0).Add(s.cfg.SessionLifetime)) ||
		!now.Before(time.Unix(sess.Seen, 0).Add(s.cfg.IdleTimeout)) {
		return session{}, 0, errNoSession
	}
	_, err = s.cfg.Store.GetIdempotency(r.Context(), namespace(sess.Tenant), sessionRecord(sess))
	switch {
	case err == nil:
		return session{}, 0, errNoSession // signed out
	case !errors.Is(err, store.ErrNotFound):
		return session{}, 0, fmt.Errorf("console: reading the session's sign-out: %w", err)
	}
	// A member removed since sign-in (their keys revoked as a whole) is
	// signed out everywhere.
	removed, ok, err := lifecycle.RemovedAt(r.Context(), s.cfg.Store, sess.Tenant, sess.Member)
	switch {
	case err != nil:
		return session{}, 0, fmt.Errorf("console: %w", err)
	case ok && !time.Unix(sess.Issued, 0).After(removed):
		return session{}, 0, errNoSession
	}
	return sess, version, nil
}

// endSession records a session as signed out until it would have ended.
func (s *Server) endSession(ctx context.Context, sess session) error {
	now := s.cfg.Now()
	err := s.cfg.Store.PutIdempotency(ctx, store.Idempotency{TenantID: namespace(sess.Tenant), Key: sessionRecord(sess),
		RequestHash: "signed-out", Done: true, CreatedAt: now,
		ExpiresAt: time.Unix(sess.Issued, 0).Add(s.cfg.SessionLifetime + time.Minute)})
	if errors.Is(err, store.ErrAlreadyExists) {
		return nil
	}
	return err
}

// memberHandler serves a signed-in member.
type memberHandler func(w http.ResponseWriter, r *http.Request, m *member) error

// member is the signed-in member of a request.
type member struct {
	session
	// env is the environment the pages show: live or test (a query, form
	// field or cookie chooses it, like Stripe's test mode).
	env string
}

// actor is the member as the lifecycle's actor, acting in env.
func (m *member) actor(r *http.Request, env string) lifecycle.Actor {
	return lifecycle.Actor{ID: "member:" + m.Member, RequestID: requestID(r.Context()),
		Bounds: lifecycle.MemberBounds(m.Member, m.Role, env)}
}

func (m *member) can(need string) bool { return scope.AnyGrants(m.Role.Scopes(), need) }

// fresh reports whether the member signed in within FreshAuth, as creating
// or regenerating a live key needs.
func (s *Server) fresh(m *member) bool {
	return m.AuthTime > 0 && s.cfg.Now().Sub(time.Unix(m.AuthTime, 0)) <= s.cfg.FreshAuth
}

// member admits signed-in members whose role grants need ("" for any),
// after the CSRF checks for a POST; a request without a live session is
// sent to sign in.
func (s *Server) member(need string, h memberHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, version, err := s.loadSession(r)
		if errors.Is(err, errNoSession) {
			if _, err := r.Cookie(sessionCookie); err == nil {
				s.clearCookie(w, sessionCookie) // tampered, ended or signed out
			}
			ret := Prefix + "/keys"
			if r.Method == http.MethodGet {
				ret = r.URL.RequestURI()
			}
			http.Redirect(w, r, s.url(Prefix)+"/login?return="+url.QueryEscape(ret), http.StatusSeeOther)
			return
		}
		if err != nil {
			s.renderError(w, r, nil, s.internal(r, "loading session", err))
			return
		}
		if info, ok := r.Context().Value(logKey{}).(*logInfo); ok {
			info.tenant, info.member = sess.Tenant, sess.Member
		}
		m := &member{session: sess, env: "test"}
		if r.Method == http.MethodPost {
			if err := s.checkPost(w, r, sess); err != nil {
				s.renderError(w, r, m, err)
				return
			}
		}
		m.env = s.environment(w, r)
		if need != "" && !m.can(need) {
			s.renderError(w, r, m, forbidden("Your role (%s) does not allow this: it needs %s.", m.Role, need))
			return
		}
		if r.URL.Path != Prefix+"/logout" {
			s.touch(w, r, sess, version)
		}
		if err := h(w, r, m); err != nil {
			s.renderError(w, r, m, err)
		}
	})
}

// touch moves the session's idle expiry on (to the minute, so that not
// every request writes a cookie), resealing it under the current pepper.
func (s *Server) touch(w http.ResponseWriter, r *http.Request, sess session, version int) {
	now := s.cfg.Now()
	if now.Sub(time.Unix(sess.Seen, 0)) < time.Minute && version == s.cfg.Peppers.Current() {
		return
	}
	sess.Seen = now.Unix()
	if err := s.setSession(r.Context(), w, sess); err != nil {
		s.cfg.Logger.WarnContext(r.Context(), "resealing the console session failed", "error", err)
	}
}

// maxForm bounds a form's body.
const maxForm = 64 << 10

// checkPost refuses a state-changing request from another origin, or
// without the session's CSRF token.
func (s *Server) checkPost(w http.ResponseWriter, r *http.Request, sess session) error {
	own := origin(s.base)
	if o := r.Header.Get("Origin"); o != "" {
		if o != own {
			return forbidden("This form was sent from another site (%s); the console refuses it.", o)
		}
	} else if ref := r.Header.Get("Referer"); ref != "" {
		if u, err := url.Parse(ref); err != nil || origin(u) != own {
			return forbidden("This form was sent from another site; the console refuses it.")
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		return &pageError{Status: http.StatusBadRequest, Title: "Bad request", Message: "The form could not be read."}
	}
	token := r.PostForm.Get("csrf")
	if token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(sess.CSRF)) != 1 {
		return forbidden("This form has expired or was not sent from the console. Reload the page and try again.")
	}
	return nil
}

// environment is the environment a request shows: its env parameter
// (remembered in a cookie), else the cookie's, else test.
func (s *Server) environment(w http.ResponseWriter, r *http.Request) string {
	v := r.URL.Query().Get("env")
	if r.Method == http.MethodPost {
		v = r.PostFormValue("env")
	}
	c, _ := r.Cookie(envCookie)
	if validEnv(v) {
		if c == nil || c.Value != v {
			http.SetCookie(w, s.cookie(envCookie, v, 365*24*time.Hour))
		}
		return v
	}
	if c != nil && validEnv(c.Value) {
		return c.Value
	}
	return "test"
}

func validEnv(v string) bool { return v == "live" || v == "test" }

// randomToken is n random bytes, base64url.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("console: crypto/rand: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// logout signs the member out: the session is recorded as ended, so that
// its cookie, replayed, opens nothing, and the cookie is cleared.
func (s *Server) logout(w http.ResponseWriter, r *http.Request, m *member) error {
	if err := s.endSession(r.Context(), m.session); err != nil {
		return s.internal(r, "signing out", err)
	}
	s.clearCookie(w, sessionCookie)
	// The provider's own session would sign the next person at this
	// browser in without a password: end it too where the provider
	// offers RP-initiated logout, coming back to SignedOutPath.
	if idp, err := s.provider(r.Context()); err == nil && idp.endSession != "" {
		if u, err := url.Parse(idp.endSession); err == nil {
			q := u.Query()
			q.Set("client_id", s.cfg.ClientID)
			q.Set("post_logout_redirect_uri", origin(s.base)+s.url(SignedOutPath))
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.String(), http.StatusSeeOther)
			return nil
		}
	}
	s.render(w, r, http.StatusOK, "signedout", nil, nil)
	return nil
}

// SignedOutPath is where the provider sends the browser back after
// signing out (the console client's post-logout redirect URI).
const SignedOutPath = Prefix + "/signedout"

func (s *Server) signedOut(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "signedout", nil, nil)
}
