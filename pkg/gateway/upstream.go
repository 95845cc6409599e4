package gateway

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"

	"github.com/keyward/keyward/config"
)

// ContextHeaders maps the headers the protected API receives to the
// authorizer context values they carry, as the CDK stack maps them in the
// integration request. The client's own X-Keyward-* headers and its
// Authorization header never reach the backend.
var ContextHeaders = map[string]string{
	"X-Keyward-Tenant-Id":   "tenant_id",
	"X-Keyward-Key-Id":      "key_id",
	"X-Keyward-Environment": "environment",
	"X-Keyward-Scopes":      "scopes",
}

// Echo is the built-in protected API: it answers 200 with what it
// received, including the caller the gateway vouched for.
func Echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authz := map[string]string{}
		for header, name := range ContextHeaders {
			authz[name] = r.Header.Get(header)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Method     string            `json:"method"`
			Path       string            `json:"path"`
			Query      url.Values        `json:"query"`
			Authorizer map[string]string `json:"authorizer"`
		}{r.Method, r.URL.Path, r.URL.Query(), authz})
	})
}

// Proxy forwards to the user's own service at upstream, as an HTTP proxy
// integration does: upstream's path prefixes the request's, and the client
// address is appended to X-Forwarded-For. When the service cannot be
// reached the client gets the INTEGRATION_FAILURE gateway response, in the
// error envelope, and the cause goes to the log.
func Proxy(upstream *url.URL, cfg config.Gateway, log *slog.Logger) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			id := w.Header().Get("Request-Id")
			log.ErrorContext(r.Context(), "upstream unreachable", "upstream", upstream.Host, "request_id", id, "error", err)
			status, header, body := Render(cfg, "INTEGRATION_FAILURE", map[string]string{"context.requestId": id})
			for name, vals := range header {
				w.Header()[name] = vals
			}
			w.WriteHeader(status)
			_, _ = w.Write(body)
		},
	}
}
