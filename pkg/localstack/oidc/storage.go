package oidc

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Lifetimes.
const (
	requestTTL     = 30 * time.Minute // an authorization request, until signed in
	codeTTL        = 5 * time.Minute  // a code, until exchanged
	accessTokenTTL = time.Hour
	idTokenTTL     = time.Hour
	sessionTTL     = 12 * time.Hour // the provider's sign-in session
)

// storage is op.Storage in memory, with the provider's sign-in sessions.
// Every method returns copies, never a pointer into its maps.
type storage struct {
	now         func() time.Time
	members     map[string]Member
	memberOrder []string
	clients     map[string]*client
	tenantClaim string
	roleClaim   string
	key         signingKey

	mu       sync.Mutex
	requests map[string]*authRequest // by ID
	codes    map[string]*codeEntry   // by code
	tokens   map[string]*accessToken // by ID
	sessions map[string]*session     // by ID, the session cookie's value
}

var (
	_ op.Storage                        = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest      = (*storage)(nil)
	_ op.CanTerminateSessionFromRequest = (*storage)(nil)
)

type codeEntry struct {
	requestID string
	issued    time.Time
	used      bool
}

type accessToken struct {
	id, clientID, subject string
	requestID             string // the authorization request it came from
	audience, scopes      []string
	expires               time.Time
}

type session struct {
	id       string
	memberID string
	authTime time.Time
}

func newStorage(cfg Config, key signingKey, loginURL string) *storage {
	s := &storage{
		now:         cfg.Now,
		members:     map[string]Member{},
		clients:     map[string]*client{},
		tenantClaim: cfg.TenantClaim,
		roleClaim:   cfg.RoleClaim,
		key:         key,
		requests:    map[string]*authRequest{},
		codes:       map[string]*codeEntry{},
		tokens:      map[string]*accessToken{},
		sessions:    map[string]*session{},
	}
	for _, m := range cfg.Members {
		s.members[m.ID] = m
		s.memberOrder = append(s.memberOrder, m.ID)
	}
	for _, c := range cfg.Clients {
		s.clients[c.ID] = &client{
			Client: Client{ID: c.ID, Secret: c.Secret,
				RedirectURIs:           slices.Clone(c.RedirectURIs),
				PostLogoutRedirectURIs: slices.Clone(c.PostLogoutRedirectURIs)},
			loginURL: loginURL,
		}
	}
	return s
}

// CreateAuthRequest stores a validated authorization request. PKCE with
// S256 is required of every client.
func (s *storage) CreateAuthRequest(_ context.Context, r *oidc.AuthRequest, hintSubject string) (op.AuthRequest, error) {
	if r.CodeChallenge == "" || r.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE is required: send a code_challenge with code_challenge_method=S256")
	}
	req := &authRequest{
		id: randomID(), created: s.now(), clientID: r.ClientID, redirectURI: r.RedirectURI,
		state: r.State, nonce: r.Nonce, scopes: slices.Clone(r.Scopes),
		responseType: r.ResponseType, responseMode: r.ResponseMode,
		prompt: slices.Clone(r.Prompt), loginHint: r.LoginHint, hintSubject: hintSubject,
		challenge: &oidc.CodeChallenge{Challenge: r.CodeChallenge, Method: r.CodeChallengeMethod},
	}
	if r.MaxAge != nil {
		d := time.Duration(*r.MaxAge) * time.Second
		req.maxAge = &d
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep()
	s.requests[req.id] = req
	return req.copy(), nil
}

// sweep forgets what has expired. The caller holds s.mu.
func (s *storage) sweep() {
	now := s.now()
	for id, r := range s.requests {
		if now.Sub(r.created) > requestTTL+codeTTL {
			delete(s.requests, id)
		}
	}
	for c, e := range s.codes {
		if now.Sub(e.issued) > codeTTL {
			delete(s.codes, c)
		}
	}
	for id, t := range s.tokens {
		if now.After(t.expires) {
			delete(s.tokens, id)
		}
	}
	for id, ss := range s.sessions {
		if now.Sub(ss.authTime) > sessionTTL {
			delete(s.sessions, id)
		}
	}
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok || s.now().Sub(r.created) > requestTTL+codeTTL {
		return nil, errors.New("authorization request not found or expired")
	}
	return r.copy(), nil
}

// pending is an authorization request still waiting for a sign-in.
func (s *storage) pending(id string) (*authRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok || r.done || s.now().Sub(r.created) > requestTTL {
		return nil, false
	}
	return r.copy(), true
}

// AuthRequestByCode spends the code: a code is good once. A second use
// revokes the access tokens the first one got (RFC 6749, section 4.1.2),
// and so does a failed exchange spend it.
func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.codes[code]
	switch {
	case !ok:
		return nil, errors.New("unknown code")
	case e.used:
		for id, t := range s.tokens {
			if t.requestID == e.requestID {
				delete(s.tokens, id)
			}
		}
		return nil, errors.New("code already used")
	case s.now().Sub(e.issued) > codeTTL:
		return nil, errors.New("code expired")
	}
	e.used = true
	r, ok := s.requests[e.requestID]
	if !ok {
		return nil, errors.New("authorization request gone")
	}
	return r.copy(), nil
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.requests[id]; !ok {
		return errors.New("authorization request not found")
	}
	s.codes[code] = &codeEntry{requestID: id, issued: s.now()}
	return nil
}

// DeleteAuthRequest forgets the request once its tokens are made; its code
// stays, spent, until it would have expired, so a second use is known.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
	return nil
}

