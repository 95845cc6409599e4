package console

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

// provider is the OpenID Connect provider, as discovered.
type provider struct {
	oauth  oauth2.Config
	verify *oidc.IDTokenVerifier
	// endSession is the provider's end_session_endpoint (RP-initiated
	// logout), if its discovery document names one.
	endSession string
}

// discoveryTimeout bounds the provider's discovery document.
const discoveryTimeout = 10 * time.Second

// provider discovers the issuer on first use (not in New, so that a
// function starts while the provider is down), and keeps it.
func (s *Server) provider(ctx context.Context) (*provider, error) {
	s.oidcMu.Lock()
	defer s.oidcMu.Unlock()
	if s.idp != nil {
		return s.idp, nil
	}
	dctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(ctx), s.cfg.HTTPClient), discoveryTimeout)
	defer cancel()
	p, err := oidc.NewProvider(dctx, s.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	idp := &provider{
		oauth: oauth2.Config{ClientID: s.cfg.ClientID, ClientSecret: s.cfg.ClientSecret, Endpoint: p.Endpoint(),
			RedirectURL: s.cfg.RedirectURL, Scopes: append([]string{oidc.ScopeOpenID}, s.cfg.ExtraScopes...)},
		verify: p.Verifier(&oidc.Config{ClientID: s.cfg.ClientID, Now: s.cfg.Now}),
	}
	var discovered struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := p.Claims(&discovered); err == nil {
		idp.endSession = discovered.EndSession
	}
	// A form whose answer sends the browser to sign in again (a live
	// key's create), or to sign out at the provider, must be allowed to
	// end at those endpoints, which may lie on other origins than the
	// issuer's (Cognito's do).
	origins := []string{}
	for _, endpoint := range []string{s.cfg.Issuer, p.Endpoint().AuthURL, idp.endSession} {
		if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
			origins = append(origins, origin(u))
		}
	}
	s.setCSP(origins...)
	s.idp = idp
	return idp, nil
}

// flow is one sign-in under way, sealed in the flow cookie: the state the
// callback must bring back, the nonce the ID token must carry, the PKCE
// verifier the code is exchanged with, and where to go afterwards.
type flow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Return   string `json:"r"`
	Reauth   bool   `json:"a"`
	Started  int64  `json:"t"`
}

// flowLifetime bounds a sign-in at the provider.
const flowLifetime = 10 * time.Minute

// login sends the browser to the provider: authorization code with PKCE
// (S256), state and nonce; reauth=1 asks for a new sign-in (max_age=0,
// prompt=login), as a live key's create needs.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	idp, err := s.provider(r.Context())
	if err != nil {
		s.cfg.Logger.ErrorContext(r.Context(), "discovering the OpenID Connect provider failed", "error", err)
		s.renderError(w, r, nil, &pageError{Status: http.StatusServiceUnavailable, Title: "Sign-in is unavailable",
			Message: "The sign-in provider cannot be reached. Try again in a moment."})
		return
	}
	q := r.URL.Query()
	f := flow{State: randomToken(24), Nonce: randomToken(24), Verifier: oauth2.GenerateVerifier(),
		Return: safeReturn(q.Get("return")), Reauth: q.Get("reauth") == "1", Started: s.cfg.Now().Unix()}
	v, err := s.seal.seal(r.Context(), flowCookie, f)
	if err != nil {
		s.renderError(w, r, nil, s.internal(r, "sealing the sign-in", err))
		return
	}
	http.SetCookie(w, s.cookie(flowCookie, v, flowLifetime))
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(f.Verifier), oidc.Nonce(f.Nonce)}
	if f.Reauth {
		opts = append(opts, oauth2.SetAuthURLParam("max_age", "0"), oauth2.SetAuthURLParam("prompt", "login"))
	}
	http.Redirect(w, r, idp.oauth.AuthCodeURL(f.State, opts...), http.StatusFound)
}

// safeReturn keeps a return path only if it is one of the console's own.
func safeReturn(p string) string {
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.ContainsAny(p, "\\\x00\r\n") ||
		strings.HasPrefix(p, "//") || !(u.Path == Prefix || strings.HasPrefix(u.Path, Prefix+"/")) ||
		strings.Contains(u.Path, "..") || strings.HasPrefix(u.Path, Prefix+"/login") || strings.HasPrefix(u.Path, Prefix+"/callback") {
		return Prefix + "/keys"
	}
	return p
}

// refused is a sign-in the console does not accept.
func refused(status int, msg string) *pageError {
	return &pageError{Status: status, Title: "Sign-in refused", Message: msg, SignIn: true}
}

// callback finishes a sign-in: the state must be the flow's, the code is
// exchanged with the flow's PKCE verifier, and the ID token must be the
// provider's, for this client, with the flow's nonce, and name a tenant
// that is active and a role.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	s.clearCookie(w, flowCookie)
	sess, ret, e := s.finishSignIn(r)
	if e != nil {
		s.renderError(w, r, nil, e)
		return
	}
	if old, _, err := s.loadSession(r); err == nil {
		// The session this sign-in replaces ends with it.
		if err := s.endSession(r.Context(), old); err != nil {
			s.cfg.Logger.WarnContext(r.Context(), "ending the replaced console session failed", "error", err)
		}
	}
	if err := s.setSession(r.Context(), w, sess); err != nil {
		s.renderError(w, r, nil, s.internal(r, "sealing the session", err))
		return
	}
	http.Redirect(w, r, s.url(ret), http.StatusSeeOther)
}

