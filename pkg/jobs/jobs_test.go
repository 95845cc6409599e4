package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/dynamolocal"
	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/internal/testflush"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/jobs"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/store"
)

func TestMain(m *testing.M) { dynamolocal.Main(m) }

type removals struct {
	mu  sync.Mutex
	ids []string
}

func (r *removals) Remove(_ context.Context, identity string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, identity)
	return nil
}

type env struct {
	t       *testing.T
	ctx     context.Context
	st      store.Store
	kr      *pepper.LocalKeyring
	ring    *pepper.Ring
	svc     *lifecycle.Service
	clk     *clock.Manual
	removed *removals
	gw      config.Gateway
}

var start = time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)

func forEachStore(t *testing.T, test func(t *testing.T, e *env)) {
	var clk *clock.Manual
	storetest.ForEach(t, func() time.Time { return clk.Now() }, func(t *testing.T, st store.Store) {
		clk = clock.NewManual(start)
		ctx := t.Context()
		kr, ring := storetest.Peppers(t, st, clk.Now(), pepper.WithClock(clk.Now))
		format, _ := apikey.NewFormat("sk")
		gw, _ := config.LoadGateway()
		e := &env{t: t, ctx: ctx, st: st, kr: kr, ring: ring, clk: clk, removed: &removals{}, gw: gw,
			svc: lifecycle.New(st, ring, format, lifecycle.WithClock(clk.Now))}
		if _, err := e.svc.Onboard(ctx, lifecycle.Actor{ID: "operator"}, lifecycle.OnboardParams{TenantID: "acme", Name: "Acme"}); err != nil {
			t.Fatal(err)
		}
		test(t, e)
	})
}

// jobs returns the jobs; more, if set, decides whether a run may go on.
func (e *env) jobs(more func(context.Context) bool) *jobs.Jobs {
	return jobs.New(jobs.Config{Store: e.st, Keys: e.svc, Peppers: e.kr, RateLimits: e.removed, Gateway: e.gw,
		Now: e.clk.Now, More: more})
}

func (e *env) key(expires time.Duration) store.Key {
	e.t.Helper()
	p := lifecycle.CreateParams{Name: "k", Environment: apikey.Live, Scopes: []string{"invoices:read"}}
	if expires != 0 {
		p.ExpiresAt = e.clk.Now().Add(expires)
	}
	c, err := e.svc.Create(e.ctx, lifecycle.Actor{ID: "test"}, "acme", p)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.Key
}

func (e *env) status(id string) store.KeyStatus {
	e.t.Helper()
	k, err := e.st.GetKey(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return k.Status
}

// actions counts the tenant's audit entries by action.
func (e *env) actions(tenant string) map[string]int {
	e.t.Helper()
	n := map[string]int{}
	for q := (store.AuditQuery{Limit: store.MaxPageSize}); ; {
		p, err := e.st.ListAudit(e.ctx, tenant, q)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, a := range p.Entries {
			n[a.Action]++
			if a.KeyID != "" && a.KeyDisplay == "" {
				e.t.Fatalf("audit entry %s of key %s has no display form", a.Action, a.KeyID)
			}
		}
		if q.Cursor = p.NextCursor; q.Cursor == "" {
			return n
		}
	}
}

func (e *env) run(j *jobs.Jobs, name string) jobs.Result {
	e.t.Helper()
	r, err := j.Run(e.ctx, name)
	if err != nil {
		e.t.Fatalf("%s: %v", name, err)
	}
	return r
}

func TestSweepExpiresDueKeysAndOverlapEnds(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		due := e.key(time.Hour)
		later := e.key(48 * time.Hour)
		forever := e.key(0)
		rotated := e.key(0)
		_, _, err := e.svc.Rotate(e.ctx, lifecycle.Actor{ID: "test"}, "acme", rotated.ID, 30*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		e.clk.Advance(time.Hour)
		r := e.run(e.jobs(nil), jobs.ExpirySweep)
		if r.Changed != 2 || r.More {
			t.Fatalf("sweep %+v, want 2 changes", r)
		}
		for id, want := range map[string]store.KeyStatus{due.ID: store.KeyExpired, rotated.ID: store.KeyExpired,
			later.ID: store.KeyActive, forever.ID: store.KeyActive} {
			if got := e.status(id); got != want {
				t.Errorf("key %s is %s, want %s", id, got, want)
			}
		}
		if n := e.actions("acme")[lifecycle.ActionKeyExpired]; n != 2 {
			t.Fatalf("%d key.expired entries", n)
		}
		if len(e.removed.ids) != 2 || e.removed.ids[0] != "keywardkey"+due.ID && e.removed.ids[1] != "keywardkey"+due.ID {
			t.Fatalf("rate-limit identities removed: %v", e.removed.ids)
		}
		if r := e.run(e.jobs(nil), jobs.ExpirySweep); r.Changed != 0 {
			t.Fatalf("second sweep changed %d keys", r.Changed)
		}
	})
}

