package embedded

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/pkg/store"
)

// The local store at scale (issue 17): TestScale loads databases of the
// sizes KEYWARD_SCALE lists (make bench: 10000,100000,1000000) and, for each,
// starts a process that opens it as the local stack does and reports its
// start time, resident memory, and the cost of a page of a listing, of a
// scan, of a read and of a durable create, so that the growth with the
// number of keys shows. Skipped unless KEYWARD_SCALE is set: the million
// takes a minute or two to load.

const (
	scaleEnv      = "KEYWARD_SCALE"
	scaleChildEnv = "KEYWARD_SCALE_DB" // set in the measuring process
)

// scaleResult is what the measuring process reports.
type scaleResult struct {
	Keys       int     `json:"keys"`
	FileMB     float64 `json:"file_mb"`
	OpenMS     float64 `json:"open_ms"`
	RSSMB      float64 `json:"rss_mb"`
	PageMS     float64 `json:"list_page_ms"`
	NextPageMS float64 `json:"next_page_ms"`
	FilteredMS float64 `json:"filtered_page_ms"`
	ScanMS     float64 `json:"scan_page_ms"`
	GetMS      float64 `json:"get_ms"`
	CreateMS   float64 `json:"create_ms"`
	RSSAfterMB float64 `json:"rss_after_mb"`
}

func TestScale(t *testing.T) {
	if path := os.Getenv(scaleChildEnv); path != "" {
		measureScale(t, path)
		return
	}
	sizes := os.Getenv(scaleEnv)
	if sizes == "" {
		t.Skip("set " + scaleEnv + "=10000,100000,1000000 to measure the store at scale (make bench does)")
	}
	var results []scaleResult
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			t.Fatalf("%s: %q is not a number of keys", scaleEnv, s)
		}
		path := filepath.Join(t.TempDir(), "keyward.db")
		start := time.Now()
		loadKeys(t, path, n)
		t.Logf("%d keys loaded in %v", n, time.Since(start).Round(time.Millisecond))
		cmd := exec.Command(os.Args[0], "-test.run", "^TestScale$", "-test.v")
		cmd.Env = append(os.Environ(), scaleChildEnv+"="+path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("measuring %d keys: %v\n%s", n, err, out)
		}
		var r scaleResult
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if line, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "scale: "); ok {
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatal(err)
				}
			}
		}
		if r.Keys != n {
			t.Fatalf("measuring %d keys reported %+v:\n%s", n, r, out)
		}
		results = append(results, r)
	}
	fmt.Println("| keys | file MB | open ms | RSS MB after open | list page ms | next page ms | filtered page ms | scan page ms | get ms | create ms | RSS MB after |")
	fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range results {
		fmt.Printf("| %d | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.3f | %.2f | %.0f |\n", r.Keys, r.FileMB, r.OpenMS, r.RSSMB,
			r.PageMS, r.NextPageMS, r.FilteredMS, r.ScanMS, r.GetMS, r.CreateMS, r.RSSAfterMB)
	}
	// Issue 17's targets, at the largest size measured.
	last := results[len(results)-1]
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT MET"
	}
	fmt.Printf("| at %d keys: start %.0f ms (target under 5000: %s), resident %.0f MB (target under 500: %s) |\n",
		last.Keys, last.OpenMS, verdict(last.OpenMS < 5000), max(last.RSSMB, last.RSSAfterMB), verdict(max(last.RSSMB, last.RSSAfterMB) < 500))
}

// scaleKey is the i-th key of the load: tenant acme, one of eight members,
// created a second apart.
func scaleKey(i int, at time.Time) store.Key {
	id := fmt.Sprintf("s%011d", i)
	return store.Key{
		ID: id, TenantID: "acme", Name: "key " + strconv.Itoa(i), Prefix: "keyward", Environment: "live", Last4: id[len(id)-4:],
		Scopes: []string{"invoices:read"}, Status: store.KeyActive, Hash: bytes.Repeat([]byte{byte(i)}, 32), PepperVersion: 1,
		CreatedAt: at, CreatedBy: "mem_" + strconv.Itoa(i%8), UpdatedAt: at, RateLimit: store.RateLimit{RequestsPerMinute: 60, Burst: 10},
	}
}

