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
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/keyward/keyward/docs"
	"github.com/keyward/keyward/pkg/admin"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/console"
	"github.com/keyward/keyward/pkg/jobs"
	"github.com/keyward/keyward/pkg/keyevents"
	"github.com/keyward/keyward/pkg/leaks"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/localstack/gateway"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/route"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/store/embedded"
	"github.com/keyward/keyward/pkg/usage"
)

// DemoTenant is the tenant the first start creates.
const DemoTenant = "demo"

// OperatorRole stands in for the stack's operator role: a session of it,
// such as arn:aws:sts::000000000000:assumed-role/keyward-local-operator/me,
// is an operator, in an event `keyward invoke` runs the admin handler on
// and behind the served stack's gateway, where the operator token signs
// requests as OperatorSession.
const OperatorRole = "arn:aws:iam::000000000000:role/keyward-local-operator"

// OperatorSession is the session of OperatorRole that the operator token
// stands for: the actor of the audit entries it makes.
const OperatorSession = "arn:aws:sts::000000000000:assumed-role/keyward-local-operator/local"

// Options configure the local stack.
type Options struct {
	DataDir       string // default ".keyward"
	Upstream      string // the user's service; empty for the built-in echo
	OperatorToken string // empty: a random one per start
	RoutesFile    string // the protected API's route table; empty for the demo table
	GatewayFile   string // gateway settings (cache, tiers, responses); empty for the shipped ones
	// GitHubKeysFile holds the keys that may sign leaked-key reports, in
	// GitHub's format; without it every report is refused.
	GitHubKeysFile string
	// LeakPolicy is what happens to a live key reported leaked: revoke
	// (the default) or flag.
	LeakPolicy  leaks.Policy
	TokenPrefix string // default apikey.DefaultPrefix
	// CacheTTL overrides gateway.json's authorizer cache TTL when set.
	CacheTTL *int
	// Fast runs the scheduled jobs every few seconds, and rotates peppers
	// every minute, for trying rotation and expiry.
	Fast bool
	// BaseURL is where the stack is served (http://host:port): with it,
	// the stack serves the console and the development OpenID provider
	// its demo members sign in with.
	BaseURL string
	Logger  *slog.Logger
	// Decisions receives the authorizer's decision lines, as stdout does
	// in Lambda; nil writes none.
	Decisions io.Writer
	Now       func() time.Time
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
	// Jobs are the scheduled jobs; Serve runs them on Schedule.
	Jobs     *jobs.Jobs
	Schedule map[string]time.Duration
	// Events publishes to the log and events.jsonl, as the publisher
	// function does to EventBridge.
	Events *keyevents.File
	// Members sign in to the console (with Options.BaseURL); their
	// passwords are new each start.
	Members []DemoMember
	// Usage counts the gateway's requests by key and minute into the
	// store, as functions/usage does from the access log in AWS.
	Usage *usage.Aggregator

	store *embedded.Store
	log   *slog.Logger
	now   func() time.Time
}

// Schedules of the jobs as the local stack runs them (jobs.Schedules are
// the deployed ones), and fast for trying things out. The expiry sweep ends
// the cached decisions of expired keys: locally it runs twice a second,
// with no minute granularity to respect.
var (
	LocalSchedules = map[string]time.Duration{
		jobs.ExpirySweep: 500 * time.Millisecond, jobs.ExpiryWarnings: time.Hour,
		jobs.UnusedKeys: 24 * time.Hour, jobs.PepperRotation: 24 * time.Hour,
	}
	FastSchedules = map[string]time.Duration{
		jobs.ExpirySweep: 500 * time.Millisecond, jobs.ExpiryWarnings: 5 * time.Second,
		jobs.UnusedKeys: 10 * time.Second, jobs.PepperRotation: 10 * time.Second,
	}
)

