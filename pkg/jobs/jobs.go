// Package jobs is keyward's scheduled work, run by the jobs function on
// EventBridge schedules and by the local stack on timers: pepper rotation,
// the expiry sweep (expiry and the end of rotation overlaps), warnings
// before a key expires, and notices about unused keys.
//
// Every job is idempotent and resumable: it pages through its work, stops
// before its time runs out (leaving a checkpoint where it has to), and
// writes each change against the revision it read, so two overlapping runs
// cannot apply a change twice.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/store"
)

// Job names, as schedules pass them.
const (
	PepperRotation = "pepper-rotation"
	ExpirySweep    = "expiry-sweep"
	ExpiryWarnings = "expiry-warnings"
	UnusedKeys     = "unused-keys"
)

// Names lists every job.
var Names = []string{PepperRotation, ExpirySweep, ExpiryWarnings, UnusedKeys}

// Schedules are how often each job runs, as the CDK stack deploys them on
// EventBridge. The expiry sweep ends the cached decisions of expired keys,
// so it runs as often as EventBridge schedules allow, once a minute.
var Schedules = map[string]time.Duration{
	ExpirySweep: time.Minute, ExpiryWarnings: time.Hour,
	UnusedKeys: 24 * time.Hour, PepperRotation: 24 * time.Hour,
}

// Defaults of the schedule-independent settings.
const (
	DefaultPepperInterval = 90 * 24 * time.Hour
	DefaultUnusedAfter    = 90 * 24 * time.Hour
	// reserve is the time a run leaves itself before its deadline to
	// record a checkpoint and answer.
	reserve = 5 * time.Second
	page    = store.MaxPageSize
	// retireAfter is how long a new pepper version must have existed before
	// older ones may be retired: many refresh intervals, so that every
	// process hashes new keys with it by then.
	retireAfter = 12 * pepper.RefreshInterval
)

// Store is what the jobs read and write directly; changes to keys go
// through the lifecycle (lifecycle.Service), which audits them.
type Store interface {
	ListExpiring(ctx context.Context, q store.ExpiryQuery) (store.KeyPage, error)
	ScanKeys(ctx context.Context, cursor string, limit int) (store.KeyPage, error)
	pepper.VersionStore
	RetirePepper(ctx context.Context, version int, at time.Time) error
	GetCheckpoint(ctx context.Context, job string) (string, error)
	PutCheckpoint(ctx context.Context, job, cursor string) error
}

// RateLimits removes the usage-plan identities of keys that have died.
type RateLimits interface {
	Remove(ctx context.Context, identity string) error
}

// Config configures the jobs.
type Config struct {
	Store Store
	Keys  *lifecycle.Service
	// Peppers creates pepper versions; the jobs function holds only
	// kms:GenerateDataKeyWithoutPlaintext.
	Peppers    pepper.Generator
	RateLimits RateLimits // nil where nothing enforces rate limits
	// Flusher flushes the stage's authorizer cache when keys expire, so
	// that expiry ends cached decisions as revocation does; nil where the
	// gateway caches nothing.
	Flusher authorizer.Flusher
	Gateway config.Gateway
	// PepperInterval is how old the newest pepper must be before a rotation
	// creates another; UnusedAfter is how long a key may go unused.
	PepperInterval, UnusedAfter time.Duration
	Now                         func() time.Time
	Logger                      *slog.Logger
	// More reports whether a run may take on another page of work; by
	// default, while the context's deadline is more than 5 s away.
	More func(ctx context.Context) bool
	// Sleep waits between the flushes that follow an expiry (default
	// clock.Sleep).
	Sleep func(context.Context, time.Duration) error
}

// Jobs runs the scheduled jobs.
type Jobs struct{ cfg Config }

