package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(n int) []time.Duration {
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = time.Duration(i+1) * time.Millisecond
		}
		return s
	}
	for _, tc := range []struct {
		n    int
		p    float64
		want time.Duration
	}{
		{0, 50, 0},
		{1, 50, 1 * time.Millisecond},
		{1, 99, 1 * time.Millisecond},
		{2, 50, 1 * time.Millisecond},
		{2, 51, 2 * time.Millisecond},
		{10, 50, 5 * time.Millisecond},
		{10, 90, 9 * time.Millisecond},
		{10, 99, 10 * time.Millisecond},
		{100, 50, 50 * time.Millisecond},
		{100, 90, 90 * time.Millisecond},
		{100, 99, 99 * time.Millisecond}, // not 100: 0.99*100 rounds up in floating point
		{1000, 99, 990 * time.Millisecond},
		{1000, 100, 1000 * time.Millisecond},
		{1000, 0, 1 * time.Millisecond},
	} {
		if got := percentile(ms(tc.n), tc.p); got != tc.want {
			t.Errorf("percentile(1..%d ms, %v) = %v, want %v", tc.n, tc.p, got, tc.want)
		}
	}
}

func TestRun(t *testing.T) {
	var n, auth atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer x" && r.Host == "api.test" {
			auth.Add(1)
		}
		// Every tenth request fails, which must show in the status counts.
		if n.Add(1)%10 == 0 {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()

	c := config{url: srv.URL + "/invoices", concurrency: 4, duration: 300 * time.Millisecond,
		warmup: 100 * time.Millisecond, timeout: time.Second}
	if err := c.init(headers{"Authorization: Bearer x", "Host: api.test"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("run took %v for 400ms of load", took)
	}
	if res.Requests == 0 || res.Errors != 0 {
		t.Fatalf("result %+v: want requests and no errors", res)
	}
	if got := res.Status["200"] + res.Status["503"]; got != res.Requests {
		t.Errorf("status counts %v add up to %d, want %d", res.Status, got, res.Requests)
	}
	if res.Status["503"] == 0 {
		t.Errorf("status counts %v hide the 503s", res.Status)
	}
	if res.RPS <= 0 || res.P50ms <= 0 || res.P50ms > res.P90ms || res.P90ms > res.P99ms {
		t.Errorf("result %+v: want positive rps and p50 <= p90 <= p99", res)
	}
	if int64(res.Requests) > n.Load() || auth.Load() != n.Load() {
		t.Errorf("server saw %d requests, %d with the headers; loadgen counted %d after warm-up", n.Load(), auth.Load(), res.Requests)
	}
}

func TestRunCountsErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens any more
	c := config{url: url, concurrency: 2, duration: 100 * time.Millisecond, timeout: time.Second}
	if err := c.init(nil); err != nil {
		t.Fatal(err)
	}
	res, err := run(context.Background(), c)
	if err == nil || res.Errors == 0 || res.Requests != 0 {
		t.Errorf("run against a closed port = %+v, %v; want errors and a failure", res, err)
	}
}

func TestInitRefusesNonLoopback(t *testing.T) {
	for _, u := range []string{"http://example.com/", "http://10.0.0.1:8080/", "https://127.0.0.1/", "127.0.0.1:8080"} {
		c := config{url: u, concurrency: 1, duration: time.Second, timeout: time.Second}
		if err := c.init(nil); err == nil {
			t.Errorf("init accepted -url %q", u)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080/invoices", "http://localhost:1/", "http://[::1]:8080/"} {
		c := config{url: u, concurrency: 1, duration: time.Second, timeout: time.Second}
		if err := c.init(nil); err != nil {
			t.Errorf("init refused -url %q: %v", u, err)
		}
	}
}
