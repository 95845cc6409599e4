// Package authorizer decides whether a request's API key may call the
// route it asks for. It is the logic of the API Gateway REQUEST authorizer
// (functions/authorizer only wires it to Lambda) and of the local stack's
// gateway emulation, which calls the very same code.
//
// # Caching invariant
//
// API Gateway caches a decision by the identity sources (the Authorization
// header and the client IP) and reuses it for every route. No cached
// decision may allow a request that a fresh decision would refuse:
//
//   - Scopes: an Allow lists every route the key's scopes allow across the
//     whole API, and a Deny lists every other route, so the cached policy
//     gives each route the answer a fresh decision would.
//   - IP allow-lists: the client IP is an identity source, so a decision
//     made for one address is never reused for another.
//   - Origins: the Origin header cannot be an optional identity source,
//     and server-to-server requests send none. So a key restricted to
//     origins (a browser key) is allowed only on the browser endpoint
//     (config.BrowserPath), whose authorizer attachment adds Origin to the
//     identity sources, and refused everywhere else. A policy lists the
//     routes of its own endpoint only.
//   - Revocation and narrowing updates: the admin API flushes the stage's
//     authorizer cache on revoke and on any update that narrows access,
//     twice (see Invalidate), so a decision in flight during the change is
//     not cached past it either.
//   - Expiry: the expiry sweep (pkg/jobs) flushes the same way when keys
//     come due, before it marks them expired; docs/authorizer.md states the
//     bound its schedule gives.
package authorizer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/origin"
	"github.com/keyward/keyward/pkg/policy"
	"github.com/keyward/keyward/pkg/route"
	"github.com/keyward/keyward/pkg/scope"
	"github.com/keyward/keyward/pkg/store"
)

// ErrUnauthorized is the error whose exact message makes API Gateway
// answer 401 through the UNAUTHORIZED gateway response.
var ErrUnauthorized = errors.New("Unauthorized")

// Store is what the authorizer reads and writes.
type Store interface {
	GetKey(ctx context.Context, id string) (store.Key, error)
	TouchKey(ctx context.Context, id string, at time.Time, minInterval time.Duration) (bool, error)
	RehashKey(ctx context.Context, id string, hash []byte, toVersion int) error
}

// Peppers verifies tokens and re-hashes them under the newest pepper.
type Peppers interface {
	Verify(ctx context.Context, version int, token string, want []byte) (bool, error)
	Current() int
	HashVersion(ctx context.Context, version int, token string) ([]byte, error)
}

// MaxDecisionAge bounds how long a policy may take from the key read it
// rests on to its return: a slower decision fails closed. A change that
// takes access away flushes the gateway's cache at once and again once
// MaxDecisionAge has passed, which clears any policy read before the
// change and cached after the first flush.
const MaxDecisionAge = time.Second

// LastUsedInterval is how stale last_used_at may get: at most one write per
// key per interval, so steady-state verification makes no writes.
const LastUsedInterval = 5 * time.Minute

// Messages of the 403 envelope; gateway responses substitute them
// verbatim into JSON, so they hold no quotes or backslashes.
const (
	msgScope  = "This API key does not have the scope this route requires."
	msgIP     = "This API key may not be used from this IP address."
	msgOrigin = "This API key may not be used from this origin."
	msgServer = "This API key is a browser key (it has allowed origins): call the API's browser endpoint, below " + config.BrowserPath + "."
)

// Config configures an Authorizer.
type Config struct {
	Store   Store
	Peppers Peppers
	Format  apikey.Format
	Routes  *route.Table
	// Gateway is how API Gateway caches decisions and counts usage.
	Gateway config.Gateway
	// Decisions receives the decisions' JSON lines (stdout in Lambda);
	// nil writes none. Logger receives everything else.
	Decisions io.Writer
	Logger    *slog.Logger
	Now       func() time.Time
	// WrongSecret, if set, learns of each refusal of a well-formed token
	// naming a real key with a wrong secret (the usage's invalid-secret
	// rule); in AWS the decision log's line carries the same.
	WrongSecret func(keyID, tenantID string, at time.Time)
}

// Authorizer makes decisions. It is safe for concurrent use.
type Authorizer struct {
	cfg      Config
	since    func(time.Time) time.Duration                            // on cfg.Now's clock
	log      *decisionLog                                             // nil without Config.Decisions
	policies bounded[string, events.APIGatewayCustomAuthorizerPolicy] // by stage, endpoint and scope set
	answers  bounded[revisionKey, []answer]

	// The ring's current version, asked for at most once per
	// pepperAskInterval (see currentPepper).
	pepperVersion atomic.Int64
	pepperAskAt   atomic.Int64 // Unix nanoseconds on cfg.Now's clock
}