// TestSweepFlushesAtExpiry: expiry ends cached decisions as revocation
// does: the sweep flushes the authorizer cache before it marks keys
// expired, and again once a decision that read a key before its instant
// can no longer reach the cache.
func TestSweepFlushesAtExpiry(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		f := &testflush.Recorder{Clock: e.clk}
		sweep := func() (jobs.Result, error) {
			return jobs.New(jobs.Config{Store: e.st, Keys: e.svc, Peppers: e.kr, RateLimits: e.removed, Gateway: e.gw,
				Flusher: f, Now: e.clk.Now, Sleep: func(_ context.Context, d time.Duration) error { e.clk.Advance(d); return nil },
			}).Run(e.ctx, jobs.ExpirySweep)
		}
		k := e.key(3 * time.Second)
		if r, err := sweep(); err != nil || r.Changed != 0 || len(f.At()) != 0 {
			t.Fatalf("before the expiry: %+v %v, flushed %d times", r, err, len(f.At()))
		}
		e.clk.Advance(3*time.Second + 100*time.Millisecond)
		instant := e.clk.Now()

		// A failed flush expires nothing, so the next run flushes again.
		f.Fail(errors.New("TooManyRequestsException"))
		if _, err := sweep(); err == nil || e.status(k.ID) != store.KeyActive {
			t.Fatalf("a failed flush: %v, key %s", err, e.status(k.ID))
		}
		f.Fail(nil)
		r, err := sweep()
		if err != nil || r.Changed != 1 || e.status(k.ID) != store.KeyExpired {
			t.Fatalf("sweep %+v %v, key %s", r, err, e.status(k.ID))
		}
		if at := f.At(); len(at) != 2 || !at[0].Equal(instant) || at[1].Before(instant.Add(authorizer.RecheckAfter)) {
			t.Fatalf("flushes at %v for an expiry at %v", at, instant)
		}
		if _, err := sweep(); err != nil || len(f.At()) != 2 {
			t.Fatalf("a sweep with nothing due flushed: %v", f.At())
		}

		// A key the sweep meets long after its expiry (the sweep was
		// down) has no cached decision left to end.
		old := e.key(time.Second)
		e.clk.Advance(time.Hour)
		if r, err := sweep(); err != nil || r.Changed != 1 || len(f.At()) != 2 || e.status(old.ID) != store.KeyExpired {
			t.Fatalf("an old expiry: %+v %v, %d flushes", r, err, len(f.At()))
		}
	})
}

// stopAfter lets a run take n pages, as a deadline would.
func stopAfter(n int) func(context.Context) bool {
	var mu sync.Mutex
	return func(context.Context) bool {
		mu.Lock()
		defer mu.Unlock()
		n--
		return n > 0
	}
}

func TestSweepAcrossPagesAndRuns(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		const n = 230
		for i := range n {
			e.key(time.Duration(i+1) * time.Second)
		}
		e.clk.Advance(time.Hour)
		total, runs := 0, 0
		for {
			r := e.run(e.jobs(stopAfter(1)), jobs.ExpirySweep)
			total += r.Changed
			runs++
			if !r.More {
				break
			}
			if runs > 10 {
				t.Fatal("the sweep does not finish")
			}
		}
		if total != n || runs < 3 {
			t.Fatalf("%d keys expired in %d runs, want %d in at least 3", total, runs, n)
		}
		if got := e.actions("acme")[lifecycle.ActionKeyExpired]; got != n {
			t.Fatalf("%d key.expired entries for %d keys", got, n)
		}
	})
}

