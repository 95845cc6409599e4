package usage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/store"
)

// The suspicious-use events, each an audit entry of the key (and so an
// event on the bus, with the key's contact; docs/admin-api.md, Usage).
const (
	ActionNewNetwork    = "key.new_network"
	ActionSpike         = "key.spike"
	ActionInvalidSecret = "key.invalid_secret"
	ActionOldKeyInUse   = "key.old_key_in_use"
)

// RulesStore is what the rules read and remember.
type RulesStore interface {
	GetKey(ctx context.Context, id string) (store.Key, error)
	ListUsage(ctx context.Context, keyID string, from, to time.Time) ([]store.UsageHour, error)
	store.KeyWatches
}

// Alerter records a suspicious-use event about a key (lifecycle.Alert).
type Alerter interface {
	Alert(ctx context.Context, k store.Key, action string, details map[string]string) error
}

// Rules apply the suspicious-use rules to each minute the aggregator
// writes, with the thresholds of config.Alerts. What they remember of a
// key across processes is its store.KeyWatch, written only at the
// revision read: of processes that see the same new network at once, the
// one whose write lands alerts, the others see it known.
type Rules struct {
	Store  RulesStore
	Alert  Alerter
	Config config.Alerts

	mu   sync.Mutex
	p95s map[string]p95Entry // by key, for the hour it was read for
}

// watchAttempts bounds the re-reads after a concurrent write of a watch.
const watchAttempts = 4

// spikeHistory is the trailing window of a key's hours a spike is
// measured against.
const spikeHistory = 7 * 24 * time.Hour

// apply applies the rules to m, written into hour.
func (r *Rules) apply(ctx context.Context, m store.UsageMinute, hour store.UsageHour) error {
	k, err := r.Store.GetKey(ctx, m.KeyID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && k.TenantID != m.TenantID) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading key: %w", err)
	}
	var spikeBase float64
	if total := hour.Counts.Total(); total > r.Config.SpikeFloor {
		// Read once per key and hour (hourlyP95 remembers it); the
		// watch says whether this hour alerted already.
		if spikeBase, err = r.hourlyP95(ctx, k.ID, hour.Hour); err != nil {
			return err
		}
	}
	var invalid int64
	if m.Counts.InvalidSecret > 0 {
		if invalid, err = r.invalidSecrets(ctx, k.ID, m.Minute, hour); err != nil {
			return err
		}
	}
	for range watchAttempts {
		w, err := r.Store.GetKeyWatch(ctx, k.ID)
		if errors.Is(err, store.ErrNotFound) {
			w, err = store.KeyWatch{KeyID: k.ID, TenantID: k.TenantID, Since: m.First}, nil
		}
		if err != nil {
			return fmt.Errorf("reading the key's watch: %w", err)
		}
		alerts, changed := r.check(&w, k, m, hour, spikeBase, invalid)
		if !changed {
			return nil
		}
		err = r.Store.PutKeyWatch(ctx, w)
		if errors.Is(err, store.ErrConflict) {
			continue // another process wrote it: judge again on what it wrote
		}
		if err != nil {
			return fmt.Errorf("writing the key's watch: %w", err)
		}
		// Alerted only once the watch that records them is written, so
		// that no two processes send the same alert.
		var errs []error
		for _, a := range alerts {
			if err := r.Alert.Alert(ctx, k, a.action, a.details); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", a.action, err))
			}
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("the key's watch changed %d times while the rules read it", watchAttempts)
}

type alert struct {
	action  string
	details map[string]string
}