// Bootstrap is what the first start created.
type Bootstrap struct {
	AdminKey     lifecycle.Created // keys:admin, live
	TestAdminKey lifecycle.Created // keys:admin, test
	DemoKey      lifecycle.Created // invoices:read, for trying the protected API
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
	// The directory holds the master key and every key's hash: its own
	// mode is tightened too, not only that of a new one.
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("localstack: data directory: %w", err)
	}
	if err := os.Chmod(o.DataDir, 0o700); errors.Is(err, fs.ErrPermission) {
		// Someone else's directory: its owner could read the key ring.
		return nil, fmt.Errorf("localstack: the data directory %s is not yours (its owner can read what keyward keeps there, the key ring among it): "+
			"choose a directory of your own with -data or KEYWARD_DATA_DIR", o.DataDir)
	} else if err != nil {
		return nil, fmt.Errorf("localstack: data directory: %w", err)
	}
	st, err := openStore(ctx, o.DataDir, o.Now, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("localstack: %w", err)
	}
	// Committed audit entries become events, as the table's stream and the
	// publisher function do in AWS: to the log and events.jsonl, from the
	// store's outbox (runPublisher).
	s := &Stack{store: st, log: o.Logger, now: o.Now, Events: &keyevents.File{Path: filepath.Join(o.DataDir, eventsFile), Logger: o.Logger}}
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
	ring, err := pepper.Load(ctx, s.store, kr, pepper.WithClock(o.Now))
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
	routes, err := route.Compile(config.APIRoutes(rt)...)
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
		upstream = gateway.Proxy(u, s.Gateway, o.Logger, gateway.IntegrationTimeout)
	}
	s.OperatorToken = o.OperatorToken
	if s.OperatorToken == "" {
		if s.OperatorToken, err = apikey.RandomString(32); err != nil {
			return err
		}
		s.OperatorToken = "op_" + s.OperatorToken
	}

	svc := lifecycle.New(s.store, ring, format, lifecycle.WithClock(o.Now))
	s.Usage = usage.NewAggregator(s.store, &usage.Rules{Store: s.store, Alert: svc, Config: s.Gateway.AlertRules()}, o.Logger)
	authz, err := authorizer.New(authorizer.Config{Store: s.store, Peppers: ring, Format: format, Routes: routes,
		Gateway: s.Gateway, Decisions: o.Decisions, Logger: o.Logger, Now: o.Now, WrongSecret: s.Usage.ObserveInvalidSecret})
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	// The admin API provisions rate limits in, and flushes, the gateway
	// that fronts it, so the two are tied after both exist. The gateway
	// invokes it as the admin function: through the Lambda adapter and
	// FromAPIGateway, as in AWS.
	var adminAPI, adminFunctionHandler http.Handler
	adminFunction := httpadapter.New(admin.FromAPIGateway(OperatorRole,
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { adminFunctionHandler.ServeHTTP(w, r) }))).ProxyWithContext
	gw, err := gateway.New(gateway.Config{Routes: routes, Gateway: s.Gateway, Authorizer: authz, Admin: adminFunction,
		Upstream: upstream, OperatorToken: s.OperatorToken, OperatorARN: OperatorSession, Now: o.Now, Logger: o.Logger,
		Usage: s.Usage.Observe})
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	plans, err := loadPlans(ctx, s.store, gw)
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	leakResponse := admin.Leaks{Responder: leaks.Responder{Keys: svc, Store: s.store, Peppers: ring, Format: format,
		Policy: cmp.Or(o.LeakPolicy, leaks.Revoke)}}
	if o.GitHubKeysFile != "" {
		if leakResponse.Keys, err = leaks.KeysFile(o.GitHubKeysFile); err != nil {
			return fmt.Errorf("localstack: %w", err)
		}
	}
	adminAPI = admin.New(admin.Config{Keys: svc, Store: s.store, Gateway: s.Gateway, RateLimits: plans, Flusher: gw,
		Leaks: leakResponse, Logger: o.Logger, Now: o.Now})
	s.Handler, s.Authorizer, s.Admin = gw, authz, adminAPI
	adminFunctionHandler = adminAPI
	if o.BaseURL != "" {
		provider, c, err := s.signIn(o.BaseURL, console.Config{Keys: svc, Store: s.store, Peppers: ring, Gateway: s.Gateway,
			Resources: console.Resources(rt), RateLimits: plans, Flusher: gw, Logger: o.Logger, Now: o.Now})
		switch {
		case err != nil:
			// The console signs in over https, or plain http on this
			// machine only (-addr 0.0.0.0 is neither): the rest of the
			// stack serves without it.
			o.Logger.Warn("the console is not served", "error", err)
			s.Members = nil
		default:
			adminFunctionHandler = c.Beside(adminAPI)
			mux := http.NewServeMux()
			mux.Handle(identityPath+"/", provider)
			mux.Handle("/", gw)
			s.Handler = mux
		}
	}
	ref, err := referenceOf(docs.OpenAPI)
	if err != nil {
		return fmt.Errorf("localstack: the admin API's OpenAPI document: %w", err)
	}
	s.Handler = &frontDoor{next: s.Handler, routes: routes, store: s.store, keyRing: ring, console: s.Members != nil,
		upstream: o.Upstream, ref: ref}
	jc := jobs.Config{Store: s.store, Keys: svc, Peppers: kr, RateLimits: plans, Flusher: gw, Gateway: s.Gateway, Now: o.Now, Logger: o.Logger}
	s.Schedule = LocalSchedules
	if o.Fast {
		s.Schedule = FastSchedules
		jc.PepperInterval, jc.UnusedAfter = time.Minute, 5*time.Minute
	}
	s.Jobs = jobs.New(jc)
	return s.bootstrap(ctx, svc, plans, o.DataDir)
}

