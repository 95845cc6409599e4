package console

import (
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

// keyRow is a key as the pages show it: never its hash, nor any secret.
type keyRow struct {
	ID, Name, Description, Display, Env, Status, CreatedBy, Application, Contact string
	Scopes, AllowedIPs, AllowedOrigins                                           []string
	CreatedAt, LastUsed, Expires, Revoked                                        time.Time
	RequestsPerMinute, Burst                                                     int
	Replaces, ReplacedBy                                                         string
	BrowserWrites, CanRotate, CanRevoke                                          bool
}

// owns reports whether the member may change k: an admin any key, a
// developer their own (the lifecycle's rule; it decides on the change).
func (m *member) owns(k store.Key) bool {
	return m.can(needAdmin) || (m.can(needWrite) && k.CreatedBy == m.Member)
}

func (m *member) row(k store.Key) keyRow {
	live := k.Status == store.KeyActive || k.Status == store.KeyExpiring
	row := keyRow{ID: apikey.PublicID(k.ID), Name: k.Name, Description: k.Description,
		Display: apikey.Display(k.Prefix, k.Environment, k.Last4), Env: k.Environment, Status: string(k.Status),
		CreatedBy: k.CreatedBy, Application: k.Metadata["application"], Contact: k.Contact, Scopes: k.Scopes,
		AllowedIPs: k.AllowedIPs, AllowedOrigins: k.AllowedOrigins, BrowserWrites: k.AllowBrowserWrites, CreatedAt: k.CreatedAt, LastUsed: k.LastUsedAt,
		Expires: k.ExpiresAt, Revoked: k.RevokedAt, RequestsPerMinute: k.RateLimit.RequestsPerMinute, Burst: k.RateLimit.Burst,
		CanRotate: k.Status == store.KeyActive && m.owns(k), CanRevoke: live && m.owns(k)}
	if k.Replaces != "" {
		row.Replaces = apikey.PublicID(k.Replaces)
	}
	if k.ReplacedBy != "" {
		row.ReplacedBy = apikey.PublicID(k.ReplacedBy)
	}
	return row
}

// pageSize is how many keys or audit entries a page shows.
const pageSize = 50

var statuses = []string{string(store.KeyActive), string(store.KeyExpiring), string(store.KeyRevoked), string(store.KeyExpired)}

type keysData struct {
	Keys           []keyRow
	Status, Member string
	Statuses       []string
	First, Next    string
	Error          string
}

// keysPage lists the tenant's keys of the environment shown, newest
// first, a page at a time, filtered by status and member.
func (s *Server) keysPage(w http.ResponseWriter, r *http.Request, m *member) error {
	q := r.URL.Query()
	d := keysData{Status: q.Get("status"), Member: q.Get("member"), Statuses: statuses, Keys: make([]keyRow, 0, pageSize)}
	if !slices.Contains(statuses, d.Status) {
		d.Status = ""
	}
	if d.Member != "" && !validMember(d.Member) {
		d.Error, d.Member = "A member id is 1 to 128 letters, digits or _ - . @ : + |.", ""
	}
	cursor := q.Get("cursor")
	page, err := s.cfg.Keys.List(r.Context(), m.Tenant, store.KeyQuery{Environment: m.env,
		Status: store.KeyStatus(d.Status), CreatedBy: d.Member, Limit: pageSize, Cursor: cursor})
	var ve *lifecycle.ValidationError
	if errors.As(err, &ve) && cursor != "" {
		d.Error, cursor = "That page of the listing is no longer valid; this is the first page.", ""
		page, err = s.cfg.Keys.List(r.Context(), m.Tenant, store.KeyQuery{Environment: m.env,
			Status: store.KeyStatus(d.Status), CreatedBy: d.Member, Limit: pageSize})
	}
	if err != nil {
		return s.internal(r, "listing keys", err)
	}
	for _, k := range page.Keys {
		d.Keys = append(d.Keys, m.row(k))
	}
	link := func(cursor string) string {
		v := url.Values{"env": {m.env}}
		if d.Status != "" {
			v.Set("status", d.Status)
		}
		if d.Member != "" {
			v.Set("member", d.Member)
		}
		if cursor != "" {
			v.Set("cursor", cursor)
		}
		return Prefix + "/keys?" + v.Encode()
	}
	if cursor != "" {
		d.First = link("")
	}
	if page.NextCursor != "" {
		d.Next = link(page.NextCursor)
	}
	s.render(w, r, http.StatusOK, "keys", m, d)
	return nil
}

// auditRow is an audit entry as the pages show it.
type auditRow struct {
	Time                                   time.Time
	Actor, Action, KeyID, Display, Request string
	Details                                []string
}

func auditRows(entries []store.AuditEntry) []auditRow {
	rows := make([]auditRow, 0, len(entries))
	for _, e := range entries {
		row := auditRow{Time: e.Time, Actor: e.Actor, Action: e.Action, Display: e.KeyDisplay, Request: e.RequestID}
		if e.KeyID != "" {
			row.KeyID = apikey.PublicID(e.KeyID)
		}
		for _, k := range slices.Sorted(maps.Keys(e.Details)) {
			row.Details = append(row.Details, k+": "+e.Details[k])
		}
		rows = append(rows, row)
	}
	return rows
}

// keyID reads the {id} path value ("key_<id>").
func keyID(r *http.Request) (string, error) {
	id, ok := apikey.ParsePublicID(r.PathValue("id"))
	if !ok {
		return "", errNotFound
	}
	return id, nil
}

// flashes are the notices a redirect after a change shows.
var flashes = map[string]string{
	"revoked": "The key is revoked: it is refused from the very next request.",
}

type keyData struct {
	Key     keyRow
	Entries []auditRow // its history (the audit table's rows)
	Flash   string
	Usage   usageChart
	Recent  []store.RecentRequest // newest first
}

// usageChart is a key's last day of requests, an hour a bar.
type usageChart struct {
	Bars        []usageBar
	Total       int64
	Refused     int64 // 4xx, 429 and 5xx
	WrongSecret int64
}

// usageBar is one hour's bar, in the SVG's units (chartWidth by
// chartHeight).
type usageBar struct {
	Hour             time.Time
	Requests, Errors int64
	X, Y, Height     int // the whole bar
	ErrY, ErrHeight  int // its refused part, at the bottom
}

const (
	chartHours  = 24
	chartHeight = 80
	barWidth    = 20
	recentShown = 10
)

// chart lays out hours (oldest first) ending with the hour of now.
func chart(hours []store.UsageHour, now time.Time) usageChart {
	byHour := map[time.Time]store.UsageCounts{}
	for _, h := range hours {
		byHour[h.Hour.UTC()] = h.Counts
	}
	first := now.UTC().Truncate(time.Hour).Add(-(chartHours - 1) * time.Hour)
	var c usageChart
	var most int64 = 1
	for i := range chartHours {
		n := byHour[first.Add(time.Duration(i)*time.Hour)]
		most = max(most, n.Total())
	}
	for i := range chartHours {
		at := first.Add(time.Duration(i) * time.Hour)
		n := byHour[at]
		errs := n.ClientError + n.Throttled + n.ServerError
		b := usageBar{Hour: at, Requests: n.Total(), Errors: errs, X: i * barWidth,
			Height: int(n.Total() * chartHeight / most), ErrHeight: int(errs * chartHeight / most)}
		b.Y, b.ErrY = chartHeight-b.Height, chartHeight-b.ErrHeight
		c.Bars = append(c.Bars, b)
		c.Total += n.Total()
		c.Refused += errs
		c.WrongSecret += n.InvalidSecret
	}
	return c
}

// keyPage shows one key and its history from the audit log.
func (s *Server) keyPage(w http.ResponseWriter, r *http.Request, m *member) error {
	k, err := s.key(r, m)
	if err != nil {
		return err
	}
	id := k.ID
	page, err := s.cfg.Store.ListAudit(r.Context(), m.Tenant, store.AuditQuery{KeyID: id, Limit: pageSize})
	if err != nil {
		return s.internal(r, "reading the key's history", err)
	}
	now := s.cfg.Now()
	hours, err := s.cfg.Store.ListUsage(r.Context(), id, now.Add(-chartHours*time.Hour), now.Add(time.Hour))
	if err != nil {
		return s.internal(r, "reading the key's usage", err)
	}
	hours = store.OfTenant(hours, m.Tenant)
	s.render(w, r, http.StatusOK, "key", m, keyData{Key: m.row(k), Entries: auditRows(page.Entries), Flash: flashes[r.URL.Query().Get("done")],
		Usage: chart(hours, now), Recent: store.NewestRequests(hours, recentShown)})
	return nil
}

type auditData struct {
	Entries     []auditRow
	First, Next string
}

// auditPage shows the tenant's audit log: the entries about keys of the
// environment shown, and the tenant's own.
func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, m *member) error {
	cursor := r.URL.Query().Get("cursor")
	page, err := s.cfg.Store.ListAudit(r.Context(), m.Tenant, store.AuditQuery{Environment: m.env, Limit: pageSize, Cursor: cursor})
	if errors.Is(err, store.ErrInvalidCursor) {
		cursor = ""
		page, err = s.cfg.Store.ListAudit(r.Context(), m.Tenant, store.AuditQuery{Environment: m.env, Limit: pageSize})
	}
	if err != nil {
		return s.internal(r, "listing the audit log", err)
	}
	d := auditData{Entries: auditRows(page.Entries)}
	if cursor != "" {
		d.First = Prefix + "/audit?" + url.Values{"env": {m.env}}.Encode()
	}
	if page.NextCursor != "" {
		d.Next = Prefix + "/audit?" + url.Values{"env": {m.env}, "cursor": {page.NextCursor}}.Encode()
	}
	s.render(w, r, http.StatusOK, "audit", m, d)
	return nil
}

