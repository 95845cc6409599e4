// Package usage counts what each key is used for: requests by status
// class, the client networks they come from, first and last seen, and the
// most recent requests. The gateway's access log feeds an Aggregator (in
// AWS functions/usage, from the stage's access log; locally the gateway
// in process), which adds what it saw of each key in each minute to the
// key's hour in the store: at most one write per key and minute, whatever
// the number of requests.
package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/store"
)

// Request is one request the gateway served with a key, as its access
// log tells it: never a header, a query string or a body.
type Request struct {
	Time     time.Time
	KeyID    string // the stored id, without "key_"
	TenantID string
	Method   string
	Route    string // the route's resource path ("/invoices/{id}"), not the request's
	Status   int
	SourceIP string
	Latency  time.Duration
}

// Network is the client network of an address, the unit in which usage
// counts where a key is used from: its first v4 bits (IPv4; 24 by
// default) or v6 bits (IPv6; 48); "" for what is not an address.
func Network(ip string, v4, v6 int) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	a = a.Unmap()
	bits := v6
	if a.Is4() {
		bits = v4
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}

// Writer stores what the aggregator saw (store.UsageStore).
type Writer interface {
	AddUsage(ctx context.Context, m store.UsageMinute) (store.UsageHour, error)
}

// MaxPending bounds the key-minutes an Aggregator holds between flushes;
// requests for further ones are dropped, and counted as such.
const MaxPending = 100_000

// Aggregator sums requests by key and minute. Safe for concurrent use.
type Aggregator struct {
	w     Writer
	rules *Rules // nil: no suspicious-use rules
	log   *slog.Logger
	// The prefix lengths of a client network (config.Alerts).
	bits4, bits6 int

	mu      sync.Mutex
	pending map[pendingKey]*store.UsageMinute
	dropped int
}

type pendingKey struct {
	keyID  string
	minute int64 // Unix minutes
}

// NewAggregator returns an Aggregator that writes to w and applies rules
// (if not nil) to each minute written.
func NewAggregator(w Writer, rules *Rules, log *slog.Logger) *Aggregator {
	if log == nil {
		log = slog.Default()
	}
	cfg := config.DefaultAlerts
	if rules != nil {
		cfg = rules.Config
	}
	return &Aggregator{w: w, rules: rules, log: log, pending: map[pendingKey]*store.UsageMinute{},
		bits4: cfg.NetworkBitsV4, bits6: cfg.NetworkBitsV6}
}

// Observe counts one request.
func (a *Aggregator) Observe(r Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.minute(r.KeyID, r.TenantID, r.Time)
	if m == nil {
		return
	}
	m.Counts.Count(r.Status)
	a.seen(m, r.Time, r.SourceIP)
	// The newest requests, in the order they come (mostly the order they
	// were served in; Flush sorts them).
	rr := store.RecentRequest{Time: r.Time.UTC(), Method: r.Method, Route: r.Route, Status: r.Status, SourceIP: r.SourceIP,
		LatencyMS: float64(r.Latency.Microseconds()) / 1000}
	if len(m.Recent) < store.MaxRecent {
		m.Recent = append(m.Recent, rr)
	} else {
		copy(m.Recent, m.Recent[1:])
		m.Recent[len(m.Recent)-1] = rr
	}
}

// ObserveInvalidSecret counts one refusal of a wrong secret for a real
// key (the authorizer's).
func (a *Aggregator) ObserveInvalidSecret(keyID, tenantID string, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if m := a.minute(keyID, tenantID, at); m != nil {
		m.Counts.InvalidSecret++
	}
}

// minute is the pending minute of a key at a time, made if need be; nil
// if there is no room or the request names no key. The caller holds mu.
func (a *Aggregator) minute(keyID, tenantID string, at time.Time) *store.UsageMinute {
	if keyID == "" || tenantID == "" || at.IsZero() {
		return nil
	}
	at = at.UTC()
	pk := pendingKey{keyID, at.Unix() / 60}
	m := a.pending[pk]
	if m == nil {
		if len(a.pending) >= MaxPending {
			a.dropped++
			return nil
		}
		m = &store.UsageMinute{KeyID: keyID, TenantID: tenantID, Minute: at.Truncate(time.Minute), First: at, Last: at}
		a.pending[pk] = m
	}
	if m.TenantID != tenantID {
		return nil // a key belongs to one tenant; the store refuses the other
	}
	return m
}