func (s *Server) finishSignIn(r *http.Request) (session, string, error) {
	ctx, q, now := r.Context(), r.URL.Query(), s.cfg.Now()
	var f flow
	c, err := r.Cookie(flowCookie)
	if err == nil {
		_, err = s.seal.open(ctx, flowCookie, c.Value, &f)
	}
	if err != nil {
		return session{}, "", refused(http.StatusBadRequest, "This sign-in was not started here, or has expired. Sign in again.")
	}
	// The state first: an answer this browser's sign-in did not ask for
	// shows nothing of what it carries.
	if st := q.Get("state"); f.State == "" || subtle.ConstantTimeCompare([]byte(st), []byte(f.State)) != 1 {
		return session{}, "", refused(http.StatusBadRequest, "The sign-in's state does not match the one this browser started. Sign in again.")
	}
	if e := q.Get("error"); e != "" {
		s.cfg.Logger.WarnContext(ctx, "the sign-in provider refused", "error", clip(e, 100), "description", clip(q.Get("error_description"), 300))
		return session{}, "", refused(http.StatusForbidden, "The sign-in provider refused the sign-in. Try again, or ask your administrator.")
	}
	if now.After(time.Unix(f.Started, 0).Add(flowLifetime)) {
		return session{}, "", refused(http.StatusBadRequest, "This sign-in took too long. Sign in again.")
	}
	if f.Verifier == "" {
		return session{}, "", refused(http.StatusBadRequest, "This sign-in has no PKCE verifier. Sign in again.")
	}
	code := q.Get("code")
	if code == "" {
		return session{}, "", refused(http.StatusBadRequest, "The sign-in provider returned no authorization code. Sign in again.")
	}
	idp, err := s.provider(ctx)
	if err != nil {
		return session{}, "", refused(http.StatusServiceUnavailable, "The sign-in provider cannot be reached. Try again in a moment.")
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.cfg.HTTPClient)
	tok, err := idp.oauth.Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		s.cfg.Logger.WarnContext(ctx, "exchanging the authorization code failed", "error", err)
		return session{}, "", refused(http.StatusBadGateway, "The sign-in provider did not accept the authorization code. Sign in again.")
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return session{}, "", refused(http.StatusBadGateway, "The sign-in provider returned no ID token.")
	}
	idt, err := idp.verify.Verify(ctx, raw)
	if err != nil {
		s.cfg.Logger.WarnContext(ctx, "the ID token does not verify", "error", err)
		return session{}, "", refused(http.StatusForbidden, "The sign-in provider's ID token is not valid. Sign in again.")
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return session{}, "", refused(http.StatusBadRequest, "The ID token was not issued for this sign-in. Sign in again.")
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return session{}, "", refused(http.StatusBadGateway, "The ID token's claims cannot be read.")
	}
	sess, err := s.sessionOf(ctx, claims, idt, f)
	if err != nil {
		return session{}, "", err
	}
	return sess, f.Return, nil
}

// sessionOf makes the session of a verified ID token's claims.
func (s *Server) sessionOf(ctx context.Context, claims map[string]any, idt *oidc.IDToken, f flow) (session, error) {
	now := s.cfg.Now()
	tenant, _ := claims[s.cfg.TenantClaim].(string)
	roleClaim, _ := claims[s.cfg.RoleClaim].(string)
	member, _ := claims[s.cfg.MemberClaim].(string)
	if tenant == "" || len(tenant) > 128 {
		return session{}, refused(http.StatusForbidden, "Your account belongs to no keyward tenant (its "+s.cfg.TenantClaim+" claim is missing). Ask your administrator to give it one.")
	}
	role, err := lifecycle.ParseRole(roleClaim)
	if err != nil {
		return session{}, refused(http.StatusForbidden, "Your account has no console role (its "+s.cfg.RoleClaim+" claim must be viewer, developer or admin). Ask your administrator to give it one.")
	}
	if !validMember(member) {
		return session{}, refused(http.StatusForbidden, "Your account's "+s.cfg.MemberClaim+" claim cannot name a member: it must be 1 to 128 letters, digits or _ - . @ : + |.")
	}
	t, err := s.cfg.Store.GetTenant(ctx, tenant)
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && t.Status != store.TenantActive):
		return session{}, refused(http.StatusForbidden, "Your tenant is not active in keyward.")
	case err != nil:
		s.cfg.Logger.ErrorContext(ctx, "reading the tenant at sign-in failed", "error", err)
		return session{}, refused(http.StatusServiceUnavailable, "Sign-in cannot finish now. Try again in a moment.")
	}
	// auth_time is when the person last proved who they are; without it
	// (a provider that ignores max_age may leave it out too) it is
	// unknown, and a fresh sign-in cannot be shown.
	var authTime int64
	if v, ok := claims["auth_time"].(float64); ok && v > 0 {
		authTime = min(int64(v), now.Unix())
	}
	if f.Reauth && authTime < f.Started-60 {
		return session{}, refused(http.StatusForbidden, "The sign-in provider did not ask you to sign in again, which creating or regenerating a live key needs.")
	}
	return session{ID: randomToken(18), Tenant: tenant, Member: member, Role: role, AuthTime: authTime,
		Issued: now.Unix(), Seen: now.Unix(), CSRF: randomToken(32)}, nil
}

// validMember accepts what the lifecycle accepts as a member id.
func validMember(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.@:+|", c) >= 0) {
			return false
		}
	}
	return true
}

// clip shortens text from outside to n bytes of printable characters.
func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, s)
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "…"
	}
	return strings.TrimSpace(s)
}
