package usage_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/usage"
)

// recorder is a Writer that keeps every minute written.
type recorder struct {
	mu      sync.Mutex
	written []store.UsageMinute
	fail    int // the next fail writes fail
}

func (r *recorder) AddUsage(_ context.Context, m store.UsageMinute) (store.UsageHour, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return store.UsageHour{}, errors.New("store unavailable")
	}
	r.written = append(r.written, m)
	return store.AddToHour(store.UsageHour{}, m), nil
}

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func TestNetwork(t *testing.T) {
	for ip, want := range map[string]string{
		"203.0.113.77":           "203.0.113.0/24",
		"::ffff:203.0.113.77":    "203.0.113.0/24",
		"2001:db8:1234:5678::1":  "2001:db8:1234::/48",
		"not an address":         "",
		"":                       "",
		"203.0.113.77%eth0":      "",
		"2001:db8:1234::1%eth0":  "2001:db8:1234::/48",
		"fe80::1:2:3:4":          "fe80::/48",
		"2001:0db8:ffff:0001::9": "2001:db8:ffff::/48",
	} {
		if got := usage.Network(ip, 24, 48); got != want {
			t.Errorf("Network(%q) = %q, want %q", ip, got, want)
		}
	}
	if got := usage.Network("127.0.0.2", 32, 128); got != "127.0.0.2/32" {
		t.Errorf("a /32 network: %q", got)
	}
}

// TestOneWritePerKeyAndMinute: under load from many goroutines, the
// aggregator writes one item per active key per minute, and the items add
// up to every request.
func TestOneWritePerKeyAndMinute(t *testing.T) {
	w := &recorder{}
	a := usage.NewAggregator(w, nil, nil)
	const keys, minutes, workers, perWorker = 40, 3, 8, 3000
	for minute := range minutes {
		start := t0.Add(time.Duration(minute) * time.Minute)
		var wg sync.WaitGroup
		for g := range workers {
			wg.Go(func() {
				for i := range perWorker {
					k := (g*perWorker + i) % keys
					a.Observe(usage.Request{Time: start.Add(time.Duration(i%60) * time.Second), KeyID: fmt.Sprintf("k%02d", k), TenantID: "acme",
						Method: "GET", Route: "/invoices", Status: []int{200, 404, 429, 503}[i%4], SourceIP: fmt.Sprintf("203.0.%d.9", i%3)})
				}
			})
		}
		wg.Wait()
		// Mid-minute: nothing is due yet.
		if err := a.Flush(t.Context(), start.Add(59*time.Second), false); err != nil || len(w.written) != minute*keys {
			t.Fatalf("minute %d, before its end: %v, %d written", minute, err, len(w.written))
		}
		if err := a.Flush(t.Context(), start.Add(time.Minute), false); err != nil {
			t.Fatal(err)
		}
		if len(w.written) != (minute+1)*keys {
			t.Fatalf("minute %d: %d items written, want one per key: %d", minute, len(w.written), (minute+1)*keys)
		}
	}
	var total store.UsageCounts
	seen := map[string]bool{}
	for _, m := range w.written {
		id := m.KeyID + m.Minute.String()
		if seen[id] {
			t.Fatalf("key %s, minute %s written twice", m.KeyID, m.Minute)
		}
		seen[id] = true
		total = total.Add(m.Counts)
		if len(m.Networks) != 3 || len(m.Recent) != store.MaxRecent || m.TenantID != "acme" {
			t.Fatalf("minute %+v", m)
		}
		for i := 1; i < len(m.Recent); i++ {
			if m.Recent[i].Time.Before(m.Recent[i-1].Time) {
				t.Fatalf("recent requests out of order: %+v", m.Recent)
			}
		}
		if err := store.CheckUsageMinute(m); err != nil {
			t.Fatal(err)
		}
	}
	const requests = minutes * workers * perWorker
	if total.Total() != requests || total.OK != requests/4 || total.Throttled != requests/4 || total.ServerError != requests/4 {
		t.Fatalf("counts %+v, want %d requests, a quarter of each class", total, requests)
	}
}

// TestFlushAll writes the minute in progress too (at shutdown).
func TestFlushAll(t *testing.T) {
	w := &recorder{}
	a := usage.NewAggregator(w, nil, nil)
	a.Observe(usage.Request{Time: t0.Add(5 * time.Second), KeyID: "k1", TenantID: "acme", Status: 200})
	if err := a.Flush(t.Context(), t0.Add(10*time.Second), true); err != nil || len(w.written) != 1 {
		t.Fatalf("%v, %d written", err, len(w.written))
	}
	if err := a.Flush(t.Context(), t0.Add(time.Hour), true); err != nil || len(w.written) != 1 {
		t.Fatalf("written again: %v, %d", err, len(w.written))
	}
}