func TestTwoSweepsAtOnceApplyEachChangeOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		const n = 60
		for range n {
			e.key(time.Minute)
		}
		e.clk.Advance(time.Hour)
		var wg sync.WaitGroup
		results := make([]jobs.Result, 3)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := e.jobs(nil).Run(e.ctx, jobs.ExpirySweep)
				if err != nil {
					t.Errorf("sweep: %v", err)
				}
				results[i] = r
			}()
		}
		wg.Wait()
		total := 0
		for _, r := range results {
			total += r.Changed
		}
		if total != n {
			t.Fatalf("concurrent sweeps reported %d changes for %d keys", total, n)
		}
		if got := e.actions("acme")[lifecycle.ActionKeyExpired]; got != n {
			t.Fatalf("%d key.expired entries for %d keys", got, n)
		}
	})
}

func TestWarningsSentOnceEach(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		week := e.key(6 * 24 * time.Hour)
		soon := e.key(12 * time.Hour)
		far := e.key(30 * 24 * time.Hour)
		for range 2 {
			e.run(e.jobs(nil), jobs.ExpiryWarnings)
		}
		notices := func(id string) string {
			k, _ := e.st.GetKey(e.ctx, id)
			return fmt.Sprint(k.Notices)
		}
		if notices(week.ID) != "[expiring_7d]" || notices(soon.ID) != "[expiring_1d]" || notices(far.ID) != "[]" {
			t.Fatalf("notices: week %s soon %s far %s", notices(week.ID), notices(soon.ID), notices(far.ID))
		}
		e.clk.Advance(5*24*time.Hour + time.Hour) // week is now 23 h from expiry
		for range 2 {
			e.run(e.jobs(nil), jobs.ExpiryWarnings)
		}
		if notices(week.ID) != "[expiring_7d expiring_1d]" {
			t.Fatalf("week's notices %s", notices(week.ID))
		}
		if got := e.actions("acme")[lifecycle.ActionKeyExpiring]; got != 3 {
			t.Fatalf("%d key.expiring events, want 3", got)
		}
	})
}

func TestWarningsResumeFromCheckpoint(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		const n = 230
		for range n {
			e.key(3 * 24 * time.Hour)
		}
		r := e.run(e.jobs(stopAfter(1)), jobs.ExpiryWarnings)
		if !r.More || r.Changed != store.MaxPageSize {
			t.Fatalf("first run %+v", r)
		}
		if c, _ := e.st.GetCheckpoint(e.ctx, jobs.ExpiryWarnings); c == "" {
			t.Fatal("no checkpoint left by a run that stopped early")
		}
		total := r.Changed
		for r.More {
			r = e.run(e.jobs(stopAfter(1)), jobs.ExpiryWarnings)
			total += r.Changed
		}
		if total != n || e.actions("acme")[lifecycle.ActionKeyExpiring] != n {
			t.Fatalf("%d warnings over the runs, want %d", total, n)
		}
		if c, _ := e.st.GetCheckpoint(e.ctx, jobs.ExpiryWarnings); c != "" {
			t.Fatalf("checkpoint %q left after the last page", c)
		}
		// With the work done, the next run visits every key and sends nothing.
		if r := e.run(e.jobs(nil), jobs.ExpiryWarnings); r.Changed != 0 {
			t.Fatalf("repeat run sent %d warnings", r.Changed)
		}
	})
}

func TestUnusedKeysReportedOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		never := e.key(0)
		used := e.key(0)
		revoked := e.key(0)
		if _, err := e.svc.Revoke(e.ctx, lifecycle.Actor{ID: "test"}, "acme", revoked.ID); err != nil {
			t.Fatal(err)
		}
		e.clk.Advance(60 * 24 * time.Hour)
		fresh := e.key(0)
		if _, err := e.st.TouchKey(e.ctx, used.ID, e.clk.Now(), time.Minute); err != nil {
			t.Fatal(err)
		}
		e.clk.Advance(31 * 24 * time.Hour)
		e.run(e.jobs(nil), jobs.UnusedKeys)
		e.run(e.jobs(nil), jobs.UnusedKeys)
		got := map[string]bool{}
		for _, k := range []store.Key{never, used, revoked, fresh} {
			sk, _ := e.st.GetKey(e.ctx, k.ID)
			got[k.ID] = len(sk.Notices) > 0
		}
		// The admin keys, never used for 91 days, are reported too; the
		// revoked key gets no event, only its identity released, once.
		if !got[never.ID] || got[used.ID] || !got[revoked.ID] || got[fresh.ID] || e.actions("acme")[lifecycle.ActionKeyUnused] != 3 {
			t.Fatalf("unused notices %v, events %d", got, e.actions("acme")[lifecycle.ActionKeyUnused])
		}
		rk, _ := e.st.GetKey(e.ctx, revoked.ID)
		if fmt.Sprint(rk.Notices) != "[identity_removed]" || len(e.removed.ids) != 1 || e.removed.ids[0] != "keywardkey"+revoked.ID {
			t.Fatalf("revoked key: notices %v, identities removed %v", rk.Notices, e.removed.ids)
		}
	})
}

