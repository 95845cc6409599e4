package conformance

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/store"
)

func minute(keyID, tenant string, at time.Time, counts store.UsageCounts, networks ...string) store.UsageMinute {
	at = at.UTC()
	return store.UsageMinute{KeyID: keyID, TenantID: tenant, Minute: at.Truncate(time.Minute), Counts: counts,
		Networks: networks, First: at, Last: at.Add(30 * time.Second),
		Recent: []store.RecentRequest{{Time: at, Method: "GET", Route: "/invoices", Status: 200, SourceIP: "203.0.113.7", LatencyMS: 12.5}}}
}

// testUsage: minutes add up in their key's hour, whatever order they come
// in; a listing gives the hours overlapping its range, oldest first, and
// only the key's; bad minutes are refused and change nothing.
func testUsage(t *testing.T, e *env) {
	h0 := e.clk.Now().UTC().Truncate(time.Hour)
	adds := []store.UsageMinute{
		minute("k1", "acme", h0.Add(5*time.Minute+10*time.Second), store.UsageCounts{OK: 3, Throttled: 1}, "203.0.113.0/24"),
		minute("k1", "acme", h0.Add(5*time.Minute+40*time.Second), store.UsageCounts{OK: 2, ServerError: 1}, "198.51.100.0/24", "203.0.113.0/24"),
		minute("k1", "acme", h0.Add(2*time.Minute), store.UsageCounts{ClientError: 4}, "2001:db8::/48"),
		minute("k1", "acme", h0.Add(time.Hour+time.Minute), store.UsageCounts{OK: 7}),
		minute("k2", "acme", h0.Add(3*time.Minute), store.UsageCounts{OK: 100}),
	}
	for _, m := range adds {
		if _, err := e.s.AddUsage(e.ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	hours, err := e.s.ListUsage(e.ctx, "k1", h0, h0.Add(2*time.Hour))
	if err != nil || len(hours) != 2 {
		t.Fatalf("list: %v, %d hours", err, len(hours))
	}
	first := hours[0]
	if !first.Hour.Equal(h0) || first.KeyID != "k1" || first.TenantID != "acme" ||
		first.Counts != (store.UsageCounts{OK: 5, ClientError: 4, Throttled: 1, ServerError: 1}) {
		t.Fatalf("first hour %+v", first)
	}
	if first.Minutes[5] != (store.UsageCounts{OK: 5, Throttled: 1, ServerError: 1}) || first.Minutes[2] != (store.UsageCounts{ClientError: 4}) || len(first.Minutes) != 2 {
		t.Fatalf("minutes %+v", first.Minutes)
	}
	if fmt.Sprint(first.Networks) != "[198.51.100.0/24 2001:db8::/48 203.0.113.0/24]" {
		t.Fatalf("networks %v", first.Networks)
	}
	if !first.First.Equal(h0.Add(2*time.Minute)) || !first.Last.Equal(h0.Add(6*time.Minute+10*time.Second)) {
		t.Fatalf("first %v last %v", first.First, first.Last)
	}
	if len(first.Recent) != 3 || !first.Recent[0].Time.Equal(h0.Add(2*time.Minute)) || first.Recent[2].LatencyMS != 12.5 {
		t.Fatalf("recent %+v", first.Recent)
	}
	if hours[1].Counts.OK != 7 || !hours[1].Hour.Equal(h0.Add(time.Hour)) {
		t.Fatalf("second hour %+v", hours[1])
	}
	// Ranges: an hour overlapping the start is in, one starting at the
	// end is out.
	if got, _ := e.s.ListUsage(e.ctx, "k1", h0.Add(30*time.Minute), h0.Add(time.Hour)); len(got) != 1 || !got[0].Hour.Equal(h0) {
		t.Fatalf("range: %+v", got)
	}
	if got, _ := e.s.ListUsage(e.ctx, "k3", h0, h0.Add(2*time.Hour)); len(got) != 0 {
		t.Fatalf("a key without usage: %+v", got)
	}

	// The recent requests and networks stay bounded.
	for i := range store.MaxRecent + store.MaxHourNetworks {
		m := minute("k2", "acme", h0.Add(4*time.Minute+time.Duration(i)*time.Second), store.UsageCounts{OK: 1}, fmt.Sprintf("10.0.%d.0/24", i))
		if _, err := e.s.AddUsage(e.ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := e.s.ListUsage(e.ctx, "k2", h0, h0.Add(time.Hour))
	if len(got) != 1 || len(got[0].Recent) != store.MaxRecent || len(got[0].Networks) != store.MaxHourNetworks || got[0].Counts.OK != 100+int64(store.MaxRecent+store.MaxHourNetworks) {
		t.Fatalf("bounds: %d recent, %d networks, %+v", len(got[0].Recent), len(got[0].Networks), got[0].Counts)
	}
	if last := got[0].Recent[store.MaxRecent-1]; !last.Time.Equal(h0.Add(4*time.Minute + time.Duration(store.MaxRecent+store.MaxHourNetworks-1)*time.Second)) {
		t.Fatalf("the newest request is not kept: %+v", last)
	}

	// Refused: another tenant's minute for the key, and malformed ones.
	_, err = e.s.AddUsage(e.ctx, minute("k1", "beta", h0, store.UsageCounts{OK: 1}))
	wantErr(t, err, store.ErrConflict)
	for _, bad := range []store.UsageMinute{
		minute("", "acme", h0, store.UsageCounts{OK: 1}),
		minute("k1", "acme", h0, store.UsageCounts{}),
		func() store.UsageMinute {
			m := minute("k1", "acme", h0, store.UsageCounts{OK: 1})
			m.Minute = h0.Add(time.Second)
			return m
		}(),
	} {
		if _, err := e.s.AddUsage(e.ctx, bad); err == nil {
			t.Fatalf("accepted %+v", bad)
		}
	}
	if again, _ := e.s.ListUsage(e.ctx, "k1", h0, h0.Add(time.Hour)); again[0].Counts != first.Counts {
		t.Fatalf("a refused minute changed the hour: %+v", again[0].Counts)
	}
}

// testUsageConcurrent: processes adding minutes of the same key at once
// lose none.
func testUsageConcurrent(t *testing.T, e *env) {
	h0 := e.clk.Now().UTC().Truncate(time.Hour)
	const writers, each = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, err := e.s.AddUsage(e.ctx, minute("k1", "acme", h0.Add(time.Duration(w*each+i)*time.Second), store.UsageCounts{OK: 1}))
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.s.ListUsage(e.ctx, "k1", h0, h0.Add(time.Hour))
	if err != nil || len(got) != 1 || got[0].Counts.OK != writers*each {
		t.Fatalf("%v: %+v", err, got)
	}
}

// testUsageExpiry: an hour is listed until UsageRetention after it ends.
func testUsageExpiry(t *testing.T, e *env) {
	h0 := e.clk.Now().UTC().Truncate(time.Hour)
	if _, err := e.s.AddUsage(e.ctx, minute("k1", "acme", h0, store.UsageCounts{OK: 1})); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(store.UsageRetention)
	if got, _ := e.s.ListUsage(e.ctx, "k1", h0, h0.Add(time.Hour)); len(got) != 1 {
		t.Fatalf("expired early: %+v", got)
	}
	e.clk.Advance(time.Hour)
	if got, _ := e.s.ListUsage(e.ctx, "k1", h0, h0.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("listed after expiring: %+v", got)
	}
}

// testKeyWatch: a key's watch is created once, then written only at the
// revision read, so that of two processes that read it one wins.
func testKeyWatch(t *testing.T, e *env) {
	_, err := e.s.GetKeyWatch(e.ctx, "k1")
	wantErr(t, err, store.ErrNotFound)
	now := e.clk.Now().UTC().Truncate(time.Second)
	w := store.KeyWatch{KeyID: "k1", TenantID: "acme", Since: now,
		Networks: map[string]time.Time{"203.0.113.0/24": now}, Alerts: map[string]time.Time{}}
	if err := e.s.PutKeyWatch(e.ctx, w); err != nil {
		t.Fatal(err)
	}
	wantErr(t, e.s.PutKeyWatch(e.ctx, w), store.ErrConflict) // created already
	got, err := e.s.GetKeyWatch(e.ctx, "k1")
	if err != nil || got.Revision != 1 || !got.Since.Equal(now) || !got.Networks["203.0.113.0/24"].Equal(now) || got.TenantID != "acme" {
		t.Fatalf("%v: %+v", err, got)
	}
	a, b := got, got
	a.Networks = map[string]time.Time{"203.0.113.0/24": now, "198.51.100.0/24": now}
	b.Alerts = map[string]time.Time{"key.new_network 198.51.100.0/24": now}
	if err := e.s.PutKeyWatch(e.ctx, a); err != nil {
		t.Fatal(err)
	}
	wantErr(t, e.s.PutKeyWatch(e.ctx, b), store.ErrConflict)
	got, _ = e.s.GetKeyWatch(e.ctx, "k1")
	if got.Revision != 2 || len(got.Networks) != 2 || len(got.Alerts) != 0 {
		t.Fatalf("after the race: %+v", got)
	}
	other := got
	other.TenantID = "beta"
	if err := e.s.PutKeyWatch(e.ctx, other); err == nil {
		t.Fatal("another tenant's write accepted")
	}
	big := got
	big.Networks = map[string]time.Time{}
	for i := range store.MaxWatchEntries + 1 {
		big.Networks[fmt.Sprintf("10.%d.0.0/24", i)] = now
	}
	if err := e.s.PutKeyWatch(e.ctx, big); err == nil {
		t.Fatal("an unbounded watch accepted")
	}
}
