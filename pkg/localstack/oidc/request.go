package oidc

import (
	"log/slog"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// authRequest is an authorization request, from /authorize to the code's
// exchange; it is op.AuthRequest.
type authRequest struct {
	id           string
	created      time.Time
	clientID     string
	redirectURI  string
	state, nonce string
	scopes       []string
	responseType oidc.ResponseType
	responseMode oidc.ResponseMode
	prompt       []string
	maxAge       *time.Duration // op turns prompt=login into 0
	loginHint    string
	hintSubject  string // the id_token_hint's sub, if one was sent
	challenge    *oidc.CodeChallenge

	// Set by the sign-in.
	subject  string
	authTime time.Time
	done     bool
}

var (
	_ op.AuthRequest    = (*authRequest)(nil)
	_ op.LogAuthRequest = (*authRequest)(nil)
)

func (r *authRequest) copy() *authRequest {
	c := *r
	c.scopes = slices.Clone(r.scopes)
	c.prompt = slices.Clone(r.prompt)
	if r.maxAge != nil {
		d := *r.maxAge
		c.maxAge = &d
	}
	if r.challenge != nil {
		ch := *r.challenge
		c.challenge = &ch
	}
	return &c
}

func (r *authRequest) GetID() string                         { return r.id }
func (r *authRequest) GetACR() string                        { return "" }
func (r *authRequest) GetAudience() []string                 { return []string{r.clientID} }
func (r *authRequest) GetAuthTime() time.Time                { return r.authTime }
func (r *authRequest) GetClientID() string                   { return r.clientID }
func (r *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return r.challenge }
func (r *authRequest) GetNonce() string                      { return r.nonce }
func (r *authRequest) GetRedirectURI() string                { return r.redirectURI }
func (r *authRequest) GetResponseType() oidc.ResponseType    { return r.responseType }
func (r *authRequest) GetResponseMode() oidc.ResponseMode    { return r.responseMode }
func (r *authRequest) GetScopes() []string                   { return r.scopes }
func (r *authRequest) GetState() string                      { return r.state }
func (r *authRequest) GetSubject() string                    { return r.subject }
func (r *authRequest) Done() bool                            { return r.done }

// GetAMR is pwd: a member signs in with a password.
func (r *authRequest) GetAMR() []string {
	if r.done {
		return []string{"pwd"}
	}
	return nil
}

// LogValue keeps the state, nonce and challenge out of the logs.
func (r *authRequest) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", r.id),
		slog.String("client_id", r.clientID),
		slog.String("redirect_uri", r.redirectURI),
		slog.Any("scopes", r.scopes),
	)
}

// hasPrompt reports whether the request's prompt has p.
func (r *authRequest) hasPrompt(p string) bool { return slices.Contains(r.prompt, p) }

// reuses reports whether the browser's session answers the request without
// the login page: prompt is not login or select_account, the sign-in is
// within max_age (max_age=0 never is), and it is the id_token_hint's
// member, if a hint was sent.
func (r *authRequest) reuses(ss session, now time.Time) bool {
	if r.hasPrompt(oidc.PromptLogin) || r.hasPrompt(oidc.PromptSelectAccount) {
		return false
	}
	if r.maxAge != nil && (*r.maxAge == 0 || now.Sub(ss.authTime) > *r.maxAge) {
		return false
	}
	return r.hintSubject == "" || r.hintSubject == ss.memberID
}