// TestFailedWriteIsKept: a minute whose write fails is written by the
// next flush, with what came in since.
func TestFailedWriteIsKept(t *testing.T) {
	w := &recorder{fail: 1}
	a := usage.NewAggregator(w, nil, nil)
	a.Observe(usage.Request{Time: t0, KeyID: "k1", TenantID: "acme", Status: 200})
	if err := a.Flush(t.Context(), t0.Add(time.Minute), false); err == nil || len(w.written) != 0 {
		t.Fatalf("a failed write: %v, %d written", err, len(w.written))
	}
	a.Observe(usage.Request{Time: t0.Add(30 * time.Second), KeyID: "k1", TenantID: "acme", Status: 500}) // late
	if err := a.Flush(t.Context(), t0.Add(2*time.Minute), false); err != nil || len(w.written) != 1 {
		t.Fatalf("retry: %v, %d written", err, len(w.written))
	}
	if c := w.written[0].Counts; c != (store.UsageCounts{OK: 1, ServerError: 1}) {
		t.Fatalf("counts %+v", c)
	}
}

// TestIgnoresWhatIsNotAKeysRequest: requests without a key or a tenant
// are not counted (public routes, refusals before the authorizer).
func TestIgnoresWhatIsNotAKeysRequest(t *testing.T) {
	w := &recorder{}
	a := usage.NewAggregator(w, nil, nil)
	a.Observe(usage.Request{Time: t0, TenantID: "acme", Status: 401})
	a.Observe(usage.Request{Time: t0, KeyID: "k1", Status: 200})
	a.Observe(usage.Request{KeyID: "k1", TenantID: "acme", Status: 200})
	if err := a.Flush(t.Context(), t0.Add(time.Hour), true); err != nil || len(w.written) != 0 {
		t.Fatalf("%v, %d written", err, len(w.written))
	}
}

// TestPendingIsBounded: past MaxPending key-minutes, requests for new
// ones are dropped, not held.
func TestPendingIsBounded(t *testing.T) {
	w := &recorder{}
	a := usage.NewAggregator(w, nil, nil)
	for i := range usage.MaxPending + 10 {
		a.Observe(usage.Request{Time: t0, KeyID: fmt.Sprint(i), TenantID: "acme", Status: 200})
	}
	if err := a.Flush(t.Context(), t0.Add(time.Minute), false); err != nil || len(w.written) != usage.MaxPending {
		t.Fatalf("%v, %d written", err, len(w.written))
	}
}

// TestHandleLogs: a CloudWatch Logs delivery (gzip, base64) of access
// lines and an authorizer line is counted and its ended minutes written;
// lines of neither kind are skipped; a delivery that does not decode is
// an error.
func TestHandleLogs(t *testing.T) {
	w := &recorder{}
	a := usage.NewAggregator(w, nil, nil)
	past := time.Now().Add(-time.Hour).Truncate(time.Minute)
	access := strings.Replace(accessLine, `"requestTimeEpoch":"1796032801123"`, fmt.Sprintf(`"requestTimeEpoch":"%d"`, past.UnixMilli()), 1)
	wrong := fmt.Sprintf(`{"time":%q,"level":"INFO","msg":"authorization decision","outcome":"unauthorized","reason":"wrong_secret","key_id":"key_AbCdEfGhIjKl","tenant_id":"acme"}`,
		past.Add(time.Second).Format(time.RFC3339Nano))
	data, _ := json.Marshal(events.CloudwatchLogsData{LogGroup: "/aws/apigateway/keyward-prod/access", LogEvents: []events.CloudwatchLogsLogEvent{
		{ID: "1", Timestamp: past.UnixMilli(), Message: access},
		{ID: "2", Timestamp: past.UnixMilli(), Message: wrong},
		{ID: "3", Timestamp: past.UnixMilli(), Message: "REPORT RequestId: 1 Duration: 2 ms"},
	}})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(data)
	_ = zw.Close()
	ev := events.CloudwatchLogsEvent{AWSLogs: events.CloudwatchLogsRawData{Data: base64.StdEncoding.EncodeToString(gz.Bytes())}}
	if err := a.HandleLogs(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	if len(w.written) != 1 || w.written[0].Counts != (store.UsageCounts{ClientError: 1, InvalidSecret: 1}) || w.written[0].KeyID != "AbCdEfGhIjKl" {
		t.Fatalf("written %+v", w.written)
	}
	if err := a.HandleLogs(t.Context(), events.CloudwatchLogsEvent{AWSLogs: events.CloudwatchLogsRawData{Data: "not base64!"}}); err == nil {
		t.Fatal("an undecodable delivery accepted")
	}
}