func TestPepperRotationAndRetirement(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		format, _ := apikey.NewFormat("sk")
		oldKey, err := e.svc.Create(e.ctx, lifecycle.Actor{ID: "test"}, "acme", lifecycle.CreateParams{Name: "old", Environment: apikey.Live, Scopes: []string{"*"}})
		if err != nil {
			t.Fatal(err)
		}
		if r := e.run(e.jobs(nil), jobs.PepperRotation); r.Changed != 0 {
			t.Fatalf("rotated a fresh pepper: %+v", r)
		}
		e.clk.Advance(jobs.DefaultPepperInterval)
		if r := e.run(e.jobs(nil), jobs.PepperRotation); r.Changed != 1 {
			t.Fatalf("rotation %+v, want a new version", r)
		}
		if e.actions(store.SystemTenant)[lifecycle.ActionPepperRotated] != 1 {
			t.Fatal("no pepper.rotated event")
		}
		// This process picks the new version up within the refresh interval.
		e.clk.Advance(pepper.RefreshInterval)
		if e.ring.Current() != 2 {
			t.Fatalf("current version %d after rotation", e.ring.Current())
		}
		newKey, err := e.svc.Create(e.ctx, lifecycle.Actor{ID: "test"}, "acme", lifecycle.CreateParams{Name: "new", Environment: apikey.Live, Scopes: []string{"*"}})
		if err != nil || newKey.Key.PepperVersion != 2 {
			t.Fatalf("new key hashed with version %d (%v)", newKey.Key.PepperVersion, err)
		}
		// Both keys verify: the old one under its own version.
		for _, c := range []lifecycle.Created{oldKey, newKey} {
			k, _ := e.st.GetKey(e.ctx, c.Key.ID)
			if ok, err := e.ring.Verify(e.ctx, k.PepperVersion, c.Token.Plain(), k.Hash); !ok || err != nil {
				t.Fatalf("key on version %d does not verify: %v", k.PepperVersion, err)
			}
		}
		_ = format

		// Version 1 stays while a live key (the old key, the admin key) uses it.
		e.clk.Advance(2 * time.Hour)
		e.run(e.jobs(nil), jobs.PepperRotation)
		if retired(t, e, 1) {
			t.Fatal("retired a version live keys depend on")
		}
		// Once every live key is re-hashed (as the authorizer does on use)
		// or dead, version 1 goes; the newest never does.
		for q := ""; ; {
			p, err := e.st.ScanKeys(e.ctx, q, 100)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range p.Keys {
				if k.PepperVersion == 1 {
					if _, err := e.svc.Revoke(e.ctx, lifecycle.Actor{ID: "test"}, k.TenantID, k.ID); err != nil {
						t.Fatal(err)
					}
				}
			}
			if q = p.NextCursor; q == "" {
				break
			}
		}
		r := e.run(e.jobs(nil), jobs.PepperRotation)
		if r.Changed != 1 || !retired(t, e, 1) || retired(t, e, 2) {
			t.Fatalf("retirement %+v", r)
		}
		// A scan cut short retires nothing.
		e.clk.Advance(jobs.DefaultPepperInterval)
		r = e.run(e.jobs(stopAfter(1)), jobs.PepperRotation)
		if retired(t, e, 2) {
			t.Fatal("retired version 2 within an hour of version 3")
		}
	})
}

func retired(t *testing.T, e *env, v int) bool {
	t.Helper()
	ps, err := e.st.ListPeppers(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Version == v {
			return !p.RetiredAt.IsZero()
		}
	}
	t.Fatalf("no pepper version %d", v)
	return false
}
