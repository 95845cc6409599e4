package gateway_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/localstack/gateway"
	"github.com/keyward/keyward/pkg/route"
)

// BenchmarkGateway is the emulated gateway's CPU per request to the
// built-in echo, in process, over the embedded store, as `keyward dev`
// serves it: GET /invoices public (the baseline), authorized with the
// authorizer called on every request (cache off), and with its decision
// cached. Issue 17 asks that authorization with the cache off add at most
// 30% to the baseline.
func BenchmarkGateway(b *testing.B) {
	for _, c := range []struct {
		name   string
		public bool
		ttl    int
	}{{"public", true, 0}, {"cache-off", false, 0}, {"cache-on", false, 300}} {
		b.Run(c.name, func(b *testing.B) {
			gw, token := benchGateway(b, c.public, c.ttl)
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest("GET", "/invoices?limit=2", nil)
				r.RemoteAddr = "192.0.2.1:1234"
				r.Header.Set("Authorization", "Bearer "+token)
				w := httptest.NewRecorder()
				gw.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}

func benchGateway(b *testing.B, public bool, ttl int) (*gateway.Gateway, string) {
	b.Helper()
	st := storetest.Temp(b)
	_, ring := storetest.Peppers(b, st, time.Now())
	format, _ := apikey.NewFormat("sk")
	svc := lifecycle.New(st, ring, format)
	actor := lifecycle.Actor{ID: "operator"}
	if _, err := svc.Onboard(b.Context(), actor, lifecycle.OnboardParams{TenantID: "acme", Name: "Acme"}); err != nil {
		b.Fatal(err)
	}
	k, err := svc.Create(b.Context(), actor, "acme", lifecycle.CreateParams{Name: "bench", Environment: apikey.Live, Scopes: []string{"invoices:read"}})
	if err != nil {
		b.Fatal(err)
	}
	rt, err := config.Routes("")
	if err != nil {
		b.Fatal(err)
	}
	if public {
		// The same request without authorization: a table config.Routes
		// refuses, compiled here directly.
		for i, r := range rt.Routes {
			if r.Method == "GET" && r.Path == "/invoices" {
				rt.Routes[i] = config.Route{Method: "GET", Path: "/invoices", Auth: config.AuthNone}
			}
		}
	}
	routes, err := route.Compile(config.APIRoutes(rt)...)
	if err != nil {
		b.Fatal(err)
	}
	gwc := loadGateway(b)
	gwc.Authorizer.CacheTTLSeconds = ttl
	// One tier no benchmark reaches: the usage plan's cost, not its 429.
	gwc.RateLimitTiers = []config.Tier{{Name: "bench", RequestsPerMinute: 1 << 40, Burst: 1 << 40}}
	quiet := slog.New(slog.NewJSONHandler(io.Discard, nil))
	a, err := authorizer.New(authorizer.Config{Store: st, Peppers: ring, Format: format, Routes: routes, Gateway: gwc,
		Decisions: io.Discard, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{Routes: routes, Gateway: gwc, Authorizer: a, Admin: (&function{}).invoke,
		Upstream: gateway.Echo(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	if err := gw.Provision(b.Context(), gwc.RateLimitIdentity("acme", k.Key.ID), "bench"); err != nil {
		b.Fatal(err)
	}
	return gw, k.Token.Plain()
}