// loadKeys writes n keys in the largest changes a transaction allows,
// without a sync each (the loading is not what is measured).
func loadKeys(t *testing.T, path string, n int) {
	t.Helper()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := Open(path, WithClock(func() time.Time { return base }), withBoltOptions(func(o *bolt.Options) { o.NoSync = true }))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Apply(ctx, store.Change{Tenant: &store.TenantWrite{Tenant: store.Tenant{ID: "acme", Name: "Acme",
		Status: store.TenantActive, CreatedAt: base}}}); err != nil {
		t.Fatal(err)
	}
	const batch = store.MaxChangeItems - 9 // a tenant counter and eight members' counters
	for i := 0; i < n; i += batch {
		var c store.Change
		for j := i; j < min(i+batch, n); j++ {
			c.Keys = append(c.Keys, store.KeyWrite{Key: scaleKey(j, base.Add(time.Duration(j)*time.Second))})
		}
		if err := s.Apply(ctx, c); err != nil {
			t.Fatalf("loading keys %d..: %v", i, err)
		}
	}
	if err := s.db.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// measureScale runs in the measuring process: it opens the database as the
// local stack does and reports one line, "scale: {json}".
func measureScale(t *testing.T, path string) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	median := func(f func() time.Duration) float64 {
		var ds []time.Duration
		for range 9 {
			ds = append(ds, f())
		}
		slices.Sort(ds)
		return ms(ds[len(ds)/2])
	}
	var r scaleResult
	if fi, err := os.Stat(path); err == nil {
		r.FileMB = float64(fi.Size()) / (1 << 20)
	}
	start := time.Now()
	s, err := Open(path, WithOutbox())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r.OpenMS, r.RSSMB = ms(time.Since(start)), rssMB(t)
	ctx := t.Context()
	count, err := s.KeyCount(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	r.Keys = int(count)
	var cursor string
	r.PageMS = median(func() time.Duration {
		start := time.Now()
		p, err := s.ListKeys(ctx, "acme", store.KeyQuery{Limit: store.MaxPageSize})
		if err != nil || len(p.Keys) == 0 {
			t.Fatal(err, len(p.Keys))
		}
		cursor = p.NextCursor
		return time.Since(start)
	})
	r.NextPageMS = median(func() time.Duration {
		start := time.Now()
		if _, err := s.ListKeys(ctx, "acme", store.KeyQuery{Limit: store.MaxPageSize, Cursor: cursor}); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	})
	r.FilteredMS = median(func() time.Duration {
		start := time.Now()
		if _, err := s.ListKeys(ctx, "acme", store.KeyQuery{Limit: store.MaxPageSize, Status: store.KeyRevoked}); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	})
	r.ScanMS = median(func() time.Duration {
		start := time.Now()
		if _, err := s.ScanKeys(ctx, "", store.MaxPageSize); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	})
	i := 0
	r.GetMS = median(func() time.Duration {
		i++
		start := time.Now()
		if _, err := s.GetKey(ctx, scaleKey((i*7919)%r.Keys, time.Time{}).ID); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	})
	at := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	r.CreateMS = median(func() time.Duration {
		i++
		k := scaleKey(r.Keys+i, at.Add(time.Duration(i)*time.Second))
		start := time.Now()
		if err := s.Apply(ctx, store.Change{Keys: []store.KeyWrite{{Key: k}}}); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	})
	r.RSSAfterMB = rssMB(t)
	line, _ := json.Marshal(r)
	fmt.Println("scale: " + string(line))
}

// rssMB is the process's resident memory (Linux's VmRSS), in MB.
func rssMB(t *testing.T) float64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status (Linux only): %v", err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024
		}
	}
	return 0
}