// New returns the jobs.
func New(cfg Config) *Jobs {
	if cfg.PepperInterval == 0 {
		cfg.PepperInterval = DefaultPepperInterval
	}
	if cfg.UnusedAfter == 0 {
		cfg.UnusedAfter = DefaultUnusedAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Sleep == nil {
		cfg.Sleep = clock.Sleep
	}
	if cfg.More == nil {
		cfg.More = func(ctx context.Context) bool {
			deadline, ok := ctx.Deadline()
			return ctx.Err() == nil && (!ok || time.Until(deadline) > reserve)
		}
	}
	return &Jobs{cfg: cfg}
}

// Result says what a run did and whether work is left for the next run.
type Result struct {
	Job     string `json:"job"`
	Changed int    `json:"changed"`
	More    bool   `json:"more"`
}

// Run runs the job called name.
func (j *Jobs) Run(ctx context.Context, name string) (Result, error) {
	var r Result
	var err error
	switch name {
	case PepperRotation:
		r, err = j.RotatePepper(ctx)
	case ExpirySweep:
		r, err = j.SweepExpired(ctx)
	case ExpiryWarnings:
		r, err = j.WarnExpiring(ctx)
	case UnusedKeys:
		r, err = j.ReportUnused(ctx)
	default:
		return Result{}, fmt.Errorf("jobs: unknown job %q", name)
	}
	r.Job = name
	// A run that changed nothing is logged at debug level: the local
	// stack sweeps twice a second.
	level := slog.LevelDebug
	switch {
	case err != nil:
		level = slog.LevelError
	case r.Changed > 0 || r.More:
		level = slog.LevelInfo
	}
	j.cfg.Logger.Log(ctx, level, "job run", "job", name, "changed", r.Changed, "more", r.More, "error", err)
	return r, err
}

func actor(job string) lifecycle.Actor { return lifecycle.Actor{ID: "system:" + job} }

// SweepExpired expires keys past expires_at, including old keys whose
// rotation overlap has ended, and removes their rate-limit identities.
// First it ends the gateway's cached decisions for them, as revocation
// does: the authorizer refuses an expired key, but a decision cached
// before the instant would otherwise live out its TTL. Expired keys leave
// the work list, so a run that stops early needs no checkpoint: the next
// one starts from what is left, and flushes again.
func (j *Jobs) SweepExpired(ctx context.Context) (Result, error) {
	var r Result
	q := store.ExpiryQuery{Before: j.cfg.Now(), Limit: page}
	for first := true; ; first = false {
		p, err := j.cfg.Store.ListExpiring(ctx, q)
		if err != nil {
			return r, fmt.Errorf("jobs: listing expired keys: %w", err)
		}
		if first {
			if err := j.flushExpired(ctx, q, p); err != nil {
				return r, err
			}
		}
		for _, k := range p.Keys {
			done, err := j.cfg.Keys.Expire(ctx, actor(ExpirySweep), k)
			if err != nil {
				return r, err
			}
			if done {
				r.Changed++
				j.removeIdentity(ctx, k)
			}
		}
		if p.NextCursor == "" {
			return r, nil
		}
		if !j.cfg.More(ctx) {
			r.More = true
			return r, nil
		}
		q.Cursor = p.NextCursor
	}
}

// flushExpired ends the cached decisions of the keys due by q.Before,
// whose first page is p. A decision that read a key before its instant
// lands in the cache at most authorizer.RecheckAfter after it, and
// Invalidate waits that out from q.Before, after every instant. A key past
// its instant by more than the cache TTL has no cached decision left: the
// page is soonest first, so when it holds every due key its last expired
// latest.
func (j *Jobs) flushExpired(ctx context.Context, q store.ExpiryQuery, p store.KeyPage) error {
	ttl := time.Duration(j.cfg.Gateway.Authorizer.CacheTTLSeconds) * time.Second
	if j.cfg.Flusher == nil || ttl == 0 || len(p.Keys) == 0 {
		return nil
	}
	if latest := p.Keys[len(p.Keys)-1].ExpiresAt; p.NextCursor == "" && q.Before.Sub(latest) > ttl+authorizer.RecheckAfter {
		return nil
	}
	if err := authorizer.Invalidate(ctx, j.cfg.Flusher, q.Before, j.cfg.Now, j.cfg.Sleep); err != nil {
		return fmt.Errorf("jobs: flushing the authorizer cache for expired keys: %w", err)
	}
	return nil
}

func (j *Jobs) removeIdentity(ctx context.Context, k store.Key) {
	if j.cfg.RateLimits == nil || j.cfg.Gateway.UsageIdentity != config.UsagePerKey {
		return
	}
	if err := j.cfg.RateLimits.Remove(ctx, j.cfg.Gateway.RateLimitIdentity(k.TenantID, k.ID)); err != nil {
		// The key is refused by the authorizer already; its identity only
		// holds a slot, and a later sweep of revoked keys can retry.
		j.cfg.Logger.WarnContext(ctx, "removing a rate-limit identity failed", "key_id", k.ID, "error", err)
	}
}

// releaseIdentity removes a dead key's rate-limit identity unless that was
// done already, and records it.
func (j *Jobs) releaseIdentity(ctx context.Context, k store.Key) (bool, error) {
	if j.cfg.RateLimits == nil || j.cfg.Gateway.UsageIdentity != config.UsagePerKey || slices.Contains(k.Notices, store.NoticeIdentityRemoved) {
		return false, nil
	}
	if err := j.cfg.RateLimits.Remove(ctx, j.cfg.Gateway.RateLimitIdentity(k.TenantID, k.ID)); err != nil {
		return false, fmt.Errorf("jobs: removing the rate-limit identity of %s: %w", k.ID, err)
	}
	return j.cfg.Keys.Mark(ctx, k, store.NoticeIdentityRemoved)
}

// Warning windows: a key.expiring event 7 days and 1 day before expiry.
var warnings = []struct {
	notice string
	before time.Duration
	label  string
}{
	{store.NoticeExpiring1d, 24 * time.Hour, "1d"},
	{store.NoticeExpiring7d, 7 * 24 * time.Hour, "7d"},
}

// WarnExpiring sends each key's expiry warnings once. It resumes from its
// checkpoint when an earlier run stopped early.
func (j *Jobs) WarnExpiring(ctx context.Context) (Result, error) {
	now := j.cfg.Now()
	return j.resumable(ctx, ExpiryWarnings, func(cursor string) (store.KeyPage, error) {
		return j.cfg.Store.ListExpiring(ctx, store.ExpiryQuery{Before: now.Add(warnings[1].before), Limit: page, Cursor: cursor})
	}, func(k store.Key) (bool, error) {
		left := k.ExpiresAt.Sub(now)
		for _, w := range warnings {
			if left > w.before || left <= 0 {
				continue
			}
			// The nearest window only: a key first seen 12 hours before
			// expiry gets the 1-day warning, not a late 7-day one too.
			return j.cfg.Keys.Notify(ctx, actor(ExpiryWarnings), k, w.notice, lifecycle.ActionKeyExpiring,
				map[string]string{"expires_at": k.ExpiresAt.UTC().Format(time.RFC3339), "warning": w.label})
		}
		return false, nil
	})
}

// ReportUnused sends a key.unused event, once, for each live key not used
// for UnusedAfter (or never used since its creation that long ago), so its
// owner can revoke it, as the seeds ask. Passing over every key, it also
// removes the rate-limit identities of dead keys that still hold one (keys
// revoked in bulk, by member or tenant, keep theirs until then), once each.
func (j *Jobs) ReportUnused(ctx context.Context) (Result, error) {
	now := j.cfg.Now()
	return j.resumable(ctx, UnusedKeys, func(cursor string) (store.KeyPage, error) {
		return j.cfg.Store.ScanKeys(ctx, cursor, page)
	}, func(k store.Key) (bool, error) {
		switch k.Effective(now).Status {
		case store.KeyRevoked, store.KeyExpired:
			return j.releaseIdentity(ctx, k)
		case store.KeyExpiring:
			return false, nil
		}
		last := k.LastUsedAt
		if last.IsZero() {
			last = k.CreatedAt
		}
		if now.Sub(last) < j.cfg.UnusedAfter {
			return false, nil
		}
		details := map[string]string{"last_used_at": "never"}
		if !k.LastUsedAt.IsZero() {
			details["last_used_at"] = k.LastUsedAt.UTC().Format(time.RFC3339)
		}
		return j.cfg.Keys.Notify(ctx, actor(UnusedKeys), k, store.NoticeUnused, lifecycle.ActionKeyUnused, details)
	})
}

// resumable pages through list from the job's checkpoint, applying visit
// to each key; it leaves a checkpoint when it stops early and clears it
// when it reaches the end.
func (j *Jobs) resumable(ctx context.Context, job string, list func(cursor string) (store.KeyPage, error), visit func(store.Key) (bool, error)) (Result, error) {
	var r Result
	cursor, err := j.cfg.Store.GetCheckpoint(ctx, job)
	if err != nil {
		return r, fmt.Errorf("jobs: %s checkpoint: %w", job, err)
	}
	for {
		p, err := list(cursor)
		if errors.Is(err, store.ErrInvalidCursor) {
			// A checkpoint from an older layout: start over.
			cursor = ""
			continue
		}
		if err != nil {
			return r, fmt.Errorf("jobs: %s: %w", job, err)
		}
		for _, k := range p.Keys {
			done, err := visit(k)
			if err != nil {
				return r, err
			}
			if done {
				r.Changed++
			}
		}
		cursor = p.NextCursor
		if cursor == "" || !j.cfg.More(ctx) {
			break
		}
	}
	r.More = cursor != ""
	if err := j.cfg.Store.PutCheckpoint(ctx, job, cursor); err != nil {
		return r, fmt.Errorf("jobs: %s checkpoint: %w", job, err)
	}
	return r, nil
}

// RotatePepper creates a new pepper version when the newest is older than
// PepperInterval, so new keys are hashed with it and the authorizer
// re-hashes the others lazily on their next use; then it retires every
// older version no live key depends on any more. It never sees a
// plaintext pepper, and never retires the newest version.
func (j *Jobs) RotatePepper(ctx context.Context) (Result, error) {
	var r Result
	peppers, err := j.cfg.Store.ListPeppers(ctx)
	if err != nil {
		return r, fmt.Errorf("jobs: listing peppers: %w", err)
	}
	newest := store.Pepper{}
	for _, p := range peppers {
		if p.Version > newest.Version {
			newest = p
		}
	}
	if newest.Version == 0 || j.cfg.Now().Sub(newest.CreatedAt) >= j.cfg.PepperInterval {
		p, err := pepper.Create(ctx, j.cfg.Store, j.cfg.Peppers, j.cfg.Now())
		switch {
		case errors.Is(err, store.ErrAlreadyExists):
			// An overlapping run created it.
		case err != nil:
			return r, err
		default:
			r.Changed++
			if err := j.cfg.Keys.RecordPepperRotation(ctx, actor(PepperRotation), p.Version); err != nil {
				return r, err
			}
		}
	}
	retired, more, err := j.retirePeppers(ctx)
	r.Changed += retired
	r.More = more
	return r, err
}

// retirePeppers counts the live keys of each version with one scan and
// retires the unretired versions, other than the newest, that none uses.
// A scan cut short retires nothing: a version is retired only on proof.
func (j *Jobs) retirePeppers(ctx context.Context) (int, bool, error) {
	peppers, err := j.cfg.Store.ListPeppers(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("jobs: listing peppers: %w", err)
	}
	newest, candidates := store.Pepper{}, map[int]bool{}
	for _, p := range peppers {
		if p.Version > newest.Version {
			newest = p
		}
		if p.RetiredAt.IsZero() {
			candidates[p.Version] = true
		}
	}
	delete(candidates, newest.Version)
	now := j.cfg.Now()
	// Processes pick up a new version within pepper.RefreshInterval; until
	// all have, one may still hash a new key with an older version.
	if len(candidates) == 0 || now.Sub(newest.CreatedAt) < retireAfter {
		return 0, false, nil
	}
	for cursor := ""; ; {
		p, err := j.cfg.Store.ScanKeys(ctx, cursor, page)
		if err != nil {
			return 0, false, fmt.Errorf("jobs: scanning keys: %w", err)
		}
		for _, k := range p.Keys {
			if s := k.Effective(now).Status; s == store.KeyActive || s == store.KeyExpiring {
				delete(candidates, k.PepperVersion)
			}
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
		if !j.cfg.More(ctx) {
			return 0, true, nil
		}
	}
	retired := 0
	for v := range candidates {
		err := j.cfg.Store.RetirePepper(ctx, v, now)
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return retired, false, fmt.Errorf("jobs: retiring pepper %d: %w", v, err)
		}
		if err == nil {
			retired++
		}
	}
	return retired, false, nil
}
