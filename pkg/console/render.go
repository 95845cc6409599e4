package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/ratelimits"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static/*
var staticFiles embed.FS

// pageNames are the pages, each templates/<name>.html inside
// templates/layout.html.
var pageNames = []string{"keys", "key", "newkey", "secret", "rotate", "revoke", "audit", "members",
	"revokemember", "error", "signedout"}

var funcs = template.FuncMap{
	"date": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02")
	},
	"datetime": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"join": strings.Join,
}

// parsePages parses every page once, at New.
func parsePages() (map[string]*template.Template, error) {
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/audittable.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// view is what the layout renders around a page.
type view struct {
	Root  string  // prefixes every console path in a page (Server.url)
	M     *member // nil when no one is signed in
	Env   string
	Other string // the other environment
	// Here is the page the environment switch shows in the other
	// environment.
	Here  string
	Write bool // the role creates, rotates and revokes
	Admin bool
	Data  any
}

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// render writes a page; every page is sent with Cache-Control: no-store
// (ServeHTTP).
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, m *member, data any) {
	v := view{Root: s.root, M: m, Data: data, Here: Prefix + "/keys"}
	if m != nil {
		v.Env, v.Write, v.Admin = m.env, m.can(needWrite), m.can(needAdmin)
		v.Other = "live"
		if m.env == "live" {
			v.Other = "test"
		}
		if p := r.URL.Path; r.Method == http.MethodGet && (p == Prefix+"/audit" || p == Prefix+"/members") {
			v.Here = p
		}
	}
	buf := buffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer buffers.Put(buf)
	if err := s.pages[name].Execute(buf, v); err != nil {
		s.cfg.Logger.ErrorContext(r.Context(), "rendering a console page failed", "page", name, "error", err)
		http.Error(w, "Internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// pageError is an error shown as a page, or on a form.
type pageError struct {
	Status  int
	Title   string
	Message string
	Field   string // the form field it is about, if any
	SignIn  bool   // offer to sign in again
	Link    string // a page of the console it leads to
}

func (e *pageError) Error() string { return e.Message }

func forbidden(format string, args ...any) *pageError {
	return &pageError{Status: http.StatusForbidden, Title: "Not allowed", Message: fmt.Sprintf(format, args...)}
}

var errNotFound = &pageError{Status: http.StatusNotFound, Title: "Not found", Message: "There is no such page, or no such key in your tenant."}

// fromDomain words a lifecycle error for people; nil for an unexpected one.
func fromDomain(err error) *pageError {
	var pe *pageError
	var ve *lifecycle.ValidationError
	var re *lifecycle.RestrictionError
	var ce *lifecycle.ConflictError
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.As(err, &re):
		return &pageError{Status: http.StatusForbidden, Title: "Not allowed", Message: sentence(re.Message), Field: formField(re.Field)}
	case errors.As(err, &ve):
		return &pageError{Status: http.StatusBadRequest, Title: "Check the form", Message: sentence(fieldLabel(ve.Field) + " " + ve.Message), Field: formField(ve.Field)}
	case errors.Is(err, ratelimits.ErrNoTier):
		return &pageError{Status: http.StatusBadRequest, Title: "Check the form", Field: "tier",
			Message: "The key's rate limit is not one of the deployed tiers."}
	case errors.Is(err, lifecycle.ErrNotFound):
		return errNotFound
	case errors.Is(err, lifecycle.ErrTenantInactive):
		return &pageError{Status: http.StatusForbidden, Title: "Tenant not active", Message: "Your tenant is not active in keyward: keys can no longer be made or changed."}
	case errors.As(err, &ce):
		return &pageError{Status: http.StatusConflict, Title: "This cannot be done now", Message: sentence(ce.Reason)}
	case errors.Is(err, lifecycle.ErrConflict):
		return &pageError{Status: http.StatusConflict, Title: "This cannot be done now", Message: "The key changed meanwhile; try again."}
	}
	return nil
}

// formField is the create form's field for a lifecycle field.
func formField(f string) string {
	switch {
	case strings.HasPrefix(f, "rate_limit"):
		return "tier"
	case f == "expires_at":
		return "expires_on"
	case f == "metadata":
		return "application"
	}
	return f
}

func fieldLabel(f string) string {
	switch formField(f) {
	case "allowed_ips":
		return "The IP allow-list"
	case "allowed_origins":
		return "The allowed origins"
	case "expires_on":
		return "The expiry"
	case "tier":
		return "The rate limit"
	case "application":
		return "The application"
	}
	return "The " + strings.ReplaceAll(f, "_", " ")
}

func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// internal words an error for the page: a lifecycle error as such,
// anything else logged and hidden.
func (s *Server) internal(r *http.Request, what string, err error) *pageError {
	if e := fromDomain(err); e != nil {
		return e
	}
	s.cfg.Logger.ErrorContext(r.Context(), "console: "+what, "error", err, "path", r.URL.Path)
	return &pageError{Status: http.StatusInternalServerError, Title: "Something went wrong",
		Message: "The console could not finish this. Try again in a moment (request " + requestID(r.Context()) + ")."}
}

func (s *Server) renderError(w http.ResponseWriter, r *http.Request, m *member, err error) {
	e := s.internal(r, "request failed", err)
	s.render(w, r, e.Status, "error", m, e)
}

// statics are the static files with their ETags.
var statics = func() map[string][2]string {
	out := map[string][2]string{}
	entries, _ := staticFiles.ReadDir("static")
	for _, e := range entries {
		data, _ := staticFiles.ReadFile("static/" + e.Name())
		sum := sha256.Sum256(data)
		out[e.Name()] = [2]string{string(data), `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return out
}()

func serveStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	f, ok := statics[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch path.Ext(name) {
	case ".js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", f[1])
	http.ServeContent(w, r, name, time.Time{}, strings.NewReader(f[0]))
}