// pepperAskInterval is how long a decision may use the pepper ring's
// current version as last asked. The ring times its own refreshes (every
// pepper.RefreshInterval) on a clock of its own, which read on every
// decision was a sixth of a decision's cost beyond its HMAC.
const pepperAskInterval = time.Second

// currentPepper is the ring's current version, asked for again once
// pepperAskInterval has passed on the decision's clock (or it went back).
func (a *Authorizer) currentPepper(now time.Time) int {
	t := now.UnixNano()
	if next := a.pepperAskAt.Load(); t < next && t >= next-int64(pepperAskInterval) {
		return int(a.pepperVersion.Load())
	}
	v := a.cfg.Peppers.Current()
	a.pepperVersion.Store(int64(v))
	a.pepperAskAt.Store(t + int64(pepperAskInterval))
	return v
}

// maxCached bounds each per-process cache.
const maxCached = 4096

// bounded is a cache that starts over when it holds maxCached entries: a
// miss costs only building the entry again. Safe for concurrent use.
type bounded[K comparable, V any] struct {
	mu sync.RWMutex
	m  map[K]V
}

func (b *bounded[K, V]) get(k K) (V, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	v, ok := b.m[k]
	return v, ok
}

func (b *bounded[K, V]) put(k K, v V) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil || len(b.m) >= maxCached {
		b.m = make(map[K]V)
	}
	b.m[k] = v
}

// An answer depends, besides the request's method and path, on a key at
// one revision (every change of it is a new revision: revisionKey) and on
// the request's answerKey. Answers are cached by revisionKey, a short map
// key, each revision with a short list of answerKeys.
type revisionKey struct {
	id       string
	revision int64
}

// answerKey is the rest of what an answer depends on: the API stage and
// endpoint, the client's address when the key has an IP allow-list, and
// the Origin header (its value and how many distinct values, up to two)
// on the browser endpoint.
type answerKey struct {
	prefix   string
	browser  bool
	sourceIP string
	origin   string
	origins  int
}

// maxAnswersPerRevision bounds a revision's list of answers, which a
// caller could otherwise grow with addresses or Origin headers.
const maxAnswersPerRevision = 16

// answer is the response for an answerKey, built once: the decision's
// costliest parts (policy, context, identities) without their allocations.
// Callers must not modify it.
type answer struct {
	key    answerKey
	resp   events.APIGatewayCustomAuthorizerResponse
	reason string // why every route is denied, or ""
	// allow and deny are the policy's patterns without the stage's
	// prefix, which every pattern and ARN share: what a decision matches
	// its request against.
	allow, deny []string
}

// allows evaluates the answer's policy as API Gateway does for the
// method ARN path (the ARN after its stage's prefix): a Deny wins.
func (ans *answer) allows(path string) bool {
	for _, p := range ans.deny {
		if policy.Match(p, path) {
			return false
		}
	}
	for _, p := range ans.allow {
		if policy.Match(p, path) {
			return true
		}
	}
	return false
}

// New returns an Authorizer.
func New(cfg Config) (*Authorizer, error) {
	if cfg.Store == nil || cfg.Peppers == nil || cfg.Routes == nil || cfg.Format.Prefix() == "" {
		return nil, errors.New("authorizer: store, peppers, routes and format are required")
	}
	if err := cfg.Gateway.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Authorizer{cfg: cfg}
	if cfg.Now == nil {
		// The decision's end is read from the monotonic clock alone:
		// time.Now also reads the wall clock.
		a.cfg.Now, a.since = time.Now, time.Since
	} else {
		a.since = func(t time.Time) time.Duration { return cfg.Now().Sub(t) }
	}
	if cfg.Decisions != nil {
		a.log = newDecisionLog(cfg.Decisions, a.cfg.Now)
	}
	return a, nil
}

// Flush writes the allowed decisions counted but not yet written (see
// decisionLog): at shutdown, so that no metric is lost.
func (a *Authorizer) Flush() {
	if a.log != nil {
		a.log.flush()
	}
}

// FlushDue writes the batch of allowed decisions once it is MaxBatchAge
// old; a process serving decisions without pause (the local stack) calls
// it on a timer.
func (a *Authorizer) FlushDue() {
	if a.log != nil {
		a.log.flushDue(a.cfg.Now())
	}
}