func (s *storage) CreateAccessToken(_ context.Context, tr op.TokenRequest) (string, time.Time, error) {
	t := &accessToken{id: randomID(), subject: tr.GetSubject(),
		audience: slices.Clone(tr.GetAudience()), scopes: slices.Clone(tr.GetScopes()),
		expires: s.now().Add(accessTokenTTL)}
	if r, ok := tr.(*authRequest); ok {
		t.clientID, t.requestID = r.clientID, r.id
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[t.id] = t
	return t.id, t.expires, nil
}

var errNoRefresh = errors.New("refresh tokens are not offered")

func (s *storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errNoRefresh
}

func (s *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, errNoRefresh
}

func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

// TerminateSession is not called: TerminateSessionFromRequest is.
func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revokeTokens(userID, clientID)
	return nil
}

// TerminateSessionFromRequest ends the browser's sign-in session (see
// Provider.endSession) and the access tokens of the member named by the
// id_token_hint.
func (s *storage) TerminateSessionFromRequest(ctx context.Context, r *op.EndSessionRequest) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lo, ok := ctx.Value(logoutKey{}).(*logout); ok {
		if lo.sessionID != "" {
			delete(s.sessions, lo.sessionID)
		}
		lo.header.Add("Set-Cookie", lo.clear.String())
	}
	if r.UserID != "" {
		s.revokeTokens(r.UserID, r.ClientID)
	}
	return r.RedirectURI, nil
}

// revokeTokens ends a member's access tokens, for one client or, with
// clientID empty, all. The caller holds s.mu.
func (s *storage) revokeTokens(userID, clientID string) {
	for id, t := range s.tokens {
		if t.subject == userID && (clientID == "" || t.clientID == clientID) {
			delete(s.tokens, id)
		}
	}
}

func (s *storage) RevokeToken(_ context.Context, tokenID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[tokenID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.tokens, tokenID)
	}
	return nil
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{s.key}}, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, errors.New("unknown client")
	}
	return c, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || c.Secret == "" || !equalSecret(c.Secret, secret) {
		return errors.New("wrong client ID or secret")
	}
	return nil
}

// equalSecret compares in constant time, lengths included.
func equalSecret(want, got string) bool {
	w, g := sha256.Sum256([]byte(want)), sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(w[:], g[:]) == 1
}

// SetUserinfoFromScopes is deprecated in op; SetUserinfoFromRequest does it.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest sets the ID token's claims about the member.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, r op.IDTokenRequest, _ []string) error {
	return s.setUserinfo(info, r.GetSubject())
}

func (s *storage) setUserinfo(info *oidc.UserInfo, memberID string) error {
	m, ok := s.members[memberID]
	if !ok {
		return errors.New("unknown member")
	}
	info.Subject = m.ID
	info.Email = m.Email
	info.EmailVerified = true
	info.Name = m.displayName()
	if m.Tenant != "" {
		info.AppendClaims(s.tenantClaim, m.Tenant)
	}
	if m.Role != "" {
		info.AppendClaims(s.roleClaim, m.Role)
	}
	return nil
}

func (m Member) displayName() string {
	if m.Name != "" {
		return m.Name
	}
	return m.Email
}

// token is an access token still valid.
func (s *storage) token(id string) (accessToken, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[id]
	if !ok || s.now().After(t.expires) {
		return accessToken{}, false
	}
	return *t, true
}

// SetUserinfoFromToken answers /userinfo.
func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	t, ok := s.token(tokenID)
	if !ok || t.subject != subject {
		return errors.New("access token not valid")
	}
	return s.setUserinfo(info, t.subject)
}

// SetIntrospectionFromToken answers /oauth/introspect for a client the
// token was issued to.
func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	t, ok := s.token(tokenID)
	if !ok || t.subject != subject || !slices.Contains(t.audience, clientID) {
		return errors.New("access token not valid for this client")
	}
	info := new(oidc.UserInfo)
	if err := s.setUserinfo(info, t.subject); err != nil {
		return err
	}
	resp.SetUserInfo(info)
	resp.Scope = t.scopes
	resp.ClientID = t.clientID
	resp.Expiration = oidc.FromTime(t.expires)
	return nil
}

// GetPrivateClaimsFromScopes serves JWT access tokens, which no client has.
func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

var errNoJWTProfile = errors.New("JWT profile grants are not offered")

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errNoJWTProfile
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errNoJWTProfile
}

func (s *storage) Health(context.Context) error { return nil }

// checkPassword reports whether the member exists and the password is its.
func (s *storage) checkPassword(memberID, password string) (Member, bool) {
	m, ok := s.members[memberID]
	if !ok {
		equalSecret("", password) // the same work either way
		return Member{}, false
	}
	return m, equalSecret(m.Password, password)
}

// startSession records a sign-in now and returns the new session; the
// session the browser had before, if any, ends.
func (s *storage) startSession(memberID, previous string) session {
	ss := &session{id: randomID(), memberID: memberID, authTime: s.now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, previous)
	s.sessions[ss.id] = ss
	return *ss
}

// session is the browser's sign-in session, if it still holds.
func (s *storage) session(id string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[id]
	if !ok || s.now().Sub(ss.authTime) > sessionTTL {
		return session{}, false
	}
	return *ss, true
}

// complete marks the authorization request signed in by the session.
func (s *storage) complete(requestID string, ss session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[requestID]
	if !ok || r.done {
		return errors.New("authorization request not pending")
	}
	r.subject, r.authTime, r.done = ss.memberID, ss.authTime, true
	return nil
}
