package oidc

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Cookies, under the issuer's path.
const (
	sessionCookie = "keyward_oidc_session" // the sign-in session's ID
	csrfCookie    = "keyward_oidc_csrf"    // the login form's CSRF secret
)

// maxFormBytes bounds a login post.
const maxFormBytes = 16 << 10

var (
	//go:embed login.html
	loginHTML string
	//go:embed login.css
	loginCSS []byte

	pages = template.Must(template.New("pages").Parse(loginHTML))
)

// loginData is the login page's.
type loginData struct {
	Action, Stylesheet string
	RequestID, CSRF    string
	Client             string
	Members            []memberRow
	Error              string
}

type memberRow struct {
	ID, Name, Email, Tenant, Role string
	Checked                       bool
}

// loginPage is where op sends the browser for a sign-in. A session that
// answers the request skips the page; prompt=none without one answers
// login_required.
func (p *Provider) loginPage(w http.ResponseWriter, r *http.Request) {
	req, ok := p.store.pending(r.URL.Query().Get("authRequestID"))
	if !ok {
		p.page(w, http.StatusBadRequest, "This sign-in has expired or is unknown. Start again from the console.")
		return
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		if ss, ok := p.store.session(c.Value); ok && req.reuses(ss, p.store.now()) {
			p.finish(w, r, req, ss)
			return
		}
	}
	if req.hasPrompt(oidc.PromptNone) {
		op.AuthRequestError(w, r, req, oidc.ErrLoginRequired(), p.op)
		return
	}
	p.renderLogin(w, r, http.StatusOK, req, req.loginHint, "")
}

// login checks the posted form and signs the member in.
func (p *Provider) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		p.page(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	if !p.sameOrigin(r) || !p.csrfValid(r, r.PostForm.Get("authRequestID"), r.PostForm.Get("csrf")) {
		p.log.Warn("oidc: login form refused: cross-site or without its CSRF token", "remote", r.RemoteAddr,
			"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		p.page(w, http.StatusForbidden, "This form was not sent from the sign-in page. Start again from the console.")
		return
	}
	req, ok := p.store.pending(r.PostForm.Get("authRequestID"))
	if !ok {
		p.page(w, http.StatusBadRequest, "This sign-in has expired or is unknown. Start again from the console.")
		return
	}
	memberID := r.PostForm.Get("member")
	m, ok := p.store.checkPassword(memberID, r.PostForm.Get("password"))
	if !ok {
		p.log.Warn("oidc: sign-in refused", "member", memberID, "client_id", req.clientID)
		p.renderLogin(w, r, http.StatusUnauthorized, req, memberID, "Wrong member or password.")
		return
	}
	var previous string
	if c, err := r.Cookie(sessionCookie); err == nil {
		previous = c.Value
	}
	ss := p.store.startSession(m.ID, previous)
	http.SetCookie(w, p.cookie(sessionCookie, ss.id, int(sessionTTL.Seconds())))
	p.log.Info("oidc: signed in", "member", m.ID, "email", m.Email, "client_id", req.clientID)
	p.finish(w, r, req, ss)
}

// finish completes the request with the session and sends the browser to
// op's callback, which redirects to the client with the code.
func (p *Provider) finish(w http.ResponseWriter, r *http.Request, req *authRequest, ss session) {
	if err := p.store.complete(req.id, ss); err != nil {
		p.page(w, http.StatusBadRequest, "This sign-in has expired or is unknown. Start again from the console.")
		return
	}
	http.Redirect(w, r, op.AuthCallbackURL(p.op)(r.Context(), req.id), http.StatusFound)
}

func (p *Provider) renderLogin(w http.ResponseWriter, r *http.Request, status int, req *authRequest, selected, msg string) {
	secret := ""
	if c, err := r.Cookie(csrfCookie); err == nil && c.Value != "" {
		secret = c.Value
	} else {
		secret = base64.RawURLEncoding.EncodeToString(randomBytes(32))
		http.SetCookie(w, p.cookie(csrfCookie, secret, 0))
	}
	d := loginData{
		Action: p.prefix + loginPath, Stylesheet: p.prefix + stylePath,
		RequestID: req.id, CSRF: p.csrfToken(secret, req.id), Client: req.clientID, Error: msg,
	}
	for _, id := range p.store.memberOrder {
		m := p.store.members[id]
		d.Members = append(d.Members, memberRow{ID: m.ID, Name: m.displayName(), Email: m.Email,
			Tenant: m.Tenant, Role: m.Role, Checked: id == selected || m.Email == selected})
	}
	if len(d.Members) == 1 {
		d.Members[0].Checked = true
	}
	p.render(w, status, "login", d)
}

// page shows a message alone.
func (p *Provider) page(w http.ResponseWriter, status int, msg string) {
	p.render(w, status, "message", loginData{Stylesheet: p.prefix + stylePath, Error: msg})
}

func (p *Provider) loggedOut(w http.ResponseWriter, _ *http.Request) {
	p.page(w, http.StatusOK, "You are signed out.")
}

func (p *Provider) render(w http.ResponseWriter, status int, name string, d loginData) {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, d); err != nil {
		p.log.Error("oidc: login page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action "+p.formAction)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: with no-referrer the form post says Origin: null.
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_, _ = b.WriteTo(w)
}

func (p *Provider) style(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(loginCSS)
}

// csrfToken binds the form to the browser's CSRF cookie and to the
// authorization request.
func (p *Provider) csrfToken(secret, requestID string) string {
	mac := hmac.New(sha256.New, p.csrfKey)
	mac.Write([]byte(secret))
	mac.Write([]byte{0})
	mac.Write([]byte(requestID))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func (p *Provider) csrfValid(r *http.Request, requestID, token string) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" || token == "" {
		return false
	}
	return hmac.Equal([]byte(token), []byte(p.csrfToken(c.Value, requestID)))
}

// sameOrigin refuses a post that the browser says came from another site:
// by Sec-Fetch-Site, or by an Origin other than the issuer's.
func (p *Provider) sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(p.issuer)
	return err == nil && strings.EqualFold(o, u.Scheme+"://"+u.Host)
}