// membersScan bounds the keys the members page reads, in pages of
// store.MaxPageSize.
const membersScan = 20

type memberRow struct {
	Member      string
	Keys, Alive int
}

type membersData struct {
	Members   []memberRow
	Truncated bool
	Flash     string
}

// membersPage lists the members who created keys, in both environments,
// from the keys' created_by, with how many of their keys still work.
func (s *Server) membersPage(w http.ResponseWriter, r *http.Request, m *member) error {
	counts := map[string]*memberRow{}
	d := membersData{}
	cursor := ""
	for i := 0; ; i++ {
		if i == membersScan {
			d.Truncated = true
			break
		}
		page, err := s.cfg.Keys.List(r.Context(), m.Tenant, store.KeyQuery{Limit: store.MaxPageSize, Cursor: cursor})
		if err != nil {
			return s.internal(r, "listing keys", err)
		}
		for _, k := range page.Keys {
			if k.CreatedBy == "" {
				continue
			}
			row := counts[k.CreatedBy]
			if row == nil {
				row = &memberRow{Member: k.CreatedBy}
				counts[k.CreatedBy] = row
			}
			row.Keys++
			if k.Status == store.KeyActive || k.Status == store.KeyExpiring {
				row.Alive++
			}
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	for _, name := range slices.Sorted(maps.Keys(counts)) {
		d.Members = append(d.Members, *counts[name])
	}
	q := r.URL.Query()
	if n, err := strconv.Atoi(q.Get("revoked")); err == nil && validMember(q.Get("member")) {
		d.Flash = "Revoked " + strconv.Itoa(n) + " keys of " + q.Get("member") + "."
	}
	s.render(w, r, http.StatusOK, "members", m, d)
	return nil
}
