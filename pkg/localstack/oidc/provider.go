package oidc

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// Default claim names, those of the Cognito user pool's custom attributes.
const (
	DefaultTenantClaim = "custom:tenant_id"
	DefaultRoleClaim   = "custom:role"
)

// Member is a person who can sign in.
type Member struct {
	ID       string // the ID token's sub; must not contain ':'
	Email    string
	Name     string // shown on the login page and in the name claim; Email when empty
	Tenant   string // the tenant claim; left out when empty
	Role     string // the role claim; left out when empty
	Password string // compared as given; must not be empty
}

// Client is a registered OpenID Connect client (a relying party).
type Client struct {
	ID string
	// Secret authenticates the client at the token endpoint (HTTP Basic or
	// form post). Empty registers a public client, a browser app, which
	// PKCE alone authenticates.
	Secret string
	// RedirectURIs are the redirect_uri values allowed, matched exactly.
	RedirectURIs []string
	// PostLogoutRedirectURIs are the post_logout_redirect_uri values
	// allowed at /end_session, matched exactly.
	PostLogoutRedirectURIs []string
}

// Config configures a Provider.
type Config struct {
	// Issuer is the iss of the tokens and the base of every endpoint, for
	// example http://127.0.0.1:8080/oidc; the handler serves its path.
	// Plain http is allowed. No query, fragment or trailing slash.
	Issuer  string
	Members []Member // at least one
	Clients []Client // at least one
	// TenantClaim and RoleClaim name the ID token's claims for the
	// member's tenant and role; DefaultTenantClaim and DefaultRoleClaim
	// when empty.
	TenantClaim, RoleClaim string
	// Now is the clock of sign-ins (auth_time), sessions, codes and access
	// tokens; time.Now when nil. The ID token's iat and exp are the OIDC
	// library's and use the wall clock.
	Now    func() time.Time
	Logger *slog.Logger // slog.Default() when nil
}

// Provider is the OpenID Connect provider, an http.Handler.
type Provider struct {
	issuer  string
	prefix  string // the issuer's path, without a trailing slash
	secure  bool   // the issuer is https: cookies are Secure
	op      *op.Provider
	store   *storage
	handler http.Handler
	log     *slog.Logger
	csrfKey []byte
	// formAction is the login page's CSP form-action: the issuer's origin
	// and every redirect URI's, since browsers hold redirects after a
	// form post to it.
	formAction string
}

// New validates cfg, makes the signing key and returns the provider.
func New(cfg Config) (*Provider, error) {
	iss, err := checkConfig(&cfg)
	if err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Provider{
		issuer:  cfg.Issuer,
		prefix:  strings.TrimSuffix(iss.Path, "/"),
		secure:  iss.Scheme == "https",
		log:     cfg.Logger,
		csrfKey: randomBytes(32),
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("oidc: signing key: %w", err)
	}
	p.store = newStorage(cfg, signingKey{id: hex.EncodeToString(randomBytes(8)), key: key}, p.prefix+loginPath)

	opConfig := &op.Config{
		CryptoKeyId:              "k1",
		DefaultLogoutRedirectURI: cfg.Issuer + loggedOutPath,
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		SupportedUILocales:       []language.Tag{language.English},
		SupportedClaims:          append(slices.Clone(op.DefaultSupportedClaims), cfg.TenantClaim, cfg.RoleClaim),
	}
	copy(opConfig.CryptoKey[:], randomBytes(32))
	p.op, err = op.NewProvider(opConfig, p.store, op.StaticIssuer(cfg.Issuer), op.WithAllowInsecure())
	if err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}

	origins := []string{"'self'"}
	for _, c := range cfg.Clients {
		for _, u := range c.RedirectURIs {
			o := origin(u)
			if !slices.Contains(origins, o) {
				origins = append(origins, o)
			}
		}
	}
	p.formAction = strings.Join(origins, " ")

	issuerCtx := op.NewIssuerInterceptor(p.op.IssuerFromRequest)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+loginPath, issuerCtx.HandlerFunc(p.loginPage))
	mux.HandleFunc("POST "+loginPath, issuerCtx.HandlerFunc(p.login))
	mux.HandleFunc("GET "+stylePath, p.style)
	mux.HandleFunc("GET "+loggedOutPath, p.loggedOut)
	mux.HandleFunc(endSessionPath, p.endSession)
	mux.Handle("/", p.op)
	p.handler = http.StripPrefix(p.prefix, mux)
	return p, nil
}

