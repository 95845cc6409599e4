package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/keyward/keyward/pkg/config"
)

// Echo is the built-in protected API: it answers 200 with what it
// received, including the caller the gateway vouched for and the
// Authorization header in place of the client's; on the browser endpoint
// it echoes the checked origin (config.OriginHeader) as CORS asks.
func Echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authz := map[string]string{}
		for header, source := range config.BrowserIntegrationHeaders {
			if name, ok := strings.CutPrefix(source, contextSource); ok && r.Header.Get(header) != "" {
				authz[name] = r.Header.Get(header)
			}
		}
		// What the deployer's upstream must do on the browser endpoint:
		// API Gateway cannot add headers to a proxied answer.
		if o := r.Header.Get(config.OriginHeader); o != "" {
			w.Header().Set("Access-Control-Allow-Origin", o)
			w.Header().Add("Vary", "Origin")
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Method        string            `json:"method"`
			Path          string            `json:"path"`
			Query         url.Values        `json:"query"`
			Authorizer    map[string]string `json:"authorizer"`
			Authorization string            `json:"authorization"`
		}{r.Method, r.URL.Path, r.URL.Query(), authz, r.Header.Get("Authorization")})
	})
}

// Proxy forwards to the user's own service at upstream, as an HTTP proxy
// integration does: upstream's path prefixes the request's, and the client
// address is appended to X-Forwarded-For. Connections are kept alive and
// reused. When the service cannot be reached, or takes longer than timeout
// (IntegrationTimeout, as in AWS), the client gets the INTEGRATION_FAILURE
// or INTEGRATION_TIMEOUT gateway response (504), in the error envelope, and
// the cause goes to the log.
func Proxy(upstream *url.URL, cfg config.Gateway, log *slog.Logger, timeout time.Duration) http.Handler {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Every request goes to one host: keep as many idle connections to it
	// as a busy local stack has requests in flight, not the default two.
	transport.MaxIdleConns, transport.MaxIdleConnsPerHost = 512, 512
	transport.Proxy = nil
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
		},
		Transport: transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			id := w.Header().Get("Request-Id")
			responseType := "INTEGRATION_FAILURE"
			if errors.Is(err, context.DeadlineExceeded) {
				responseType = "INTEGRATION_TIMEOUT"
			}
			log.ErrorContext(r.Context(), "upstream failed", "upstream", upstream.Host, "request_id", id, "gateway_response", responseType, "error", err)
			status, header, body := Render(cfg, responseType, map[string]string{"context.requestId": id})
			for name, vals := range withCORS(header, cfg, r.Header) {
				w.Header()[name] = vals
			}
			w.WriteHeader(status)
			_, _ = w.Write(body)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		proxy.ServeHTTP(w, r.WithContext(ctx))
	})
}
