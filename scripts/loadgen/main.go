// Command loadgen is a small closed-loop HTTP load generator for the local
// stack (make bench-local): -c workers each send a request to -url, read
// the whole answer, and send the next, over keep-alive connections, for
// -warmup and then -d. It prints one JSON line:
//
//	{"requests":N,"rps":...,"p50_ms":...,"p90_ms":...,"p99_ms":...,"errors":N,"status":{"200":N,...}}
//
// requests, rps and the percentiles count every request started after the
// warm-up that got an answer, whatever its status; status breaks them down
// by status code, so non-2xx answers show; errors counts requests that got
// no answer at all (connection refused, timeout, ...).
//
// loadgen only targets loopback addresses and stops by itself: no request
// starts after -warmup + -d, and none outlasts -timeout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// config is one run.
type config struct {
	url         string
	header      http.Header
	host        string // a Host header, which net/http takes from Request.Host
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	timeout     time.Duration
}

// result is the JSON line loadgen prints.
type result struct {
	Requests int            `json:"requests"`
	RPS      float64        `json:"rps"`
	P50ms    float64        `json:"p50_ms"`
	P90ms    float64        `json:"p90_ms"`
	P99ms    float64        `json:"p99_ms"`
	Errors   int            `json:"errors"`
	Status   map[string]int `json:"status"`

	lastErr error // the last request that got no answer
}

// headers collects repeatable -header "Name: value" flags.
type headers []string

func (h *headers) String() string { return strings.Join(*h, ", ") }

func (h *headers) Set(v string) error {
	name, _, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("header %q is not \"Name: value\"", v)
	}
	*h = append(*h, v)
	return nil
}

func main() {
	var hs headers
	c := config{}
	flag.StringVar(&c.url, "url", "", "the URL to load (http, loopback only)")
	flag.Var(&hs, "header", "a request header \"Name: value\" (repeatable)")
	flag.IntVar(&c.concurrency, "c", 8, "concurrent workers, each with its own keep-alive connection")
	flag.DurationVar(&c.duration, "d", 10*time.Second, "measured duration")
	flag.DurationVar(&c.warmup, "warmup", 2*time.Second, "unmeasured warm-up before -d")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Second, "timeout of one request")
	flag.Parse()
	if err := c.init(hs); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	res, err := run(context.Background(), c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	if res.lastErr != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %d requests got no answer; the last: %v\n", res.Errors, res.lastErr)
	}
	line, _ := json.Marshal(res)
	fmt.Println(string(line))
}

// init checks the flags and parses the headers.
func (c *config) init(hs headers) error {
	u, err := url.Parse(c.url)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("-url %q is not an http://host:port/path URL", c.url)
	}
	if !loopback(u.Hostname()) {
		return fmt.Errorf("-url %q: loadgen only targets loopback addresses (127.0.0.0/8, ::1, localhost)", c.url)
	}
	if c.concurrency < 1 || c.concurrency > 1024 {
		return fmt.Errorf("-c %d outside 1..1024", c.concurrency)
	}
	if c.duration <= 0 || c.duration > time.Hour || c.warmup < 0 || c.warmup > time.Hour {
		return errors.New("-d must be in (0, 1h] and -warmup in [0, 1h]")
	}
	if c.timeout <= 0 {
		return errors.New("-timeout must be positive")
	}
	c.header = http.Header{}
	for _, h := range hs {
		name, value, _ := strings.Cut(h, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if strings.EqualFold(name, "Host") {
			c.host = value
			continue
		}
		c.header.Add(name, value)
	}
	return nil
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// worker is one closed loop's record.
type worker struct {
	latencies []time.Duration
	status    map[int]int
	errors    int
	lastErr   error
}

// run loads c.url and returns what it saw. It fails only when no request
// at all got an answer.
func run(ctx context.Context, c config) (result, error) {
	transport := &http.Transport{
		Proxy:               nil, // loopback: never through HTTP_PROXY
		DialContext:         (&net.Dialer{Timeout: c.timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        c.concurrency,
		MaxIdleConnsPerHost: c.concurrency,
		MaxConnsPerHost:     c.concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // send exactly the headers asked for
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: c.timeout,
		// A redirect would load another URL; report the 3xx instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	start := time.Now()
	measureFrom := start.Add(c.warmup)
	stopAt := measureFrom.Add(c.duration)
	// The hard bound: the last request starts before stopAt and gets
	// c.timeout.
	ctx, cancel := context.WithDeadline(ctx, stopAt.Add(c.timeout))
	defer cancel()

	workers := make([]worker, c.concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.status = map[int]int{}
		wg.Go(func() {
			for {
				t0 := time.Now()
				if !t0.Before(stopAt) || ctx.Err() != nil {
					return
				}
				status, err := do(ctx, client, c)
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					w.errors++
					w.lastErr = err
					continue
				}
				w.latencies = append(w.latencies, time.Since(t0))
				w.status[status]++
			}
		})
	}
	wg.Wait()
	// From the end of the warm-up to the last answer: the measured
	// requests' span, a little over -d as the last ones finish.
	elapsed := time.Since(measureFrom)

	res := result{Status: map[string]int{}}
	var all []time.Duration
	var lastErr error
	for _, w := range workers {
		all = append(all, w.latencies...)
		res.Errors += w.errors
		for code, n := range w.status {
			res.Status[strconv.Itoa(code)] += n
		}
		if w.lastErr != nil {
			lastErr = w.lastErr
		}
	}
	slices.Sort(all)
	res.Requests = len(all)
	res.RPS = round(float64(len(all))/elapsed.Seconds(), 1)
	res.P50ms = ms(percentile(all, 50))
	res.P90ms = ms(percentile(all, 90))
	res.P99ms = ms(percentile(all, 99))
	res.lastErr = lastErr
	if res.Requests == 0 && res.Errors > 0 {
		return res, fmt.Errorf("no request got an answer: %w", lastErr)
	}
	return res, nil
}

// do sends one request and reads the whole answer, so that the connection
// goes back to the pool.
func do(ctx context.Context, client *http.Client, c config) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return 0, err
	}
	req.Header = c.header.Clone()
	if c.host != "" {
		req.Host = c.host
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// percentile returns the nearest-rank p-th percentile of sorted: the
// smallest value that at least p% of the values are at or below. It is 0
// for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// p*n before /100: 0.99*100 is 99.00000000000001 in floating point.
	rank := int(math.Ceil(p * float64(len(sorted)) / 100))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

func round(v float64, digits int) float64 {
	f := math.Pow(10, float64(digits))
	return math.Round(v*f) / f
}