// seen widens m's first and last seen and adds the client's network.
func (a *Aggregator) seen(m *store.UsageMinute, at time.Time, sourceIP string) {
	at = at.UTC()
	if at.Before(m.First) {
		m.First = at
	}
	if at.After(m.Last) {
		m.Last = at
	}
	if n := Network(sourceIP, a.bits4, a.bits6); n != "" && len(m.Networks) < store.MaxHourNetworks && !slices.Contains(m.Networks, n) {
		m.Networks = append(m.Networks, n)
	}
}

// Flushers bounds the writes one Flush has in flight: a minute of many
// active keys is written in parallel, without flooding the store. Each
// write waits on four DynamoDB calls, so 32 in flight keep up with about
// 1,600 key-minutes a second per process (docs/scale.md).
const Flushers = 32

// Flush writes every minute that ended before now (every minute held, if
// all): one write per key and minute. A minute whose write fails is kept
// for the next flush; the error names how many failed.
func (a *Aggregator) Flush(ctx context.Context, now time.Time, all bool) error {
	current := now.UTC().Unix() / 60
	a.mu.Lock()
	var due []*store.UsageMinute
	for pk, m := range a.pending {
		if all || pk.minute < current {
			due = append(due, m)
			delete(a.pending, pk)
		}
	}
	dropped := a.dropped
	a.dropped = 0
	a.mu.Unlock()
	if dropped > 0 {
		a.log.WarnContext(ctx, "usage: requests not counted: too many keys in too few minutes", "requests", dropped, "max_pending", MaxPending)
	}
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		errs  []error
		slots = make(chan struct{}, Flushers)
	)
	for _, m := range due {
		slices.Sort(m.Networks)
		m.Recent = store.NewestRecent(nil, m.Recent)
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			hour, err := a.w.AddUsage(ctx, *m)
			if err != nil {
				errMu.Lock()
				errs = append(errs, fmt.Errorf("key %s, minute %s: %w", m.KeyID, m.Minute.Format(time.RFC3339), err))
				errMu.Unlock()
				a.keep(m)
				return
			}
			if a.rules != nil {
				// A rule that cannot be applied loses no usage: it is
				// logged, and applied again with the key's next minute.
				if err := a.rules.apply(ctx, *m, hour); err != nil {
					a.log.ErrorContext(ctx, "usage: applying the suspicious-use rules failed", "key_id", apikey.PublicID(m.KeyID), "error", err)
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("usage: %d of %d minutes not written: %w", len(errs), len(due), errors.Join(errs...))
	}
	return nil
}

// keep puts a minute whose write failed back, merged with any requests
// of the same key and minute counted since.
func (a *Aggregator) keep(m *store.UsageMinute) {
	pk := pendingKey{m.KeyID, m.Minute.Unix() / 60}
	a.mu.Lock()
	defer a.mu.Unlock()
	if now := a.pending[pk]; now != nil {
		*now = now.Merge(*m)
		return
	}
	a.pending[pk] = m
}

// HandleLogs is functions/usage's handler: a CloudWatch Logs subscription
// delivery of access log lines and the authorizer's wrong-secret lines,
// counted, then the minutes that have ended written. It fails only on a
// delivery it cannot decode: a write that fails is retried at the next
// delivery (Lambda retrying the delivery would count it twice).
func (a *Aggregator) HandleLogs(ctx context.Context, ev events.CloudwatchLogsEvent) error {
	data, err := ev.AWSLogs.Parse()
	if err != nil {
		return fmt.Errorf("usage: decoding the log delivery: %w", err)
	}
	for _, e := range data.LogEvents {
		logged := time.UnixMilli(e.Timestamp)
		if r, ok := FromAccessLog(e.Message, logged); ok {
			a.Observe(r)
		} else if keyID, tenantID, at, ok := WrongSecretFromDecision(e.Message); ok {
			a.ObserveInvalidSecret(keyID, tenantID, at)
		}
	}
	if err := a.Flush(ctx, time.Now(), false); err != nil {
		a.log.ErrorContext(ctx, "usage: writing minutes failed; they are retried at the next delivery", "error", err)
	}
	return nil
}