// decision is one outcome, for the response, the log and the metrics.
type decision struct {
	outcome string // allow, deny, unauthorized, error
	reason  string
	// The key's, once a real key is named (see decisionLog.record).
	keyID, tenantID string
	err             error
}

// Authorize is the Lambda handler: it returns an Allow or Deny policy, the
// error "Unauthorized" (401), or any other error (500, fail closed).
func (a *Authorizer) Authorize(ctx context.Context, req events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
	start := a.cfg.Now()
	resp, d := a.decide(ctx, &req, start)
	took := a.since(start)
	end := start.Add(took)
	if took > MaxDecisionAge && (d.outcome == "allow" || d.outcome == "deny") {
		// The gateway caches a policy as it arrives: one read before a
		// revocation and returned after its flushes would outlive them.
		d = decision{outcome: "error", reason: ReasonSlow, keyID: d.keyID, tenantID: d.tenantID,
			err: fmt.Errorf("the decision took %v, more than %v", took, MaxDecisionAge)}
	}
	if a.log != nil {
		a.log.record(d, req.RequestContext.RequestID, req.HTTPMethod, req.Resource, req.RequestContext.Identity.SourceIP, end, took)
	}
	if d.reason == ReasonWrongSecret && a.cfg.WrongSecret != nil {
		a.cfg.WrongSecret(d.keyID, d.tenantID, start)
	}
	switch d.outcome {
	case "unauthorized":
		return events.APIGatewayCustomAuthorizerResponse{}, ErrUnauthorized
	case "error":
		return events.APIGatewayCustomAuthorizerResponse{}, fmt.Errorf("authorizer: %s: %w", d.reason, d.err)
	}
	return resp, nil
}

func unauthorized(reason string) decision { return decision{outcome: "unauthorized", reason: reason} }

func failed(reason string, err error) decision {
	return decision{outcome: "error", reason: reason, err: err}
}

func (a *Authorizer) decide(ctx context.Context, req *events.APIGatewayCustomAuthorizerRequestTypeRequest, now time.Time) (events.APIGatewayCustomAuthorizerResponse, decision) {
	var none events.APIGatewayCustomAuthorizerResponse
	// 0. A TOKEN authorizer's event has no headers: every request would
	// look like one without a key. That is the deployment's mistake, not
	// the caller's.
	if req.Type != "REQUEST" {
		return none, failed(ReasonConfiguration, fmt.Errorf("event type %q: this authorizer must be attached as a REQUEST authorizer (identity sources %s)",
			req.Type, strings.Join(a.cfg.Gateway.Authorizer.IdentitySources, ", ")))
	}
	// 1. The token, without I/O.
	tok, reason := token(a.cfg.Format, req.Headers, req.MultiValueHeaders)
	if reason != "" {
		return none, unauthorized(reason)
	}
	arn, err := policy.ParseMethodARN(req.MethodArn)
	if err != nil {
		return none, failed(ReasonBadARN, err)
	}

	// 2. One strongly consistent read, then the HMAC in constant time.
	k, err := a.cfg.Store.GetKey(ctx, tok.ID())
	if errors.Is(err, store.ErrNotFound) {
		return none, unauthorized(ReasonUnknownKey)
	}
	if err != nil {
		return none, failed(ReasonInternal, fmt.Errorf("reading key: %w", err))
	}
	// From here on the key id is logged: it names a real key.
	refuse := func(reason string) decision {
		return decision{outcome: "unauthorized", reason: reason, keyID: k.ID, tenantID: k.TenantID}
	}

	// 3. Status and validity window. A dead key is refused before its
	// HMAC, so that retiring the pepper it was hashed with (once no live
	// key needs it) turns it into a 401, not a failure. The answer is the
	// same 401 as for a wrong secret. Only the statuses that mean usable
	// pass: anything else is corrupt data, and fails closed.
	switch k.StatusAt(now) {
	case store.KeyActive, store.KeyExpiring:
	case store.KeyRevoked:
		return none, refuse(ReasonRevoked)
	case store.KeyExpired:
		return none, refuse(ReasonExpired)
	default:
		return none, decision{outcome: "error", reason: ReasonCorrupt, keyID: k.ID, tenantID: k.TenantID,
			err: fmt.Errorf("%w: key has unknown status %q", store.ErrCorrupt, k.Status)}
	}
	ok, err := a.cfg.Peppers.Verify(ctx, k.PepperVersion, tok.Plain(), k.Hash)
	if err != nil {
		return none, failed(ReasonInternal, fmt.Errorf("verifying key: %w", err))
	}
	if !ok || k.Prefix != tok.Prefix() || k.Environment != string(tok.Environment()) {
		return none, refuse(ReasonWrongSecret)
	}
	if !k.NotBefore.IsZero() && now.Before(k.NotBefore) {
		return none, refuse(ReasonNotYetValid)
	}
	d := decision{keyID: k.ID, tenantID: k.TenantID}

	// 4. Lazy migration after a pepper rotation, and last_used_at; neither
	// may fail the request.
	a.maintain(ctx, &k, tok.Plain(), now)

	// 5. The environment travels in the context: the backend routes test
	// keys to test data. 6. Restrictions that hold for every route, which
	// answer applies once per key revision, address and origin.
	ak := answerKey{prefix: arn.Prefix, browser: config.OnBrowserEndpoint(req.Resource)}
	if len(k.AllowedIPs) > 0 {
		ak.sourceIP = req.RequestContext.Identity.SourceIP
	}
	if ak.browser {
		ak.origin, ak.origins = header("Origin", req.Headers, req.MultiValueHeaders)
	}
	ans := a.answer(ak, &k)
	if ans.reason != "" {
		d.outcome, d.reason = "deny", ans.reason
		return ans.resp, d
	}
	// 7 and 8: every route of this endpoint the scopes allow.
	d.outcome, d.reason = "deny", ReasonScope
	if ans.allows(req.MethodArn[len(arn.Prefix):]) {
		d.outcome, d.reason = "allow", ReasonAllow
	}
	return ans.resp, d
}

