package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/scope"
	"github.com/keyward/keyward/pkg/store"
)

// keyForm is the create form, as sent (and sent back with its errors).
type keyForm struct {
	FormID                                  string
	Name, Description, Application, Contact string
	Environment                             string
	Levels                                  map[string]string // resource: "", "read" or "write"
	AllowedIPs, AllowedOrigins              string
	Browser, BrowserWrites                  bool
	ExpiresOn                               string // YYYY-MM-DD, UTC; empty for never
	Tier                                    string
}

type resourceChoice struct{ Name, Level string }

type tierChoice struct {
	Name, Label string
	Selected    bool
}

type newKeyData struct {
	Form      keyForm
	Resources []resourceChoice
	Tiers     []tierChoice
	Errors    map[string]string
	Error     string
	Today     string
}

func (s *Server) newKeyData(f keyForm, e *pageError) newKeyData {
	d := newKeyData{Form: f, Errors: map[string]string{}, Today: s.cfg.Now().UTC().Format("2006-01-02")}
	for _, res := range s.cfg.Resources {
		d.Resources = append(d.Resources, resourceChoice{Name: res, Level: f.Levels[res]})
	}
	for _, t := range s.cfg.Gateway.RateLimitTiers {
		d.Tiers = append(d.Tiers, tierChoice{Name: t.Name, Selected: t.Name == f.Tier,
			Label: fmt.Sprintf("%s: %d requests per minute, burst %d", t.Name, t.RequestsPerMinute, t.Burst)})
	}
	if e != nil {
		if e.Field != "" {
			d.Errors[e.Field] = e.Message
		} else {
			d.Error = e.Message
		}
	}
	return d
}

// defaultTier is the tier of the lifecycle's default rate limit, else the
// first.
func (s *Server) defaultTier() string {
	if t, ok := s.cfg.Gateway.TierOf(store.RateLimit{RequestsPerMinute: lifecycle.DefaultRequestsPerMinute}); ok {
		return t.Name
	}
	if len(s.cfg.Gateway.RateLimitTiers) > 0 {
		return s.cfg.Gateway.RateLimitTiers[0].Name
	}
	return ""
}

func readKeyForm(r *http.Request, resources []string) keyForm {
	p := r.PostForm
	f := keyForm{FormID: p.Get("form_id"), Name: strings.TrimSpace(p.Get("name")), Description: strings.TrimSpace(p.Get("description")),
		Application: strings.TrimSpace(p.Get("application")), Contact: strings.TrimSpace(p.Get("contact")), Environment: p.Get("environment"), Levels: map[string]string{},
		AllowedIPs: p.Get("allowed_ips"), AllowedOrigins: p.Get("allowed_origins"), Browser: p.Get("browser") != "",
		BrowserWrites: p.Get("browser_writes") != "",
		ExpiresOn:     strings.TrimSpace(p.Get("expires_on")), Tier: p.Get("tier")}
	for _, res := range resources {
		if l := p.Get("scope_" + res); l == "read" || l == "write" {
			f.Levels[res] = l
		}
	}
	return f
}

// list splits a text area into its entries: commas, spaces and lines.
func list(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

func fieldError(field, format string, args ...any) *pageError {
	return &pageError{Status: http.StatusBadRequest, Title: "Check the form", Message: fmt.Sprintf(format, args...), Field: field}
}

// params turns the form into the lifecycle's parameters; the lifecycle
// validates them again, and bounds them by the member's role.
func (s *Server) params(m *member, f keyForm) (lifecycle.CreateParams, error) {
	p := lifecycle.CreateParams{Name: f.Name, Description: f.Description, Environment: apikey.Environment(f.Environment),
		AllowedIPs: list(f.AllowedIPs), AllowedOrigins: list(f.AllowedOrigins), Contact: f.Contact}
	if f.Name == "" {
		return p, fieldError("name", "Give the key a name.")
	}
	if !validEnv(f.Environment) {
		return p, fieldError("environment", "Choose live or test.")
	}
	if f.Application != "" {
		p.Metadata = map[string]string{"application": f.Application}
	}
	for _, res := range s.cfg.Resources {
		if l := f.Levels[res]; l != "" {
			p.Scopes = append(p.Scopes, res+":"+l) // write implies read (pkg/scope)
		}
	}
	if len(p.Scopes) == 0 {
		return p, fieldError("scopes", "Choose read or write for at least one resource.")
	}
	// As the admin API's: only keys:admin hands out keys:* scopes, and only
	// those it holds.
	for _, sc := range p.Scopes {
		if strings.HasPrefix(sc, "keys:") && (!m.can(needAdmin) || !scope.Covers(m.Role.Scopes(), sc)) {
			return p, fieldError("scopes", "Only an admin may grant %s.", sc)
		}
	}
	if f.Browser && len(p.AllowedOrigins) == 0 {
		return p, fieldError("allowed_origins", "A browser key needs at least one allowed origin, such as https://app.example.com.")
	}
	if f.BrowserWrites && len(p.AllowedOrigins) == 0 {
		return p, fieldError("allow_browser_writes", "Only a browser key (one with allowed origins) takes this choice.")
	}
	if len(p.AllowedOrigins) > 0 && !f.BrowserWrites && !scope.OnlyReads(p.Scopes) {
		return p, fieldError("scopes", "A browser key only reads unless you tick “Let this browser key write” below.")
	}
	p.AllowBrowserWrites = f.BrowserWrites
	if f.ExpiresOn != "" {
		day, err := time.Parse("2006-01-02", f.ExpiresOn)
		if err != nil {
			return p, fieldError("expires_on", "Give the expiry as a date (YYYY-MM-DD), or leave it empty.")
		}
		p.ExpiresAt = day.AddDate(0, 0, 1) // the key works through that day, UTC
	}
	if len(s.cfg.Gateway.RateLimitTiers) > 0 {
		var tier config.Tier
		for _, t := range s.cfg.Gateway.RateLimitTiers {
			if t.Name == f.Tier {
				tier = t
			}
		}
		if tier.Name == "" {
			return p, fieldError("tier", "Choose one of the rate limits.")
		}
		p.RateLimit = tier.RateLimit()
	}
	return p, nil
}

// newKeyPage shows the create form; a live key needs a recent sign-in,
// asked for before the form is filled in rather than after.
func (s *Server) newKeyPage(w http.ResponseWriter, r *http.Request, m *member) error {
	if m.env == "live" && !s.fresh(m) {
		s.reauth(w, r, Prefix+"/keys/new?env=live")
		return nil
	}
	f := keyForm{FormID: randomToken(18), Environment: m.env, Tier: s.defaultTier(), Levels: map[string]string{}}
	s.render(w, r, http.StatusOK, "newkey", m, s.newKeyData(f, nil))
	return nil
}

// reauth sends the member to sign in again, then back to ret.
func (s *Server) reauth(w http.ResponseWriter, r *http.Request, ret string) {
	http.Redirect(w, r, s.url(Prefix)+"/login?reauth=1&return="+url.QueryEscape(ret), http.StatusSeeOther)
}
