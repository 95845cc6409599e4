// Package oidc is the local stack's OpenID Connect provider: it stands in
// for the Cognito user pool, so that members of the demo tenant can sign in
// to keyward's web console on a developer's machine. `make dev` runs it in
// its own process, over plain http on 127.0.0.1.
//
// The protocol is github.com/zitadel/oidc/v3's op package; this package
// gives it a small in-memory storage, a login page and the sign-in session.
// Everything is lost when the process stops: signing keys, sessions, codes
// and access tokens.
//
// # What it serves
//
// Under the issuer's path (Config.Issuer, for example
// http://127.0.0.1:8080/oidc), which the caller routes to the Provider with
// the path unchanged:
//
//	/.well-known/openid-configuration   discovery
//	/keys                               the JWKS: one RSA 2048 key made at start (RS256)
//	/authorize                          the authorization endpoint (code flow only)
//	/login                              the login page
//	/oauth/token                        the token endpoint (authorization_code only)
//	/userinfo, /oauth/introspect, /revoke
//	/end_session                        sign-out (RP-initiated logout)
//	/logged-out                         where a sign-out without a post_logout_redirect_uri ends
//
// In use:
//
//	p, err := oidc.New(oidc.Config{
//		Issuer:  "http://127.0.0.1:8080/oidc",
//		Members: []oidc.Member{{ID: "mem_alice", Email: "alice@demo.test", Tenant: "tnt_demo", Role: "admin", Password: pw}},
//		Clients: []oidc.Client{{ID: "keyward-console", Secret: secret, RedirectURIs: []string{"http://127.0.0.1:5173/auth/callback"}}},
//	})
//	mux.Handle("/oidc/", p)
//
// # The demo flow
//
//  1. The console sends the browser to /authorize with response_type=code,
//     scope=openid (email and profile may be added), its client_id and a
//     registered redirect_uri, a state, a nonce and a PKCE code_challenge
//     with code_challenge_method=S256. PKCE is required of every client,
//     public or confidential; any other request is answered at the
//     redirect_uri with error=invalid_request. An unknown client or an
//     unregistered redirect_uri gets a 400 page and no redirect.
//  2. Without a sign-in session the provider shows the login page: the
//     demo members (name, email, tenant, role) and a password field. The
//     passwords are the ones Config.Members gives, which make dev prints.
//     The form carries a token bound to a cookie and to the authorization
//     request, and a cross-site post is refused.
//  3. A right password starts the provider's session (a cookie under the
//     issuer's path) and sends the browser to the redirect_uri with a code.
//     A wrong one shows the page again.
//  4. The console exchanges the code, with its secret and the PKCE
//     code_verifier, at /oauth/token for an ID token and an access token.
//     A code is good once, for five minutes; a second use is refused and
//     revokes the access token the first one got.
//  5. The ID token, signed with RS256, carries sub (the member's ID),
//     email, email_verified, name, auth_time (when the member typed the
//     password), and the member's tenant and role under
//     Config.TenantClaim and Config.RoleClaim, by default
//     custom:tenant_id and custom:role as in the Cognito user pool. These
//     claims do not depend on the scopes asked for.
//
// A later authorization request in the same browser is answered from the
// session without the login page, and auth_time stays the time of that
// sign-in. max_age=N shows the login page again when the sign-in is older
// than N seconds (so a console that wants a sign-in within the last 15
// minutes sends max_age=900 and checks auth_time); max_age=0 and
// prompt=login always show it; prompt=none answers error=login_required
// rather than show it.
//
// /end_session ends the provider's session (its cookie and the server's
// record) and the access tokens of the member named by id_token_hint, then
// sends the browser to the client's registered post_logout_redirect_uri,
// or to /logged-out.
//
// Refresh tokens, the implicit and hybrid flows, dynamic registration,
// consent and the device flow are not offered.
package oidc