// bootstrap creates the demo tenant, its admin key and a demo key on the
// first start.
func (s *Stack) bootstrap(ctx context.Context, svc *lifecycle.Service, plans admin.RateLimits, dataDir string) error {
	// The marker is written last: a tenant without it is a first start
	// that died half-way, whose secrets nobody saw.
	marker := filepath.Join(dataDir, "bootstrapped")
	_, err := svc.Tenant(ctx, DemoTenant)
	if err == nil {
		if _, statErr := os.Stat(marker); statErr != nil {
			return fmt.Errorf("localstack: an earlier first start in %s was interrupted before it showed the demo keys; delete %s and start again", dataDir, dataDir)
		}
		return nil
	} else if !errors.Is(err, lifecycle.ErrNotFound) {
		return fmt.Errorf("localstack: %w", err)
	}
	actor := lifecycle.Actor{ID: "local:bootstrap"}
	o, err := svc.Onboard(ctx, actor, lifecycle.OnboardParams{TenantID: DemoTenant, Name: "Demo tenant",
		RateLimit: s.Gateway.HighestTier().RateLimit()})
	if err != nil {
		return fmt.Errorf("localstack: creating the demo tenant: %w", err)
	}
	demo, err := svc.Create(ctx, actor, DemoTenant, lifecycle.CreateParams{Name: "Demo key", Environment: apikey.Live,
		Scopes: []string{"invoices:read"}, CreatedBy: "demo_member"})
	if err != nil {
		return fmt.Errorf("localstack: creating the demo key: %w", err)
	}
	for _, k := range []store.Key{o.Live.Key, o.Test.Key, demo.Key} {
		tier, ok := s.Gateway.TierOf(k.RateLimit)
		if !ok {
			return fmt.Errorf("localstack: key %s has a rate limit of no tier", k.ID)
		}
		if err := plans.Provision(ctx, s.Gateway.RateLimitIdentity(k.TenantID, k.ID), tier.Name); err != nil {
			return fmt.Errorf("localstack: %w", err)
		}
	}
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	s.Bootstrap = &Bootstrap{AdminKey: o.Live, TestAdminKey: o.Test, DemoKey: demo}
	return nil
}