// answer returns the response for ak, building it on the first request of
// a key revision.
func (a *Authorizer) answer(ak answerKey, k *store.Key) *answer {
	rk := revisionKey{id: k.ID, revision: k.Revision}
	known, _ := a.answers.get(rk)
	for i := range known {
		if known[i].key == ak {
			return &known[i]
		}
	}
	ans := answer{key: ak}
	// 6. Restrictions that hold for every route.
	ans.reason = restrictIP(k, ak.sourceIP)
	var from string
	if ans.reason == "" {
		from, ans.reason = restrictOrigin(k, ak.origin, ak.origins, ak.browser)
	}
	publicID := apikey.PublicID(k.ID)
	kc := Context{TenantID: k.TenantID, KeyID: publicID, Environment: k.Environment, Scopes: k.Scopes, KeyName: k.Name, Origin: from}
	ans.resp = events.APIGatewayCustomAuthorizerResponse{
		PrincipalID:        publicID,
		UsageIdentifierKey: a.cfg.Gateway.RateLimitIdentity(k.TenantID, k.ID),
	}
	if ans.reason != "" {
		ans.resp.PolicyDocument = policy.Document(nil, []string{ak.prefix + "*"})
		kc.ErrorCode, kc.ErrorMessage = ans.reason, messages[ans.reason]
	} else {
		// A browser key only reads unless its owner allowed more (the
		// lifecycle refuses such keys; this covers older ones), and the
		// upstream learns the scopes the policy grants, not more.
		if ak.browser && len(k.AllowedOrigins) > 0 && !k.AllowBrowserWrites {
			kc.Scopes = scope.ReadOnly(k.Scopes)
		}
		ans.resp.PolicyDocument = a.policyFor(ak.prefix, kc.Scopes, ak.browser)
		kc.ErrorCode, kc.ErrorMessage = ReasonScope, msgScope
	}
	ans.resp.Context = kc.Encode()
	for _, st := range ans.resp.PolicyDocument.Statement {
		for _, r := range st.Resource {
			if st.Effect == "Deny" {
				ans.deny = append(ans.deny, r[len(ak.prefix):])
			} else {
				ans.allow = append(ans.allow, r[len(ak.prefix):])
			}
		}
	}
	if len(known) >= maxAnswersPerRevision {
		known = nil
	}
	// A copy: other decisions may be reading the cached list.
	a.answers.put(rk, append(slices.Clip(known), ans))
	return &ans
}