// Paths under the issuer's.
const (
	loginPath      = "/login"
	stylePath      = "/login.css"
	loggedOutPath  = "/logged-out"
	endSessionPath = "/end_session" // the op's default end_session endpoint
)

// Issuer is the issuer, as configured.
func (p *Provider) Issuer() string { return p.issuer }

// ServeHTTP serves everything under the issuer's path; the request's path
// is the full one (mount the provider at the issuer's path, not stripped).
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.prefix != "" && !strings.HasPrefix(r.URL.Path, p.prefix+"/") {
		http.NotFound(w, r)
		return
	}
	p.handler.ServeHTTP(w, r)
}

// endSession runs the op's end_session endpoint with the browser's session
// in the context, for the storage to end it (TerminateSessionFromRequest)
// once the request is found valid.
func (p *Provider) endSession(w http.ResponseWriter, r *http.Request) {
	lo := &logout{header: w.Header(), clear: p.cookie(sessionCookie, "", -1)}
	if c, err := r.Cookie(sessionCookie); err == nil {
		lo.sessionID = c.Value
	}
	p.op.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), logoutKey{}, lo)))
}

// logout is the browser's side of a sign-out.
type logout struct {
	sessionID string
	header    http.Header  // the response's, to clear the cookie
	clear     *http.Cookie // the expired session cookie
}

type logoutKey struct{}

// cookie is one of the provider's cookies; maxAge < 0 deletes it.
func (p *Provider) cookie(name, value string, maxAge int) *http.Cookie {
	path := p.prefix
	if path == "" {
		path = "/"
	}
	return &http.Cookie{
		Name: name, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteLaxMode,
	}
}

func checkConfig(cfg *Config) (*url.URL, error) {
	iss, err := url.Parse(cfg.Issuer)
	if err != nil || (iss.Scheme != "http" && iss.Scheme != "https") || iss.Host == "" ||
		iss.RawQuery != "" || iss.Fragment != "" || strings.HasSuffix(iss.Path, "/") || iss.User != nil {
		return nil, fmt.Errorf("issuer %q: want an absolute http(s) URL without query, fragment or trailing slash", cfg.Issuer)
	}
	if cfg.TenantClaim == "" {
		cfg.TenantClaim = DefaultTenantClaim
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = DefaultRoleClaim
	}
	if cfg.TenantClaim == cfg.RoleClaim {
		return nil, errors.New("TenantClaim and RoleClaim are the same")
	}
	if len(cfg.Members) == 0 {
		return nil, errors.New("no members")
	}
	seen := map[string]bool{}
	for _, m := range cfg.Members {
		switch {
		case m.ID == "" || strings.Contains(m.ID, ":"):
			return nil, fmt.Errorf("member %q: want an ID without ':'", m.ID)
		case seen[m.ID]:
			return nil, fmt.Errorf("member %q: listed twice", m.ID)
		case m.Email == "" || m.Password == "":
			return nil, fmt.Errorf("member %q: want an email and a password", m.ID)
		}
		seen[m.ID] = true
	}
	if len(cfg.Clients) == 0 {
		return nil, errors.New("no clients")
	}
	seen = map[string]bool{}
	for _, c := range cfg.Clients {
		if c.ID == "" || seen[c.ID] {
			return nil, fmt.Errorf("client %q: want a unique, non-empty ID", c.ID)
		}
		seen[c.ID] = true
		if len(c.RedirectURIs) == 0 {
			return nil, fmt.Errorf("client %q: no redirect URIs", c.ID)
		}
		for _, u := range append(slices.Clone(c.RedirectURIs), c.PostLogoutRedirectURIs...) {
			if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || pu.Fragment != "" {
				return nil, fmt.Errorf("client %q: redirect URI %q: want an absolute http(s) URL without fragment", c.ID, u)
			}
		}
	}
	return iss, nil
}

// origin is scheme://host of an absolute URL checked by checkConfig.
func origin(u string) string {
	pu, _ := url.Parse(u)
	return pu.Scheme + "://" + pu.Host
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail
	}
	return b
}

// randomID is an unguessable identifier: 128 bits, hex.
func randomID() string { return hex.EncodeToString(randomBytes(16)) }

// signingKey is the ID tokens' key, made at start; it is op.SigningKey.
type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.id }

// publicKey is the signing key's public half for the JWKS; it is op.Key.
type publicKey struct{ signingKey }

func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }
