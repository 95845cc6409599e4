package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// UsageStore keeps keys' usage (package usage): one item per key and hour,
// to which the usage aggregator of every process adds what it saw of the
// key in a minute. Hours expire UsageRetention after they end.
type UsageStore interface {
	// AddUsage adds m to its key's hour and returns the hour as written:
	// counts add up, networks join (up to MaxHourNetworks), first and last
	// seen widen, and the recent requests are the newest MaxRecent of the
	// hour's and m's.
	AddUsage(ctx context.Context, m UsageMinute) (UsageHour, error)
	// ListUsage returns the key's hours that overlap [from, to), oldest
	// first, at most MaxUsageHours of them, none expired.
	ListUsage(ctx context.Context, keyID string, from, to time.Time) ([]UsageHour, error)
	KeyWatches
}

// Bounds of the usage data.
const (
	// UsageRetention is how long an hour is kept after it ends.
	UsageRetention = 90 * 24 * time.Hour
	// MaxUsageHours bounds one ListUsage: the retention and a day on
	// either side (a series of days over the whole retention).
	MaxUsageHours = 92 * 24
	// MaxRecent bounds the recent requests kept per key and hour.
	MaxRecent = 10
	// MaxHourNetworks bounds the distinct client networks kept per key
	// and hour: an hour item stays a few KB (a write unit per KB).
	MaxHourNetworks = 32
)

// UsageCounts are requests by status class, and the authorizer's
// refusals of a wrong secret for the key (401s, which the gateway's log
// cannot tie to a key).
type UsageCounts struct {
	OK            int64 `json:"2xx"` // below 400
	ClientError   int64 `json:"4xx"` // 4xx but 429
	Throttled     int64 `json:"429"`
	ServerError   int64 `json:"5xx"`
	InvalidSecret int64 `json:"invalid_secret"`
}

// Add returns c plus o.
func (c UsageCounts) Add(o UsageCounts) UsageCounts {
	return UsageCounts{c.OK + o.OK, c.ClientError + o.ClientError, c.Throttled + o.Throttled, c.ServerError + o.ServerError,
		c.InvalidSecret + o.InvalidSecret}
}

// Total is every request served with the key (not the wrong secrets).
func (c UsageCounts) Total() int64 { return c.OK + c.ClientError + c.Throttled + c.ServerError }

// Count adds one request answered with status.
func (c *UsageCounts) Count(status int) {
	switch {
	case status == 429:
		c.Throttled++
	case status >= 500:
		c.ServerError++
	case status >= 400:
		c.ClientError++
	default:
		c.OK++
	}
}

// RecentRequest is one request as the usage keeps it: never a header, a
// query string or a body.
type RecentRequest struct {
	Time      time.Time `json:"time"`
	Method    string    `json:"method"`
	Route     string    `json:"route"`
	Status    int       `json:"status"`
	SourceIP  string    `json:"source_ip"`
	LatencyMS float64   `json:"latency_ms"`
}

// UsageMinute is what one process saw of one key in one minute.
type UsageMinute struct {
	KeyID    string
	TenantID string
	Minute   time.Time // UTC, truncated to the minute
	Counts   UsageCounts
	// Networks are the distinct client networks (see package usage).
	Networks    []string
	First, Last time.Time
	// Recent are the newest requests, oldest first, at most MaxRecent.
	Recent []RecentRequest
}

// UsageHour is a key's usage in one hour: the minutes added to it.
type UsageHour struct {
	KeyID    string
	TenantID string
	Hour     time.Time // UTC, truncated to the hour
	Counts   UsageCounts
	// Minutes are the counts by minute of the hour (0 to 59), for the
	// minutes with any.
	Minutes     map[int]UsageCounts
	Networks    []string // sorted, at most MaxHourNetworks
	First, Last time.Time
	Recent      []RecentRequest // oldest first, at most MaxRecent
}

// UsageExpiry is when the usage of hour expires: UsageRetention after it
// ends.
func UsageExpiry(hour time.Time) time.Time { return hour.Add(time.Hour + UsageRetention) }

// CheckUsageMinute refuses a minute no backend may store.
func CheckUsageMinute(m UsageMinute) error {
	switch {
	case m.KeyID == "" || m.TenantID == "":
		return errors.New("store: usage needs a key and a tenant")
	case m.Minute.IsZero() || !m.Minute.Equal(m.Minute.Truncate(time.Minute)):
		return fmt.Errorf("store: usage minute %v is not a whole minute", m.Minute)
	case m.Counts.Total()+m.Counts.InvalidSecret <= 0 || m.Counts.OK < 0 || m.Counts.ClientError < 0 || m.Counts.Throttled < 0 ||
		m.Counts.ServerError < 0 || m.Counts.InvalidSecret < 0:
		return errors.New("store: usage counts must be positive")
	case len(m.Recent) > MaxRecent || len(m.Networks) > MaxHourNetworks:
		return errors.New("store: too many recent requests or networks")
	}
	return nil
}