func (a *Authorizer) maintain(ctx context.Context, k *store.Key, token string, now time.Time) {
	if current := a.currentPepper(now); k.PepperVersion < current {
		sum, err := a.cfg.Peppers.HashVersion(ctx, current, token)
		if err == nil {
			err = a.cfg.Store.RehashKey(ctx, k.ID, sum, current)
		}
		if err != nil && !errors.Is(err, store.ErrConflict) {
			a.cfg.Logger.WarnContext(ctx, "re-hash under the newest pepper failed", "key_id", apikey.PublicID(k.ID), "error", err)
		}
	}
	if now.Sub(k.LastUsedAt) >= LastUsedInterval {
		if _, err := a.cfg.Store.TouchKey(ctx, k.ID, now, LastUsedInterval); err != nil {
			a.cfg.Logger.WarnContext(ctx, "recording last use failed", "key_id", apikey.PublicID(k.ID), "error", err)
		}
	}
}

// messages are the 403 envelope's messages by refusal.
var messages = map[string]string{ReasonScope: msgScope, ReasonIP: msgIP, ReasonOrigin: msgOrigin, ReasonBrowserOnly: msgServer}

// restrictIP applies the IP allow-list, which holds for every route
// alike; it returns a reason to deny with.
func restrictIP(k *store.Key, sourceIP string) string {
	if len(k.AllowedIPs) == 0 {
		return ""
	}
	ip, err := netip.ParseAddr(sourceIP)
	if err != nil {
		return ReasonIP
	}
	ip = ip.Unmap()
	for _, c := range k.AllowedIPs {
		if p, err := netip.ParsePrefix(c); err == nil && p.Contains(ip) {
			return ""
		}
	}
	return ReasonIP
}

// restrictOrigin applies the allowed origins: a browser key works only on
// the browser endpoint, from exactly one of its origins. It returns the
// request's origin for the context (on the browser endpoint, when the
// request has exactly one valid Origin), or a reason to deny with.
func restrictOrigin(k *store.Key, header string, n int, browser bool) (string, string) {
	browserKey := len(k.AllowedOrigins) > 0
	if !browser {
		if browserKey {
			return "", ReasonBrowserOnly
		}
		return "", ""
	}
	var o string
	if n == 1 {
		o, _ = origin.Normal(header)
	}
	if browserKey && (o == "" || !slices.Contains(k.AllowedOrigins, o)) {
		return "", ReasonOrigin
	}
	return o, ""
}

// policyFor returns the policy for a set of scopes on one API stage:
// Allow every key-authorized route the scopes grant, and Deny each other
// route that one of those Allow patterns also reaches (API Gateway's "*"
// crosses "/", so "GET/invoices/*" reaches "GET/invoices/1/refunds"). When
// a Deny pattern in turn reaches an allowed route, the Deny wins: the
// policy errs towards refusing, never towards allowing. Policies are
// cached by stage, endpoint and scope set; callers must not modify them.
// A policy lists only the routes of its own endpoint (browser or not):
// the other endpoint's routes have another authorizer attachment, whose
// decisions are cached apart.
func (a *Authorizer) policyFor(prefix string, scopes []string, browser bool) events.APIGatewayCustomAuthorizerPolicy {
	cacheKey := prefix + "\x00" + strconv.FormatBool(browser) + "\x00" + strings.Join(scopes, " ")
	doc, ok := a.policies.get(cacheKey)
	if ok {
		return doc
	}
	var allowed, denied []route.Route
	for _, r := range a.cfg.Routes.Routes() {
		if r.Auth != config.AuthKey || config.OnBrowserEndpoint(r.Path) != browser {
			continue
		}
		if scope.AnyGrants(scopes, r.Scope) {
			allowed = append(allowed, r)
		} else {
			denied = append(denied, r)
		}
	}
	var allow, deny []string
	for _, r := range allowed {
		allow = append(allow, prefix+r.ARNPath)
	}
	for _, d := range denied {
		for _, r := range allowed {
			if d.MayMatch(r.ARNPath) {
				deny = append(deny, prefix+d.ARNPath)
				break
			}
		}
	}
	if len(allow) == 0 {
		deny = []string{prefix + "*"}
	}
	doc = policy.Document(allow, deny)
	a.policies.put(cacheKey, doc)
	return doc
}

// MetricsNamespace is the CloudWatch namespace of decision metrics.
const MetricsNamespace = "Keyward"

// emfDirectives is the constant part of the CloudWatch Embedded Metric
// Format header that turns a decision's log line into metrics (decisions
// and latency by outcome), so metrics cost no API calls.
const emfDirectives = `[{"Namespace":"` + MetricsNamespace + `","Dimensions":[["outcome"]],` +
	`"Metrics":[{"Name":"decisions","Unit":"Count"},{"Name":"latency_ms","Unit":"Milliseconds"}]}]`
