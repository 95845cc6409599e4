package admin

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/store"
)

// Usage ranges (docs/admin-api.md, Usage): per-minute counts are served
// for the last week, hours and days for the store's retention.
const (
	minuteHistory = 7 * 24 * time.Hour
	maxMinuteSpan = 24 * time.Hour
	maxHourSpan   = 31 * 24 * time.Hour
	maxDaySpan    = store.UsageRetention
	maxRequests   = 50
)

// granularities are the steps a usage series may take, with their
// default span.
var granularities = map[string]struct {
	step, span, maxSpan time.Duration
}{
	"minute": {time.Minute, time.Hour, maxMinuteSpan},
	"hour":   {time.Hour, 24 * time.Hour, maxHourSpan},
	"day":    {24 * time.Hour, 30 * 24 * time.Hour, maxDaySpan},
}

type usagePoint struct {
	Start    string            `json:"start"`
	Requests store.UsageCounts `json:"requests"`
}

type usageResource struct {
	Object      string       `json:"object"`
	KeyID       string       `json:"key_id"`
	Granularity string       `json:"granularity"`
	From        string       `json:"from"`
	To          string       `json:"to"`
	Data        []usagePoint `json:"data"`
	// Totals over the range: requests, distinct client networks (up to
	// store.MaxHourNetworks an hour), first and last request seen.
	Requests  store.UsageCounts `json:"requests"`
	Networks  []string          `json:"networks"`
	FirstSeen *string           `json:"first_seen"`
	LastSeen  *string           `json:"last_seen"`
}

// keyUsage answers GET /v1/keys/{id}/usage: the key's requests by status
// class in steps of a minute, an hour or a day over [from, to).
func (s *Server) keyUsage(w http.ResponseWriter, r *http.Request, c Caller) *apiError {
	id, e := keyID(r)
	if e != nil {
		return e
	}
	q, e := query(r, "granularity", "from", "to")
	if e != nil {
		return e
	}
	name := q.Get("granularity")
	if name == "" {
		name = "hour"
	}
	g, ok := granularities[name]
	if !ok {
		return invalidRequest("granularity", "granularity must be minute, hour or day.")
	}
	now := s.cfg.Now().UTC()
	to := now
	if v := q.Get("to"); v != "" {
		if to, e = parseTime("to", v); e != nil {
			return e
		}
	}
	from := to.Add(-g.span)
	if v := q.Get("from"); v != "" {
		if from, e = parseTime("from", v); e != nil {
			return e
		}
	}
	from, to = from.UTC().Truncate(g.step), to.UTC()
	switch {
	case !from.Before(to):
		return invalidRequest("from", "from must be before to.")
	case to.Sub(from) > g.maxSpan:
		return invalidRequest("from", "A %s series spans at most %d hours; narrow from and to.", name, int(g.maxSpan.Hours()))
	case name == "minute" && from.Before(now.Add(-minuteHistory)):
		return invalidRequest("from", "Per-minute usage is kept for 7 days; use granularity=hour or day further back.")
	case from.Before(now.Add(-store.UsageRetention)):
		return invalidRequest("from", "Usage is kept for 90 days.")
	}
	k, e := s.visible(r, c, id)
	if e != nil {
		return e
	}
	hours, err := s.cfg.Store.ListUsage(r.Context(), k.ID, from, to)
	if err != nil {
		return s.internal(r, "reading usage", err)
	}
	out := usageResource{Object: "usage", KeyID: apikey.PublicID(k.ID), Granularity: name,
		From: from.Format(time.RFC3339), To: to.Format(time.RFC3339), Data: []usagePoint{}, Networks: []string{}}
	points := map[time.Time]store.UsageCounts{}
	var first, last time.Time
	for _, h := range store.OfTenant(hours, k.TenantID) {
		for m, counts := range h.Minutes {
			at := h.Hour.Add(time.Duration(m) * time.Minute)
			if at.Before(from) || !at.Before(to) {
				continue
			}
			step := at.Truncate(g.step)
			points[step] = points[step].Add(counts)
			out.Requests = out.Requests.Add(counts)
		}
		out.Networks = store.JoinNetworks(out.Networks, h.Networks)
		first, last = store.Widen(first, last, h.First, h.Last)
	}
	for _, at := range slices.SortedFunc(maps.Keys(points), time.Time.Compare) {
		out.Data = append(out.Data, usagePoint{Start: at.Format(time.RFC3339), Requests: points[at]})
	}
	out.FirstSeen, out.LastSeen = timeOrNil(first), timeOrNil(last)
	writeJSON(w, http.StatusOK, out)
	return nil
}

type requestResource struct {
	Object string `json:"object"`
	store.RecentRequest
}

// keyRequests answers GET /v1/keys/{id}/requests: the key's most recent
// requests, newest first, from the last day's hours.
func (s *Server) keyRequests(w http.ResponseWriter, r *http.Request, c Caller) *apiError {
	id, e := keyID(r)
	if e != nil {
		return e
	}
	q, e := query(r, "limit")
	if e != nil {
		return e
	}
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxRequests {
			return invalidRequest("limit", "limit must be 1 to %d.", maxRequests)
		}
		limit = n
	}
	k, e := s.visible(r, c, id)
	if e != nil {
		return e
	}
	now := s.cfg.Now().UTC()
	hours, err := s.cfg.Store.ListUsage(r.Context(), k.ID, now.Add(-24*time.Hour), now.Add(time.Hour))
	if err != nil {
		return s.internal(r, "reading usage", err)
	}
	out := list[requestResource]{Object: "list", Data: []requestResource{}}
	for _, rr := range store.NewestRequests(store.OfTenant(hours, k.TenantID), limit) {
		rr.Time = rr.Time.UTC()
		out.Data = append(out.Data, requestResource{Object: "request", RecentRequest: rr})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