// schedule runs a job every interval until ctx ends, as an EventBridge
// schedule invokes the jobs function; each run gets the interval as
// its time limit, like a Lambda timeout.
func (s *Stack) schedule(ctx context.Context, name string, interval time.Duration) {
	repeat(ctx, interval, func() {
		// Run logs its outcome, failures included.
		runCtx, cancel := context.WithTimeout(ctx, interval)
		_, _ = s.Jobs.Run(runCtx, name)
		cancel()
	})
}

// repeat calls fn every interval until ctx ends.
func repeat(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// newServer is the local stack's HTTP server. A client gets as long as
// API Gateway gives it: its headers within seconds, its whole request (up
// to 10 MB) within 30 s, and the answer may take the integration's 29 s.
// Go refuses headers well past the gateway's 10,240-byte limit before the
// gateway sees them, and idle or slow connections are closed, so a hostile
// client costs little memory or time.
func newServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      gateway.IntegrationTimeout + 5*time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    gateway.MaxHead,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// dropExpired deletes expired audit entries and idempotency records at
// once and then hourly, so that the database holds only what reads return.
func (s *Stack) dropExpired(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if _, err := s.store.DropExpired(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("deleting expired records failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close closes the store; every acknowledged write is already on disk.
func (s *Stack) Close() error { return s.store.Close() }

// Serve serves the stack on ln until ctx ends, then shuts down gracefully:
// requests in flight finish (up to 10 s) before the store closes.
func (s *Stack) Serve(ctx context.Context, ln net.Listener) error {
	srv := newServer(s.Handler, s.log)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	// The background work: the jobs on their schedules, the publisher of
	// the outbox, and the deletion of expired records.
	jobsCtx, stopJobs := context.WithCancel(ctx)
	var jobsDone sync.WaitGroup
	defer s.Authorizer.Flush() // the allowed decisions' last metrics line, however Serve ends
	background := func(fn func(context.Context)) {
		jobsDone.Add(1)
		go func() {
			defer jobsDone.Done()
			fn(jobsCtx)
		}()
	}
	for name, every := range s.Schedule {
		background(func(ctx context.Context) { s.schedule(ctx, name, every) })
	}
	background(s.runPublisher)
	background(s.dropExpired)
	background(s.flushDecisions)
	background(s.flushUsage)
	defer jobsDone.Wait()
	defer stopJobs()
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
	// Publish what the last requests committed, so that a graceful stop
	// leaves nothing in the outbox; a crash leaves it for the next start.
	stopJobs()
	jobsDone.Wait()
	if err := s.Usage.Flush(shutdownCtx, s.now(), true); err != nil {
		s.log.Error("writing the last minute's usage failed", "error", err)
	}
	if err := s.PublishEvents(shutdownCtx); err != nil {
		s.log.Error("publishing the last events failed; they are published at the next start", "error", err)
	}
	return nil
}

// UsageFlushInterval is how often the local stack writes the minutes of
// usage that have ended: a request shows in its key's usage within a
// minute and this.
const UsageFlushInterval = 5 * time.Second

// flushUsage writes each minute of usage once it has ended.
func (s *Stack) flushUsage(ctx context.Context) {
	repeat(ctx, UsageFlushInterval, func() {
		if err := s.Usage.Flush(ctx, s.now(), false); err != nil {
			s.log.Error("writing usage failed; retried at the next flush", "error", err)
		}
	})
}

// flushDecisions writes the authorizer's batch of allowed decisions once
// it is old enough, as a Lambda environment does at its next decision:
// the local stack serves from one long-lived process.
func (s *Stack) flushDecisions(ctx context.Context) {
	repeat(ctx, time.Second, s.Authorizer.FlushDue)
}
