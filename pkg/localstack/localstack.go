// Package localstack runs all of keyward on one machine with no AWS
// account, as `vault server -dev` does for Vault: the embedded store in a
// data directory, a local AES-256-GCM key ring in place of KMS, the real
// authorizer and admin API, and the API Gateway emulation in front of them
// and of the protected API (a built-in echo, or the user's own service).
package localstack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/keyward/keyward/config"
	"github.com/keyward/keyward/pkg/admin"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/gateway"
	"github.com/keyward/keyward/pkg/keys"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/route"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/store/embedded"
	"github.com/keyward/keyward/pkg/usage"
)

// DemoTenant is the tenant the first start creates.
const DemoTenant = "demo"

// Options configure the local stack.
type Options struct {
	DataDir       string // default ".keyward"
	Upstream      string // the user's service; empty for the built-in echo
	OperatorToken string // empty: a random one per start
	RoutesFile    string // the protected API's route table; empty for the demo table
	GatewayFile   string // gateway settings (cache, tiers, responses); empty for the shipped ones
	TokenPrefix   string // default "sk"
	// CacheTTL overrides gateway.json's authorizer cache TTL when set.
	CacheTTL *int
	Logger   *slog.Logger
	Now      func() time.Time
}

// Stack is an opened local stack.
type Stack struct {
	Handler       http.Handler // the emulated API Gateway: everything is served through it
	Authorizer    *authorizer.Authorizer
	Admin         http.Handler // the admin API itself, for invoking it without the gateway
	OperatorToken string
	Gateway       config.Gateway
	// Bootstrap is set on the first start only: the demo tenant's keys,
	// whose secrets exist nowhere else.
	Bootstrap *Bootstrap

	store *embedded.Store
	log   *slog.Logger
}

// Bootstrap is what the first start created.
type Bootstrap struct {
	AdminKey keys.Created // keys:admin
	DemoKey  keys.Created // invoices:read, for trying the protected API
}

// Open opens (creating on first use) the data directory and builds the
// stack. The caller must Close it.
func Open(ctx context.Context, o Options) (*Stack, error) {
	o.DataDir = cmp.Or(o.DataDir, ".keyward")
	o.TokenPrefix = cmp.Or(o.TokenPrefix, apikey.DefaultPrefix)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("localstack: data directory: %w", err)
	}
	st, err := embedded.Open(filepath.Join(o.DataDir, "keyward.journal"), embedded.WithClock(o.Now))
	if err != nil {
		return nil, fmt.Errorf("localstack: %w", err)
	}
	s := &Stack{store: st, log: o.Logger}
	if err := s.build(ctx, o); err != nil {
		_ = st.Close()
		return nil, err
	}
	return s, nil
}

func (s *Stack) build(ctx context.Context, o Options) error {
	kr, err := pepper.OpenLocalKeyring(filepath.Join(o.DataDir, "master.key"))
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	if peppers, err := s.store.ListPeppers(ctx); err != nil {
		return fmt.Errorf("localstack: %w", err)
	} else if len(peppers) == 0 {
		if _, err := pepper.Create(ctx, s.store, kr, o.Now()); err != nil {
			return fmt.Errorf("localstack: first pepper: %w", err)
		}
	}
	ring, err := pepper.Load(ctx, s.store, kr)
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	format, err := apikey.NewFormat(o.TokenPrefix)
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	rt, err := config.Routes(o.RoutesFile)
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	routes, err := route.Compile(rt, config.AdminRoutes())
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	s.Gateway, err = config.GatewayFile(o.GatewayFile)
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	if o.CacheTTL != nil {
		s.Gateway.Authorizer.CacheTTLSeconds = *o.CacheTTL
		if err := s.Gateway.Validate(); err != nil {
			return fmt.Errorf("localstack: %w", err)
		}
	}
	upstream := gateway.Echo()
	if o.Upstream != "" {
		u, err := url.Parse(o.Upstream)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("localstack: UPSTREAM %q is not an http(s)://host:port URL", o.Upstream)
		}
		upstream = gateway.Proxy(u)
	}
	s.OperatorToken = o.OperatorToken
	if s.OperatorToken == "" {
		if s.OperatorToken, err = apikey.RandomString(32); err != nil {
			return err
		}
		s.OperatorToken = "op_" + s.OperatorToken
	}

	authz, err := authorizer.New(authorizer.Config{Store: s.store, Peppers: ring, Format: format, Routes: routes,
		Gateway: s.Gateway, Logger: o.Logger, Now: o.Now})
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	// The admin API provisions rate limits in, and flushes, the gateway
	// that fronts it, so the two are tied after both exist.
	var adminAPI http.Handler
	gw, err := gateway.New(gateway.Config{Routes: routes, Gateway: s.Gateway, Authorizer: authz,
		Admin:    http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { adminAPI.ServeHTTP(w, r) }),
		Upstream: upstream, OperatorToken: s.OperatorToken, Now: o.Now, Logger: o.Logger})
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	plans, err := openPlans(filepath.Join(o.DataDir, "usage-plans.json"), gw)
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	svc := keys.New(s.store, ring, format, keys.WithClock(o.Now))
	adminAPI = admin.New(admin.Config{Keys: svc, Store: s.store, Gateway: s.Gateway, RateLimits: plans, Flusher: gw,
		Logger: o.Logger, Now: o.Now})
	s.Handler, s.Authorizer, s.Admin = gw, authz, adminAPI
	return s.bootstrap(ctx, svc, plans)
}

// bootstrap creates the demo tenant, its admin key and a demo key on the
// first start.
func (s *Stack) bootstrap(ctx context.Context, svc *keys.Service, plans admin.RateLimits) error {
	if _, err := svc.Tenant(ctx, DemoTenant); err == nil {
		return nil
	} else if !errors.Is(err, keys.ErrNotFound) {
		return fmt.Errorf("localstack: %w", err)
	}
	actor := keys.Actor{ID: "local:bootstrap"}
	_, adminKey, err := svc.Onboard(ctx, actor, keys.OnboardParams{TenantID: DemoTenant, Name: "Demo tenant"})
	if err != nil {
		return fmt.Errorf("localstack: creating the demo tenant: %w", err)
	}
	demo, err := svc.Create(ctx, actor, DemoTenant, keys.CreateParams{Name: "Demo key", Environment: apikey.Live,
		Scopes: []string{"invoices:read"}, CreatedBy: "demo_member"})
	if err != nil {
		return fmt.Errorf("localstack: creating the demo key: %w", err)
	}
	tier := s.Gateway.RateLimitTiers[0].Name // the default tier: what keys get when created with no limit
	for _, k := range []store.Key{adminKey.Key, demo.Key} {
		if err := plans.Provision(ctx, usage.Identity(s.Gateway.UsageIdentity, k.TenantID, k.ID), tier); err != nil {
			return fmt.Errorf("localstack: %w", err)
		}
	}
	s.Bootstrap = &Bootstrap{AdminKey: adminKey, DemoKey: demo}
	return nil
}

// Close closes the store; every acknowledged write is already on disk.
func (s *Stack) Close() error { return s.store.Close() }

// Serve serves the stack on ln until ctx ends, then shuts down gracefully:
// requests in flight finish (up to 10 s) before the store closes.
func (s *Stack) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	s.log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("localstack: shutdown: %w", err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