// check updates w with m and returns the alerts m raises, and whether w
// changed.
func (r *Rules) check(w *store.KeyWatch, k store.Key, m store.UsageMinute, hour store.UsageHour, spikeBase float64, invalid int64) ([]alert, bool) {
	if w.Networks == nil {
		w.Networks = map[string]time.Time{}
	}
	if w.Alerts == nil {
		w.Alerts = map[string]time.Time{}
	}
	changed := w.Revision == 0
	if m.First.Before(w.Since) {
		w.Since, changed = m.First, true
	}
	var alerts []alert
	raise := func(id, action string, at time.Time, details map[string]string) {
		if _, sent := w.Alerts[id]; sent {
			return
		}
		w.Alerts[id], changed = at, true
		alerts = append(alerts, alert{action, details})
	}
	day := m.Last.UTC().Truncate(24 * time.Hour)
	// A key's first networks are learnt, not new, whatever the period.
	learnt := w.Revision > 0 && m.First.Sub(w.Since) >= r.Config.Learning()
	for _, n := range m.Networks {
		last, known := w.Networks[n]
		if known && m.Last.Sub(last) < r.Config.NetworkMemory() {
			if last.Before(day) {
				w.Networks[n], changed = day, true // still in use: known for longer
			}
			continue
		}
		w.Networks[n], changed = day, true
		if learnt {
			raise(ActionNewNetwork+" "+n+" "+day.Format(time.DateOnly), ActionNewNetwork, m.Last, map[string]string{
				"network": n, "first_seen": m.First.UTC().Format(time.RFC3339), "requests": strconv.FormatInt(m.Counts.Total(), 10),
				"known_networks": strings.Join(known30(w.Networks, n), " "), "key_in_use_since": w.Since.UTC().Format(time.RFC3339)})
		}
	}
	if spikeBase > 0 && float64(hour.Counts.Total()) > r.Config.SpikeFactor*spikeBase {
		raise(ActionSpike+" "+hour.Hour.Format(time.RFC3339), ActionSpike, m.Last, map[string]string{
			"hour": hour.Hour.Format(time.RFC3339), "requests": strconv.FormatInt(hour.Counts.Total(), 10),
			"trailing_p95": strconv.FormatFloat(spikeBase, 'f', 1, 64), "factor": strconv.FormatFloat(r.Config.SpikeFactor, 'f', -1, 64)})
	}
	if invalid >= r.Config.InvalidSecrets {
		window := r.Config.InvalidSecretWindow()
		start := m.Minute.Truncate(window)
		raise(ActionInvalidSecret+" "+start.Format(time.RFC3339), ActionInvalidSecret, m.Last, map[string]string{
			"attempts": strconv.FormatInt(invalid, 10), "window_minutes": strconv.Itoa(r.Config.InvalidSecretMinutes)})
	}
	if k.ReplacedBy != "" && !k.ExpiresAt.IsZero() && k.ExpiresAt.After(m.Last) && k.ExpiresAt.Sub(m.Last) <= r.Config.OldKeyWarning() && m.Counts.Total() > 0 {
		raise(ActionOldKeyInUse+" "+k.ExpiresAt.UTC().Format(time.RFC3339), ActionOldKeyInUse, m.Last, map[string]string{
			"replaced_by": apikey.PublicID(k.ReplacedBy), "expires_at": k.ExpiresAt.UTC().Format(time.RFC3339),
			"networks": strings.Join(hour.Networks, " "), "requests_this_hour": strconv.FormatInt(hour.Counts.Total(), 10)})
	}
	prune(w.Networks, m.Last.Add(-r.Config.NetworkMemory()))
	prune(w.Alerts, m.Last.Add(-store.UsageRetention))
	return alerts, changed
}

// known30 lists the networks known besides n, sorted: the evidence.
func known30(networks map[string]time.Time, n string) []string {
	out := slices.Sorted(maps.Keys(networks))
	return slices.DeleteFunc(out, func(s string) bool { return s == n })
}

// prune drops the entries last seen before cutoff, then the oldest ones
// past store.MaxWatchEntries.
func prune(m map[string]time.Time, cutoff time.Time) {
	maps.DeleteFunc(m, func(_ string, at time.Time) bool { return at.Before(cutoff) })
	for len(m) > store.MaxWatchEntries {
		oldest := ""
		for k, at := range m {
			if oldest == "" || at.Before(m[oldest]) {
				oldest = k
			}
		}
		delete(m, oldest)
	}
}

// hourlyP95 is the 95th percentile of the key's hourly requests over the
// spikeHistory before hour, hours without requests counting as 0 (at
// least 1); 0 for a key with no history at all, whose first traffic is no
// spike by itself. Read once per key and hour per process.
func (r *Rules) hourlyP95(ctx context.Context, keyID string, hour time.Time) (float64, error) {
	r.mu.Lock()
	e, ok := r.p95s[keyID]
	r.mu.Unlock()
	if ok && e.hour.Equal(hour) {
		return e.p95, nil
	}
	hours, err := r.Store.ListUsage(ctx, keyID, hour.Add(-spikeHistory), hour)
	if err != nil {
		return 0, fmt.Errorf("reading the key's recent hours: %w", err)
	}
	var p95 float64
	if len(hours) > 0 {
		totals := make([]int64, int(spikeHistory/time.Hour))
		for _, h := range hours {
			if i := int(h.Hour.Sub(hour.Add(-spikeHistory)) / time.Hour); i >= 0 && i < len(totals) {
				totals[i] = h.Counts.Total()
			}
		}
		slices.Sort(totals)
		p95 = max(float64(totals[len(totals)*95/100]), 1)
	}
	r.mu.Lock()
	if r.p95s == nil || len(r.p95s) >= maxRemembered {
		r.p95s = map[string]p95Entry{}
	}
	r.p95s[keyID] = p95Entry{hour, p95}
	r.mu.Unlock()
	return p95, nil
}

type p95Entry struct {
	hour time.Time
	p95  float64
}

// maxRemembered bounds the keys whose trailing p95 a process remembers.
const maxRemembered = 10_000

// invalidSecrets counts the key's wrong secrets over the window ending
// with minute, from the hour just written and, across an hour's start,
// the hour before.
func (r *Rules) invalidSecrets(ctx context.Context, keyID string, minute time.Time, hour store.UsageHour) (int64, error) {
	from := minute.Add(-r.Config.InvalidSecretWindow() + time.Minute)
	hours := []store.UsageHour{hour}
	if from.Before(hour.Hour) {
		before, err := r.Store.ListUsage(ctx, keyID, from, hour.Hour)
		if err != nil {
			return 0, fmt.Errorf("reading the key's previous hour: %w", err)
		}
		hours = append(hours, before...)
	}
	var n int64
	for _, h := range hours {
		for m, c := range h.Minutes {
			if at := h.Hour.Add(time.Duration(m) * time.Minute); !at.Before(from) && !at.After(minute) {
				n += c.InvalidSecret
			}
		}
	}
	return n, nil
}