// AddToHour adds m to h, as AddUsage does: the embedded backend's
// arithmetic, and the reference for the DynamoDB backend's update.
func AddToHour(h UsageHour, m UsageMinute) UsageHour {
	h.KeyID, h.TenantID, h.Hour = m.KeyID, m.TenantID, m.Minute.UTC().Truncate(time.Hour)
	h.Counts = h.Counts.Add(m.Counts)
	if h.Minutes == nil {
		h.Minutes = map[int]UsageCounts{}
	}
	minute := m.Minute.UTC().Minute()
	h.Minutes[minute] = h.Minutes[minute].Add(m.Counts)
	h.Networks = JoinNetworks(h.Networks, m.Networks)
	h.First, h.Last = Widen(h.First, h.Last, m.First, m.Last)
	h.Recent = NewestRecent(h.Recent, m.Recent)
	return h
}

// Merge is m and o, two counts of one key's minute, as one.
func (m UsageMinute) Merge(o UsageMinute) UsageMinute {
	m.Counts = m.Counts.Add(o.Counts)
	m.Networks = JoinNetworks(m.Networks, o.Networks)
	m.First, m.Last = Widen(m.First, m.Last, o.First, o.Last)
	m.Recent = NewestRecent(m.Recent, o.Recent)
	return m
}

// Widen is the span from first to last (none yet if first is zero)
// widened to hold [f, l].
func Widen(first, last, f, l time.Time) (time.Time, time.Time) {
	if first.IsZero() || (!f.IsZero() && f.Before(first)) {
		first = f
	}
	if l.After(last) {
		last = l
	}
	return first, last
}

// OfTenant is hours without any of another tenant than tenantID: what a
// reader shows, whatever the store holds.
func OfTenant(hours []UsageHour, tenantID string) []UsageHour {
	return slices.DeleteFunc(hours, func(h UsageHour) bool { return h.TenantID != tenantID })
}

// NewestRequests are the most recent requests of hours (oldest first), at
// most limit, newest first.
func NewestRequests(hours []UsageHour, limit int) []RecentRequest {
	var out []RecentRequest
	for _, h := range slices.Backward(hours) {
		for _, rq := range slices.Backward(h.Recent) {
			if len(out) == limit {
				return out
			}
			out = append(out, rq)
		}
	}
	return out
}

// JoinNetworks is a (sorted, distinct) with the networks of b it lacks,
// as many as fit in MaxHourNetworks: the first seen stay.
func JoinNetworks(a, b []string) []string {
	out := slices.Clone(a)
	for _, n := range b {
		if len(out) >= MaxHourNetworks {
			break
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// NewestRecent is the newest MaxRecent requests of a and b, oldest first.
func NewestRecent(a, b []RecentRequest) []RecentRequest {
	out := slices.Concat(a, b)
	slices.SortStableFunc(out, func(x, y RecentRequest) int { return x.Time.Compare(y.Time) })
	if len(out) > MaxRecent {
		out = out[len(out)-MaxRecent:]
	}
	return out
}

// KeyWatch is what the usage's suspicious-use rules (package usage)
// remember of a key across processes: when it was first used, the client
// networks it was used from, and the alerts sent, each with when. A write
// is conditional on the revision read (0: none yet), so that of processes
// seeing the same new network at once only one alerts.
type KeyWatch struct {
	KeyID    string
	TenantID string
	Since    time.Time            // the first use seen
	Networks map[string]time.Time // network → last seen (to the day)
	Alerts   map[string]time.Time // alert → when sent
	Revision int64
}

// KeyWatches stores KeyWatch records; part of UsageStore.
type KeyWatches interface {
	// GetKeyWatch returns a key's record (ErrNotFound if none).
	GetKeyWatch(ctx context.Context, keyID string) (KeyWatch, error)
	// PutKeyWatch writes w if the stored revision is w.Revision (0: if
	// there is none), as w.Revision+1; ErrConflict otherwise.
	PutKeyWatch(ctx context.Context, w KeyWatch) error
}

// MaxWatchEntries bounds a KeyWatch's networks and alerts each: the
// oldest go first.
const MaxWatchEntries = 128

// CheckKeyWatch refuses a record no backend may store.
func CheckKeyWatch(w KeyWatch) error {
	switch {
	case w.KeyID == "" || w.TenantID == "":
		return errors.New("store: a key watch needs a key and a tenant")
	case len(w.Networks) > MaxWatchEntries || len(w.Alerts) > MaxWatchEntries:
		return fmt.Errorf("store: a key watch holds at most %d networks and %d alerts", MaxWatchEntries, MaxWatchEntries)
	case w.Revision < 0:
		return errors.New("store: negative revision")
	}
	return nil
}
