package usage_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/usage"
)

// rulesFixture is a real store and lifecycle, a tenant with a contact,
// and aggregators with the rules, as processes of one deployment.
type rulesFixture struct {
	t     *testing.T
	ctx   context.Context
	clk   *clock.Manual
	st    store.Store
	svc   *lifecycle.Service
	rules config.Alerts
}

func newRulesFixture(t *testing.T, st store.Store, clk *clock.Manual) *rulesFixture {
	_, ring := storetest.Peppers(t, st, clk.Now())
	format, _ := apikey.NewFormat("sk")
	f := &rulesFixture{t: t, ctx: t.Context(), clk: clk, st: st, svc: lifecycle.New(st, ring, format, lifecycle.WithClock(clk.Now)),
		rules: config.Alerts{LearningHours: 24, NetworkMemoryDays: 30, SpikeFactor: 10, SpikeFloor: 100,
			InvalidSecrets: 5, InvalidSecretMinutes: 10, OldKeyMinutes: 60, NetworkBitsV4: 24, NetworkBitsV6: 48}}
	if _, err := f.svc.Onboard(f.ctx, lifecycle.Actor{ID: "operator"}, lifecycle.OnboardParams{TenantID: "acme", Name: "Acme", Contact: "sec@acme.example"}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *rulesFixture) key() store.Key {
	c, err := f.svc.Create(f.ctx, lifecycle.Actor{ID: "key_admin0000001"}, "acme",
		lifecycle.CreateParams{Name: "k", Environment: apikey.Live, Scopes: []string{"invoices:read"}})
	if err != nil {
		f.t.Fatal(err)
	}
	return c.Key
}

func (f *rulesFixture) aggregator() *usage.Aggregator {
	return usage.NewAggregator(f.st, &usage.Rules{Store: f.st, Alert: f.svc, Config: f.rules}, nil)
}

// traffic sends n requests of k from ip at the clock's time through a, a
// second apart, and flushes the minute.
func (f *rulesFixture) traffic(a *usage.Aggregator, k store.Key, ip string, n int) {
	f.t.Helper()
	at := f.clk.Now()
	for i := range n {
		a.Observe(usage.Request{Time: at.Add(time.Duration(i%60) * time.Second), KeyID: k.ID, TenantID: k.TenantID,
			Method: "GET", Route: "/invoices", Status: 200, SourceIP: ip})
	}
	if err := a.Flush(f.ctx, at.Add(time.Hour), true); err != nil {
		f.t.Fatal(err)
	}
}

// alerts are the suspicious-use entries of k, oldest first.
func (f *rulesFixture) alerts(k store.Key) []store.AuditEntry {
	f.t.Helper()
	page, err := f.st.ListAudit(f.ctx, "acme", store.AuditQuery{KeyID: k.ID, Limit: 100})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []store.AuditEntry
	for _, e := range slices.Backward(page.Entries) {
		if e.Actor == "usage" {
			out = append(out, e)
		}
	}
	return out
}

func (f *rulesFixture) want(k store.Key, actions ...string) []store.AuditEntry {
	f.t.Helper()
	got := f.alerts(k)
	var names []string
	for _, e := range got {
		names = append(names, e.Action)
		if e.Details["contact"] != "sec@acme.example" {
			f.t.Errorf("%s without the tenant's contact: %v", e.Action, e.Details)
		}
	}
	if !slices.Equal(names, actions) {
		f.t.Fatalf("alerts %v, want %v", names, actions)
	}
	return got
}

func eachStore(t *testing.T, test func(t *testing.T, f *rulesFixture)) {
	var clk *clock.Manual
	storetest.ForEach(t, func() time.Time { return clk.Now() }, func(t *testing.T, st store.Store) {
		clk = clock.NewManual(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
		test(t, newRulesFixture(t, st, clk))
	})
}

// TestNewNetwork: after the learning period, a /24 never seen for the key
// raises key.new_network once, with the evidence; steady traffic from
// known networks, and anything during the learning period, raises none.
func TestNewNetwork(t *testing.T) {
	eachStore(t, func(t *testing.T, f *rulesFixture) {
		k, a := f.key(), f.aggregator()
		f.traffic(a, k, "127.0.0.1", 10)
		f.clk.Advance(2 * time.Hour)
		f.traffic(a, k, "10.1.2.3", 3) // learning: no alert, but now known
		f.clk.Advance(f.rules.Learning())
		for range 5 { // steady traffic from the known networks
			f.traffic(a, k, "127.0.0.9", 20)
			f.traffic(a, k, "10.1.2.77", 20)
			f.clk.Advance(time.Hour)
		}
		f.want(k)
		f.traffic(a, k, "127.0.0.2", 4) // the same /24: known
		f.want(k)
		f.traffic(a, k, "198.51.100.20", 4)
		got := f.want(k, usage.ActionNewNetwork)
		if d := got[0].Details; d["network"] != "198.51.100.0/24" || d["known_networks"] != "10.1.2.0/24 127.0.0.0/24" || d["requests"] != "4" {
			t.Fatalf("evidence %v", d)
		}
		f.traffic(a, k, "198.51.100.21", 4) // known from now on
		f.want(k, usage.ActionNewNetwork)
	})
}

// TestNewNetworkOnceAcrossProcesses: processes that see the same new
// network at once raise one alert between them.
func TestNewNetworkOnceAcrossProcesses(t *testing.T) {
	eachStore(t, func(t *testing.T, f *rulesFixture) {
		k := f.key()
		f.traffic(f.aggregator(), k, "127.0.0.1", 1)
		f.clk.Advance(f.rules.Learning() + time.Hour)
		var wg sync.WaitGroup
		for range 4 {
			a := f.aggregator()
			wg.Go(func() { f.traffic(a, k, "203.0.113.5", 2) })
		}
		wg.Wait()
		f.want(k, usage.ActionNewNetwork)
	})
}

// TestSpike: an hour far above the key's trailing week raises key.spike
// once; an hour like the others, or a busy first hour, raises none.
func TestSpike(t *testing.T) {
	eachStore(t, func(t *testing.T, f *rulesFixture) {
		k, a := f.key(), f.aggregator()
		f.traffic(a, k, "127.0.0.1", 300) // a busy first hour: no history, no spike
		for range 30 {
			f.clk.Advance(time.Hour)
			f.traffic(a, k, "127.0.0.1", 40)
		}
		f.clk.Advance(time.Hour)
		f.traffic(a, k, "127.0.0.1", 90) // above the floor? no: 90 < 100
		f.clk.Advance(time.Hour)
		f.traffic(a, k, "127.0.0.1", 300) // above the floor, under 10× the p95 of 40
		f.want(k)
		f.clk.Advance(time.Hour)
		for range 9 {
			f.traffic(a, k, "127.0.0.1", 60) // 540 in one hour: > 10 × 40
			f.clk.Advance(time.Minute)
		}
		got := f.want(k, usage.ActionSpike)
		if got[0].Details["trailing_p95"] != "40.0" {
			t.Fatalf("evidence %v", got[0].Details)
		}
	})
}

// TestInvalidSecret: wrong secrets for a real key beyond the threshold in
// the window raise key.invalid_secret once per window; a few do not.
func TestInvalidSecret(t *testing.T) {
	eachStore(t, func(t *testing.T, f *rulesFixture) {
		k, a := f.key(), f.aggregator()
		wrong := func(n int) {
			at := f.clk.Now()
			for range n {
				a.ObserveInvalidSecret(k.ID, k.TenantID, at)
			}
			if err := a.Flush(f.ctx, at.Add(time.Hour), true); err != nil {
				t.Fatal(err)
			}
		}
		wrong(2)
		f.clk.Advance(20 * time.Minute)
		wrong(4) // 4 in the window, under 5
		f.want(k)
		f.clk.Advance(2 * time.Minute)
		wrong(2) // 6 within 10 minutes
		got := f.want(k, usage.ActionInvalidSecret)
		if got[0].Details["attempts"] != "6" {
			t.Fatalf("evidence %v", got[0].Details)
		}
		f.clk.Advance(time.Minute)
		wrong(3)
		f.want(k, usage.ActionInvalidSecret)
	})
}

// TestOldKeyInUse: a key replaced by rotation that still gets traffic
// shortly before its overlap ends raises key.old_key_in_use once, with the
// networks using it; earlier in the overlap, or the new key, raise none.
func TestOldKeyInUse(t *testing.T) {
	eachStore(t, func(t *testing.T, f *rulesFixture) {
		k, a := f.key(), f.aggregator()
		replacement, old, err := f.svc.Rotate(f.ctx, lifecycle.Actor{ID: "key_admin0000001"}, "acme", k.ID, 3*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		f.traffic(a, old, "127.0.0.1", 5) // three hours left: fine
		f.traffic(a, replacement.Key, "127.0.0.1", 5)
		f.clk.Advance(2*time.Hour + 10*time.Minute)
		f.traffic(a, replacement.Key, "127.0.0.1", 5)
		f.want(old)
		f.traffic(a, old, "10.9.8.7", 5)
		got := f.want(old, usage.ActionOldKeyInUse)
		if d := got[0].Details; d["replaced_by"] != apikey.PublicID(replacement.Key.ID) || d["networks"] != "10.9.8.0/24" {
			t.Fatalf("evidence %v", d)
		}
		f.traffic(a, old, "10.9.8.7", 5)
		f.want(old, usage.ActionOldKeyInUse)
		f.want(replacement.Key)
	})
}
