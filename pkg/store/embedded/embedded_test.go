package embedded

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/store/conformance"
)

func TestConformanceTemp(t *testing.T) {
	conformance.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		return openTemp(t, now)
	})
}

func TestConformanceFile(t *testing.T) {
	conformance.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		return openFile(t, filepath.Join(t.TempDir(), "keyward.db"), now)
	})
}

// openFile opens a file store that the test closes at its end if the test
// has not closed it already.
func openFile(t testing.TB, path string, now func() time.Time, opts ...Option) *Store {
	t.Helper()
	s, err := Open(path, append([]Option{WithClock(now)}, opts...)...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openTemp(t testing.TB, now func() time.Time, opts ...Option) *Store {
	t.Helper()
	s, err := OpenTemp(append([]Option{WithClock(now)}, opts...)...)
	if err != nil {
		t.Fatalf("OpenTemp: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// eachMode runs fn against a temporary store and a file store.
func eachMode(t *testing.T, fn func(t *testing.T, s *Store, clk *clock.Manual)) {
	t.Run("temp", func(t *testing.T) {
		clk := newClock()
		fn(t, openTemp(t, clk.Now), clk)
	})
	t.Run("file", func(t *testing.T) {
		clk := newClock()
		fn(t, openFile(t, filepath.Join(t.TempDir(), "keyward.db"), clk.Now), clk)
	})
}

func newClock() *clock.Manual {
	return clock.NewManual(time.Date(2026, 3, 1, 12, 0, 0, 987654321, time.UTC))
}

func TestClosedStoreRefusesCalls(t *testing.T) {
	eachMode(t, func(t *testing.T, s *Store, _ *clock.Manual) {
		ctx := t.Context()
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if _, err := s.GetKey(ctx, "k1"); !errors.Is(err, errClosed) {
			t.Fatalf("GetKey after Close: %v", err)
		}
		if err := s.CreatePepper(ctx, store.Pepper{Version: 1}); !errors.Is(err, errClosed) {
			t.Fatalf("CreatePepper after Close: %v", err)
		}
		if err := s.Close(); !errors.Is(err, errClosed) {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func TestCancelledContext(t *testing.T) {
	eachMode(t, func(t *testing.T, s *Store, _ *clock.Manual) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := s.GetTenant(ctx, "acme"); !errors.Is(err, context.Canceled) {
			t.Fatalf("GetTenant: %v", err)
		}
		tn := store.Tenant{ID: "acme", Status: store.TenantActive}
		if err := s.Apply(ctx, store.Change{Tenant: &store.TenantWrite{Tenant: tn}}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Apply: %v", err)
		}
		if _, err := s.GetTenant(t.Context(), "acme"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("cancelled Apply wrote: %v", err)
		}
	})
}

// Stored values must not alias what callers passed in.
func TestWritesAreCopied(t *testing.T) {
	eachMode(t, func(t *testing.T, s *Store, clk *clock.Manual) {
		ctx := t.Context()
		tn := store.Tenant{ID: "acme", Status: store.TenantActive, CreatedAt: clk.Now()}
		k := store.Key{ID: "k1", TenantID: "acme", Scopes: []string{"a"}, Hash: []byte{1}, Metadata: map[string]string{"m": "1"}, Notices: []string{"n"}, Status: store.KeyActive}
		a := store.AuditEntry{TenantID: "acme", ID: "a1", Details: map[string]string{"d": "1"}}
		if err := s.Apply(ctx, store.Change{Tenant: &store.TenantWrite{Tenant: tn}, Keys: []store.KeyWrite{{Key: k}}, Audit: []store.AuditEntry{a}}); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		hash := []byte{2}
		if err := s.RehashKey(ctx, "k1", hash, 1); err != nil {
			t.Fatalf("RehashKey: %v", err)
		}
		k.Scopes[0], k.Metadata["m"], k.Notices[0], a.Details["d"], hash[0] = "x", "x", "x", "x", 9
		got, _ := s.GetKey(ctx, "k1")
		page, _ := s.ListAudit(ctx, "acme", store.AuditQuery{Limit: 1})
		if got.Scopes[0] != "a" || got.Metadata["m"] != "1" || got.Notices[0] != "n" || got.Hash[0] != 2 || page.Entries[0].Details["d"] != "1" {
			t.Fatalf("caller's mutation reached the store: %+v %+v", got, page.Entries)
		}
	})
}

// Scan cursors carry a key id and nothing else, not even another query's
// cursor.
func TestScanCursor(t *testing.T) {
	for _, id := range []string{"k", "kAz09_-", strings.Repeat("z", maxScanID)} {
		if got, err := decodeScanCursor(encodeScanCursor(id)); err != nil || got != id {
			t.Fatalf("round trip of %q: %q %v", id, got, err)
		}
	}
	for _, bad := range []string{
		"",
		"not a cursor!",
		"%%",
		encodeScanCursor("k#1"),
		encodeScanCursor("k/../1"),
		encodeScanCursor(strings.Repeat("z", maxScanID+1)),
		store.EncodeCursor(store.KeyOrder(store.Key{ID: "k1"})),
	} {
		if id, err := decodeScanCursor(bad); !errors.Is(err, store.ErrInvalidCursor) {
			t.Fatalf("cursor %q accepted as %q (%v)", bad, id, err)
		}
	}
}

func TestRetirePepperRefusesZeroTime(t *testing.T) {
	eachMode(t, func(t *testing.T, s *Store, clk *clock.Manual) {
		ctx := t.Context()
		if err := s.CreatePepper(ctx, store.Pepper{Version: 1, CreatedAt: clk.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := s.RetirePepper(ctx, 1, time.Time{}); err == nil {
			t.Fatal("retired at the zero time")
		}
		if err := s.RetirePepper(ctx, 1, clk.Now()); err != nil {
			t.Fatalf("RetirePepper after the refusal: %v", err)
		}
	})
}

// populate makes every kind of write. Times are in a non-UTC zone with
// nanoseconds, so that round trips check normalisation and precision.
func populate(t *testing.T, s *Store, clk *clock.Manual) {
	t.Helper()
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	at := clk.Now().In(time.FixedZone("CET", 3600))
	must(s.Apply(ctx, store.Change{Tenant: &store.TenantWrite{Tenant: store.Tenant{ID: "acme", Name: "Acme", Status: store.TenantActive, CreatedAt: at}}}))
	gone := store.Tenant{ID: "gone", Name: "Gone", Status: store.TenantActive, CreatedAt: at}
	must(s.Apply(ctx, store.Change{Tenant: &store.TenantWrite{Tenant: gone}}))
	gone.Status, gone.OffboardedAt = store.TenantOffboarded, at.Add(time.Hour)
	must(s.Apply(ctx, store.Change{Tenant: &store.TenantWrite{Tenant: gone, ExpectedRevision: 1}}))

	full := store.Key{
		ID: "k1", TenantID: "acme", Name: "full", Description: "every field", Prefix: "sk", Environment: "live",
		Last4: "abcd", Scopes: []string{"invoices:read"}, Status: store.KeyActive, Hash: []byte{1, 1}, PepperVersion: 1,
		CreatedAt: at, CreatedBy: "mem_alice", UpdatedAt: at, NotBefore: at.Add(-time.Minute), ExpiresAt: at.Add(24 * time.Hour),
		AllowedIPs: []string{"203.0.113.0/24"}, AllowedOrigins: []string{"https://app.example.com"},
		RateLimit: store.RateLimit{RequestsPerMinute: 60, Burst: 5}, Replaces: "k0", Metadata: map[string]string{"team": "billing"},
		Notices: []string{store.NoticeExpiring7d},
	}
	minimal := store.Key{ID: "k2", TenantID: "acme", Name: "minimal", Status: store.KeyActive, Hash: []byte{2}, PepperVersion: 1, CreatedAt: at.Add(time.Second)}
	forever := store.AuditEntry{TenantID: "acme", ID: "a1", Time: at, Actor: "mem_alice", Action: "key.created", KeyID: "k1", KeyDisplay: "sk_live_…abcd", RequestID: "req-1", Details: map[string]string{"name": "full"}}
	hour := store.AuditEntry{TenantID: "acme", ID: "a2", Time: at, Actor: "mem_alice", Action: "key.created", KeyID: "k2", ExpiresAt: at.Add(time.Hour)}
	must(s.Apply(ctx, store.Change{Keys: []store.KeyWrite{{Key: full}, {Key: minimal}}, Audit: []store.AuditEntry{forever, hour}}))
	full.Status, full.RevokedAt, full.ReplacedBy = store.KeyRevoked, at.Add(2*time.Minute), "k2"
	full.Notices = append(full.Notices, store.NoticeExpiring1d)
	days := store.AuditEntry{TenantID: "acme", ID: "a3", Time: at.Add(2 * time.Minute), Actor: "mem_bob", Action: "key.revoked", KeyID: "k1", ExpiresAt: at.Add(48 * time.Hour)}
	must(s.Apply(ctx, store.Change{Keys: []store.KeyWrite{{Key: full, ExpectedRevision: 1}}, Audit: []store.AuditEntry{days}}))
	if _, err := s.TouchKey(ctx, "k1", at.Add(time.Minute), time.Minute); err != nil {
		t.Fatal(err)
	}
	must(s.RehashKey(ctx, "k2", []byte{2, 2}, 2))

	must(s.CreatePepper(ctx, store.Pepper{Version: 1, Ciphertext: []byte("c1"), KeyID: "local", CreatedAt: at}))
	must(s.RetirePepper(ctx, 1, at.Add(time.Hour)))
	must(s.CreatePepper(ctx, store.Pepper{Version: 2, Ciphertext: []byte("c2"), KeyID: "local", CreatedAt: at.Add(time.Hour)}))

	done := store.Idempotency{TenantID: "acme", Key: "r1", RequestHash: "h1", CreatedAt: at, ExpiresAt: at.Add(time.Hour)}
	must(s.PutIdempotency(ctx, done))
	done.StatusCode, done.Body = 201, []byte(`{"id":"k1"}`)
	must(s.CompleteIdempotency(ctx, done))
	must(s.PutIdempotency(ctx, store.Idempotency{TenantID: "acme", Key: "r2", RequestHash: "h2", CreatedAt: at, ExpiresAt: at.Add(48 * time.Hour)}))
	r3 := store.Idempotency{TenantID: "acme", Key: "r3", RequestHash: "h3", CreatedAt: at, ExpiresAt: at.Add(48 * time.Hour)}
	must(s.PutIdempotency(ctx, r3))
	must(s.DeleteIdempotency(ctx, r3))

	must(s.PutCheckpoint(ctx, "sweep", "c1"))
	must(s.PutCheckpoint(ctx, "sweep", "c2"))
	must(s.PutCheckpoint(ctx, "rotate", "r1"))
	must(s.PutCheckpoint(ctx, "rotate", ""))
}

// state is every bucket's content as stored, values by key: two stores
// with the same state answer every query alike.
type state map[string]map[string]string

func dump(t *testing.T, s *Store) state {
	t.Helper()
	st := state{}
	err := s.view(t.Context(), func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			m := map[string]string{}
			if err := tx.Bucket(b).ForEach(func(k, v []byte) error { m[string(k)] = string(v); return nil }); err != nil {
				return err
			}
			st[string(b)] = m
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return st
}

func wantState(t *testing.T, got, want state) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		for b := range want {
			if !reflect.DeepEqual(got[b], want[b]) {
				t.Fatalf("bucket %s:\n got %q\nwant %q", b, got[b], want[b])
			}
		}
		t.Fatalf("state differs")
	}
}

func TestReopenRestoresEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "keyward.db")
	clk := newClock()
	s := openFile(t, path, clk.Now)
	populate(t, s, clk)
	before := dump(t, s)
	k1, err := s.GetKey(t.Context(), "k1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700 | os.ModeDir} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Fatalf("%s: mode %v (%v), want %v", p, fi.Mode(), err, want)
		}
	}

	s = openFile(t, path, clk.Now)
	wantState(t, dump(t, s), before)
	got, err := s.GetKey(t.Context(), "k1")
	if err != nil || !reflect.DeepEqual(got, k1) {
		t.Fatalf("key after reopen: %v\n got %+v\nwant %+v", err, got, k1)
	}
	if got.CreatedAt.Location() != time.UTC || got.CreatedAt.Nanosecond() != 987654321 {
		t.Fatalf("CreatedAt %v: want UTC with nanoseconds", got.CreatedAt)
	}
	if !reflect.DeepEqual(got.Notices, []string{store.NoticeExpiring7d, store.NoticeExpiring1d}) {
		t.Fatalf("notices after reopen: %q", got.Notices)
	}
	audit, err := s.ListAudit(t.Context(), "acme", store.AuditQuery{KeyID: "k1", Limit: 10})
	if err != nil || len(audit.Entries) != 2 || audit.Entries[1].KeyDisplay != "sk_live_…abcd" {
		t.Fatalf("audit after reopen: %v %+v", err, audit)
	}
	peppers, err := s.ListPeppers(t.Context())
	if err != nil || len(peppers) != 2 || !peppers[0].RetiredAt.Equal(clk.Now().Add(time.Hour)) || !peppers[1].RetiredAt.IsZero() {
		t.Fatalf("peppers after reopen: %v %+v", err, peppers)
	}
	for job, want := range map[string]string{"sweep": "c2", "rotate": ""} {
		if c, err := s.GetCheckpoint(t.Context(), job); err != nil || c != want {
			t.Fatalf("checkpoint %s after reopen: %q %v, want %q", job, c, err, want)
		}
	}
	page, err := s.ListKeys(t.Context(), "acme", store.KeyQuery{Limit: 10})
	if err != nil || len(page.Keys) != 2 || page.Keys[0].ID != "k2" {
		t.Fatalf("ListKeys after reopen: %v %+v", err, page)
	}
	// A temporary store reaches the same state by the same writes.
	clk = newClock()
	temp := openTemp(t, clk.Now)
	populate(t, temp, clk)
	wantState(t, dump(t, temp), before)
}

const crashEnv = "EMBEDDED_CRASH_DB"

// TestCrashKeepsAcknowledgedWrites runs populate in a child process that
// then kills itself with SIGKILL, without Close.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		clk := newClock()
		s, err := Open(path, WithClock(clk.Now))
		if err != nil {
			t.Fatal(err)
		}
		populate(t, s, clk)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal ends the process
	}
	path := filepath.Join(t.TempDir(), "keyward.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledgedWrites$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", err, out)
	}

	clk := newClock()
	want := openTemp(t, clk.Now)
	populate(t, want, clk)
	s := openFile(t, path, clk.Now) // also shows the dead process's lock is gone
	wantState(t, dump(t, s), dump(t, want))
}

const writerEnv = "EMBEDDED_WRITER_DB"

// TestKillDuringWritesKeepsEveryAcknowledged kills (SIGKILL) a child
// process while four goroutines in it write, at a moment it does not
// choose: every write it acknowledged (printed after Apply returned) is in
// the database when it opens again, three times over.
func TestKillDuringWritesKeepsEveryAcknowledged(t *testing.T) {
	if path := os.Getenv(writerEnv); path != "" {
		s, err := Open(path)
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(1)
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					job := fmt.Sprintf("%d-w%d-%d", os.Getpid(), g, i)
					if err := s.PutCheckpoint(context.Background(), job, "done"); err != nil {
						fmt.Println("write:", err)
						os.Exit(1)
					}
					mu.Lock()
					fmt.Println("ack", job)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	path := filepath.Join(t.TempDir(), "keyward.db")
	acked := map[string]bool{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringWritesKeepsEveryAcknowledged$")
		cmd.Env = append(os.Environ(), writerEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		n := 0
		for sc.Scan() {
			job, ok := strings.CutPrefix(sc.Text(), "ack ")
			if !ok {
				t.Fatalf("round %d: child says %q", round, sc.Text())
			}
			acked[job] = true
			if n++; n == 150+50*round {
				_ = cmd.Process.Kill() // in the middle of the next writes
			}
		}
		_ = cmd.Wait()
		s, err := Open(path)
		if err != nil {
			t.Fatalf("round %d: reopening after the kill: %v", round, err)
		}
		for job := range acked {
			if c, err := s.GetCheckpoint(t.Context(), job); err != nil || c != "done" {
				s.Close()
				t.Fatalf("round %d: acknowledged write %s lost: %q %v", round, job, c, err)
			}
		}
		s.Close()
	}
}

// readAll reads everything the store holds through its API, stopping at
// the first error.
func readAll(ctx context.Context, s *Store) error {
	for _, id := range []string{"acme", "gone"} {
		if _, err := s.GetTenant(ctx, id); err != nil {
			return err
		}
		if _, err := s.ListKeys(ctx, id, store.KeyQuery{Limit: 100}); err != nil {
			return err
		}
		if _, err := s.ListAudit(ctx, id, store.AuditQuery{Limit: 100}); err != nil {
			return err
		}
	}
	for _, id := range []string{"k1", "k2"} {
		if _, err := s.GetKey(ctx, id); err != nil {
			return err
		}
	}
	if _, err := s.ScanKeys(ctx, "", 100); err != nil {
		return err
	}
	if _, err := s.ListExpiring(ctx, store.ExpiryQuery{Before: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), Limit: 100}); err != nil {
		return err
	}
	if _, err := s.ListPeppers(ctx); err != nil {
		return err
	}
	if _, err := s.GetIdempotency(ctx, "acme", "r2"); err != nil {
		return err
	}
	_, err := s.GetCheckpoint(ctx, "sweep")
	return err
}

// closedFile is a database file in dir at path, populated and closed:
// its state as read through the store, and its bytes.
func closedFile(t *testing.T) (dir, path string, clk *clock.Manual, want state, raw []byte) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "keyward.db")
	clk = newClock()
	s := openFile(t, path, clk.Now)
	populate(t, s, clk)
	want = dump(t, s)
	s.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return dir, path, clk, want, raw
}

// TestDamageIsDetectedNeverServed damages a database file as disks and
// crashes do (a truncated file, a zeroed tail, flipped bytes anywhere) and
// opens it: every outcome is an error that says the file is damaged, or a
// store that reads back exactly what was written; never a changed key,
// never a panic.
func TestDamageIsDetectedNeverServed(t *testing.T) {
	dir, path, clk, want, good := closedFile(t)
	clean, err := os.ReadFile(path + cleanSuffix)
	if err != nil {
		t.Fatalf("no record of the clean close: %v", err)
	}
	// bbolt's two meta pages are pages 0 and 1; the one with the higher
	// transaction id (at offset 64 in the page) is the newest.
	newest := 0
	if binary.LittleEndian.Uint64(good[4096+64:]) > binary.LittleEndian.Uint64(good[64:]) {
		newest = 4096
	}
	damages := map[string]func([]byte) []byte{
		"truncated to half":          func(b []byte) []byte { return b[:len(b)/2] },
		"truncated by 737":           func(b []byte) []byte { return b[:len(b)-737] },
		"truncated to 1 KiB":         func(b []byte) []byte { return b[:1024] },
		"zeroed tail":                func(b []byte) []byte { clear(b[len(b)-4096:]); return b },
		"zeroed first page":          func(b []byte) []byte { clear(b[:4096]); return b },
		"zeroed second page":         func(b []byte) []byte { clear(b[4096:8192]); return b },
		"zeroed both metas":          func(b []byte) []byte { clear(b[:8192]); return b },
		"zeroed newest meta":         func(b []byte) []byte { clear(b[newest : newest+4096]); return b },
		"flipped newest meta's txid": func(b []byte) []byte { b[newest+64] ^= 1; return b },
		"flipped newest meta's sum":  func(b []byte) []byte { b[newest+16+56] ^= 0x80; return b },
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 60 {
		at, bit := rng.IntN(len(good)), byte(1)<<rng.IntN(8)
		damages[fmt.Sprintf("bit %d of byte %d", bit, at)] = func(b []byte) []byte { b[at] ^= bit; return b }
	}
	mustRefuse := []string{"truncated to 1 KiB", "zeroed both metas", "zeroed newest meta",
		"flipped newest meta's txid", "flipped newest meta's sum"}
	served, refused := 0, 0
	for name, damage := range damages {
		damaged := damage(bytes.Clone(good))
		p := filepath.Join(dir, "damaged.db")
		if err := os.WriteFile(p, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p+cleanSuffix, clean, 0o600); err != nil {
			t.Fatal(err)
		}
		d, err := Open(p, WithClock(clk.Now))
		if err != nil {
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), p) {
				t.Errorf("%s: Open: %v, want ErrDamaged naming the file", name, err)
			}
			refused++
			continue
		}
		err = readAll(t.Context(), d)
		if err == nil && slices.Contains(mustRefuse, name) {
			t.Errorf("%s: served", name)
		}
		if err == nil {
			if got := dump(t, d); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: served a changed database", name)
			}
			served++
		} else if !errors.Is(err, ErrDamaged) {
			t.Errorf("%s: reading: %v, want ErrDamaged", name, err)
		} else {
			refused++
		}
		d.Close()
	}
	t.Logf("%d damaged files refused, %d read back whole (damage in unused space)", refused, served)
}

func TestSecondOpenRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyward.db")
	s := openFile(t, path, time.Now)
	if other, err := Open(path); err == nil || !strings.Contains(err.Error(), "open in another process") {
		if err == nil {
			other.Close()
		}
		t.Fatalf("second Open: %v, want it refused as locked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	openFile(t, path, time.Now)
}

func TestNewerFormatRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyward.db")
	s := openFile(t, path, time.Now)
	if err := s.update(t.Context(), func(tx *bolt.Tx) error { return s.put(tx, bMeta, metaFormat, formatVersion+1) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "newer keyward") {
		t.Fatalf("Open of a newer format: %v", err)
	}
}

// TestFailedWriteChangesNothing: a write the disk refuses (a full disk,
// here the file's size limit) changes nothing, and the store goes on.
func TestFailedWriteChangesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyward.db")
	clk := newClock()
	s := openFile(t, path, clk.Now)
	populate(t, s, clk)
	s.Close()
	s = openFile(t, path, clk.Now, withBoltOptions(func(o *bolt.Options) { o.MaxSize, o.InitialMmapSize = 256<<10, 0 }))
	want := dump(t, s)
	big := store.Key{ID: "k3", TenantID: "acme", Status: store.KeyActive, Description: strings.Repeat("x", 1<<20)}
	if err := s.Apply(t.Context(), store.Change{Keys: []store.KeyWrite{{Key: big}}}); err == nil {
		t.Fatal("a write past the disk's room succeeded")
	}
	wantState(t, dump(t, s), want)
	if err := s.PutCheckpoint(t.Context(), "small", "fits"); err != nil {
		t.Fatalf("a small write after the failure: %v", err)
	}
}

func TestDropExpired(t *testing.T) {
	eachMode(t, func(t *testing.T, s *Store, clk *clock.Manual) {
		populate(t, s, clk)
		ctx := t.Context()
		if n, err := s.DropExpired(ctx); err != nil || n != 0 {
			t.Fatalf("DropExpired before anything expired: %d %v", n, err)
		}
		clk.Advance(2 * time.Hour) // a2 and r1 expire after one hour
		if n, err := s.DropExpired(ctx); err != nil || n != 2 {
			t.Fatalf("DropExpired: %d %v, want 2", n, err)
		}
		st := dump(t, s)
		for b, k := range map[string]string{"audit": "a2", "idempotency": "r1", "audit_keys": "k2"} {
			for key := range st[b] {
				if strings.Contains(key, k) {
					t.Errorf("%s still holds %q", b, key)
				}
			}
		}
		if len(st["ttl"]) != 2 { // a3 and r2
			t.Errorf("TTL index %q", st["ttl"])
		}
		// What has not expired reads as before.
		if err := readAll(ctx, s); err != nil {
			t.Fatalf("reading after DropExpired: %v", err)
		}
	})
}

func TestOutbox(t *testing.T) {
	clk := newClock()
	s := openTemp(t, clk.Now, WithOutbox())
	ctx := t.Context()
	entry := func(id string) store.AuditEntry {
		return store.AuditEntry{TenantID: "acme", ID: id, Time: clk.Now(), Action: "key.created"}
	}
	if err := s.Apply(ctx, store.Change{Audit: []store.AuditEntry{entry("a1"), entry("a2")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Committed():
	default:
		t.Fatal("a commit with audit entries signalled nothing")
	}
	// A refused change adds nothing.
	if err := s.Apply(ctx, store.Change{Audit: []store.AuditEntry{entry("a3"), entry("a1")}}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, store.Change{Audit: []store.AuditEntry{entry("a4")}}); err != nil {
		t.Fatal(err)
	}
	out, err := s.Outbox(ctx, 10)
	if err != nil || len(out) != 3 || out[0].Entry.ID != "a1" || out[1].Entry.ID != "a2" || out[2].Entry.ID != "a4" {
		t.Fatalf("outbox %v %+v", err, out)
	}
	if err := s.Published(ctx, []uint64{out[0].Seq, out[1].Seq}); err != nil {
		t.Fatal(err)
	}
	if out, err = s.Outbox(ctx, 10); err != nil || len(out) != 1 || out[0].Entry.ID != "a4" {
		t.Fatalf("outbox after publishing: %v %+v", err, out)
	}
	// Without WithOutbox nothing is kept.
	plain := openTemp(t, clk.Now)
	if err := plain.Apply(ctx, store.Change{Audit: []store.AuditEntry{entry("a1")}}); err != nil {
		t.Fatal(err)
	}
	if out, err := plain.Outbox(ctx, 10); err != nil || len(out) != 0 {
		t.Fatalf("outbox of a store without one: %v %+v", err, out)
	}
}

func TestUsagePlans(t *testing.T) {
	eachMode(t, func(t *testing.T, s *Store, _ *clock.Manual) {
		ctx := t.Context()
		for id, tier := range map[string]string{"a": "default", "b": "high"} {
			if err := s.SetUsagePlan(ctx, id, tier); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.SetUsagePlan(ctx, "a", "standard"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteUsagePlan(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		if plans, err := s.UsagePlans(ctx); err != nil || !reflect.DeepEqual(plans, map[string]string{"a": "standard"}) {
			t.Fatalf("plans %v %v", plans, err)
		}
	})
}

// TestReleaseClaims: unfinished Idempotency-Key records go, with their
// TTL index entries; completed ones stay.
func TestReleaseClaims(t *testing.T) {
	clk := newClock()
	s := openTemp(t, clk.Now)
	ctx := t.Context()
	rec := func(key string) store.Idempotency {
		return store.Idempotency{TenantID: "acme:live", Key: key, RequestHash: "h", CreatedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour)}
	}
	for _, k := range []string{"running", "done"} {
		if err := s.PutIdempotency(ctx, rec(k)); err != nil {
			t.Fatal(err)
		}
	}
	done := rec("done")
	done.Done, done.StatusCode, done.Body = true, 201, []byte("{}")
	if err := s.CompleteIdempotency(ctx, done); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ReleaseClaims(ctx); err != nil || n != 1 {
		t.Fatalf("ReleaseClaims: %d %v, want 1", n, err)
	}
	if _, err := s.GetIdempotency(ctx, "acme:live", "running"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the unfinished claim: %v", err)
	}
	if r, err := s.GetIdempotency(ctx, "acme:live", "done"); err != nil || !r.Done {
		t.Fatalf("the completed record: %+v %v", r, err)
	}
	if st := dump(t, s); len(st["ttl"]) != 1 {
		t.Fatalf("TTL index %q", st["ttl"])
	}
	if err := s.PutIdempotency(ctx, rec("running")); err != nil {
		t.Fatalf("claiming the released key again: %v", err)
	}
}

// TestImportJournal: a data directory of an earlier version, whose store
// was a JSON-lines journal, is carried over whole.
func TestImportJournal(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "keyward.journal")
	lines := []string{
		`{"tenants":[{"id":"acme","name":"Acme","status":"active","created_at":"2026-03-01T12:00:00Z","key_count":1,"revision":1}],` +
			`"keys":[{"id":"k1","tenant_id":"acme","name":"n","prefix":"sk","environment":"live","last4":"abcd","scopes":["a:read"],"status":"active","hash":"AQI=","pepper_version":1,"created_at":"2026-03-01T12:00:00Z","updated_at":"2026-03-01T12:00:00Z","rate_limit":{"requests_per_minute":60},"revision":1}],` +
			`"audit":[{"tenant_id":"acme","id":"a1","time":"2026-03-01T12:00:00Z","actor":"op","action":"key.created","key_id":"k1"}],` +
			`"peppers":[{"version":1,"ciphertext":"Yw==","key_id":"local","created_at":"2026-03-01T12:00:00Z"}],` +
			`"idempotency":[{"tenant_id":"acme","key":"r1","request_hash":"h","done":true,"status_code":201,"body":"e30=","created_at":"2026-03-01T12:00:00Z","expires_at":"2026-03-02T12:00:00Z"}],` +
			`"checkpoints":{"sweep":"c1"}}`,
		`{"keys":[{"id":"k1","tenant_id":"acme","name":"renamed","prefix":"sk","environment":"live","last4":"abcd","scopes":["a:read"],"status":"revoked","hash":"AQI=","pepper_version":1,"created_at":"2026-03-01T12:00:00Z","updated_at":"2026-03-01T12:01:00Z","rate_limit":{"requests_per_minute":60},"revision":2}]}`,
		`{"keys":[{"id":"k9","tenant_id":"ac`, // torn: never acknowledged
	}
	if err := os.WriteFile(journal, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	s := openFile(t, filepath.Join(dir, "keyward.db"), clk.Now, WithOutbox())
	published := func(id string) bool { return id != "a1" }
	if err := ImportJournal(t.Context(), journal, s, published); err != nil {
		t.Fatalf("ImportJournal: %v", err)
	}
	// What that version wrote but never published is published now.
	if out, err := s.Outbox(t.Context(), 10); err != nil || len(out) != 1 || out[0].Entry.ID != "a1" {
		t.Fatalf("outbox after the import: %v %+v", err, out)
	}
	k, err := s.GetKey(t.Context(), "k1")
	if err != nil || k.Name != "renamed" || k.Status != store.KeyRevoked || k.Revision != 2 {
		t.Fatalf("imported key: %v %+v", err, k)
	}
	if _, err := s.GetKey(t.Context(), "k9"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the torn line was imported: %v", err)
	}
	if page, err := s.ListAudit(t.Context(), "acme", store.AuditQuery{KeyID: "k1", Limit: 10}); err != nil || len(page.Entries) != 1 {
		t.Fatalf("imported audit: %v %+v", err, page)
	}
	if r, err := s.GetIdempotency(t.Context(), "acme", "r1"); err != nil || !r.Done {
		t.Fatalf("imported record: %v %+v", err, r)
	}
	if c, _ := s.GetCheckpoint(t.Context(), "sweep"); c != "c1" {
		t.Fatalf("imported checkpoint %q", c)
	}
	// Importing again (a start that died before setting the journal
	// aside) changes nothing.
	before := dump(t, s)
	if err := ImportJournal(t.Context(), journal, s, published); err != nil {
		t.Fatalf("a second import: %v", err)
	}
	wantState(t, dump(t, s), before)
	// A database with keys of its own is never imported into.
	other := openTemp(t, clk.Now)
	populate(t, other, clk)
	if err := ImportJournal(t.Context(), journal, other, published); err == nil || !strings.Contains(err.Error(), "holds keys already") {
		t.Fatalf("an import into a database in use: %v", err)
	}
	// A line in the middle that does not decode is refused whole.
	lines[1] = `{"keys":[{"id":`
	if err := os.WriteFile(journal, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := openTemp(t, clk.Now)
	if err := ImportJournal(t.Context(), journal, fresh, published); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("import of a corrupt journal: %v", err)
	}
	if got := dump(t, fresh)["keys"]; len(got) != 0 {
		t.Fatal("a refused import wrote keys")
	}
}

// TestCorruptKeyIsSkippedInListings: a key whose status no reader
// recognises (the file itself intact) is left out of listings and named,
// and GetKey refuses it.
func TestCorruptKeyIsSkippedInListings(t *testing.T) {
	eachMode(t, func(t *testing.T, s *Store, clk *clock.Manual) {
		populate(t, s, clk)
		ctx := t.Context()
		err := s.update(ctx, func(tx *bolt.Tx) error {
			k, _, err := s.getKey(tx, "k2", nil)
			if err != nil {
				return err
			}
			k.Status = "disabled"
			return s.put(tx, bKeys, []byte("k2"), k)
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetKey(ctx, "k2"); !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("GetKey of a corrupt key: %v", err)
		}
		page, err := s.ListKeys(ctx, "acme", store.KeyQuery{Limit: 10})
		if err != nil || len(page.Keys) != 1 || page.Keys[0].ID != "k1" || len(page.Skipped) != 1 || page.Skipped[0] != "k2" {
			t.Fatalf("listing: %v %+v", err, page)
		}
		if scan, err := s.ScanKeys(ctx, "", 10); err != nil || len(scan.Keys) != 1 || len(scan.Skipped) != 1 {
			t.Fatalf("scan: %v %+v", err, scan)
		}
		// One key a page: the damaged key is reported once, whichever page
		// boundary it falls next to.
		conformance.SkippedOnce(t, s, "acme")
	})
}

// TestDamagedPageTreeIsRefused damages the page tree where bbolt itself
// would fault on its memory map, panic, or hand its consistency check's
// goroutine a page it cannot read: a bucket's root page past the end of
// the file, or on the freelist page, or on its parent (a cycle). Each is
// refused as damage, with no goroutine left behind and the file released.
func TestDamagedPageTreeIsRefused(t *testing.T) {
	dir, _, clk, _, good := closedFile(t)
	le := binary.LittleEndian
	ps := os.Getpagesize()
	newest := 0
	if le.Uint64(good[ps+64:]) > le.Uint64(good[64:]) {
		newest = ps
	}
	root, freelist := le.Uint64(good[newest+32:]), le.Uint64(good[newest+48:])
	// setBucketRoot points the named bucket (a leaf element of the root
	// bucket's page) at page id.
	setBucketRoot := func(b []byte, name string, id uint64) {
		pg := b[int(root)*ps : int(root+1)*ps]
		for i := range int(le.Uint16(pg[10:])) {
			e := 16 + i*16
			pos, ks := e+int(le.Uint32(pg[e+4:])), int(le.Uint32(pg[e+8:]))
			if string(pg[pos:pos+ks]) == name {
				le.PutUint64(pg[pos+ks:], id)
				return
			}
		}
		t.Fatalf("no bucket %s on the root page", name)
	}
	before := runtime.NumGoroutine()
	for name, damage := range map[string]func([]byte){
		"root past the end of the file": func(b []byte) { setBucketRoot(b, "checkpoints", 100_000) },
		"root on the freelist":          func(b []byte) { setBucketRoot(b, "peppers", freelist) },
		"root on its parent":            func(b []byte) { setBucketRoot(b, "tenants", root) },
	} {
		damaged := bytes.Clone(good)
		damage(damaged)
		p := filepath.Join(dir, "damaged.db")
		if err := os.WriteFile(p, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second time shows the first released the file
			if d, err := Open(p, WithClock(clk.Now)); !errors.Is(err, ErrDamaged) {
				if err == nil {
					d.Close()
				}
				t.Fatalf("%s: Open: %v, want ErrDamaged", name, err)
			}
		}
	}
	time.Sleep(100 * time.Millisecond) // let finished goroutines exit
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines left behind", n-before)
	}
}

// TestKeyCacheIsNeverStale: a key read again comes from the cache only
// while its stored bytes are the ones decoded: a change, or damage to the
// record, is read afresh (and the damage refused); every read is a copy of
// its own.
func TestKeyCacheIsNeverStale(t *testing.T) {
	eachMode(t, func(t *testing.T, s *Store, clk *clock.Manual) {
		populate(t, s, clk)
		ctx := t.Context()
		first, err := s.GetKey(ctx, "k1")
		if err != nil {
			t.Fatal(err)
		}
		first.Scopes[0], first.Metadata["team"] = "tampered:read", "tampered"
		again, err := s.GetKey(ctx, "k1")
		if err != nil || again.Scopes[0] == "tampered:read" || again.Metadata["team"] == "tampered" {
			t.Fatalf("a read shares its slices or map with the cache: %v %+v", err, again)
		}
		changed := again
		changed.Name, changed.UpdatedAt = "renamed", clk.Now()
		if err := s.Apply(ctx, store.Change{Keys: []store.KeyWrite{{Key: changed, ExpectedRevision: again.Revision}}}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetKey(ctx, "k1"); err != nil || got.Name != "renamed" || got.Revision != again.Revision+1 {
			t.Fatalf("after a change: %v %+v", err, got)
		}
		// A read with no write since the last one is served without a
		// transaction (the store is the file's only writer)...
		if _, err := s.GetKey(ctx, "k1"); err != nil {
			t.Fatal(err)
		}
		// ...and damage to the record's JSON, written in a transaction
		// as a write would be, makes the bytes differ from the cached
		// ones, so the checksum is checked again.
		err = s.update(ctx, func(tx *bolt.Tx) error {
			b := tx.Bucket(bKeys)
			raw := bytes.Clone(b.Get([]byte("k1")))
			raw[len(raw)-2] ^= 0x20
			return b.Put([]byte("k1"), raw)
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetKey(ctx, "k1"); !errors.Is(err, ErrDamaged) {
			t.Fatalf("a damaged record after a cached read: %v", err)
		}
	})
}

// TestAuditListingExaminesBoundedly: an audit listing looks at no more
// than store.MaxExamined entries per call, as the DynamoDB backend's does:
// past more of another environment's, a short page with a cursor, and the
// pages that follow find every match.
func TestAuditListingExaminesBoundedly(t *testing.T) {
	eachMode(t, func(t *testing.T, s *Store, clk *clock.Manual) {
		populate(t, s, clk)
		ctx := t.Context()
		count := func() (n, pages int) {
			q := store.AuditQuery{Environment: "test", Limit: 10}
			for ; pages < 20; pages++ {
				page, err := s.ListAudit(ctx, "acme", q)
				if err != nil {
					t.Fatal(err)
				}
				n += len(page.Entries)
				if page.NextCursor == "" {
					return n, pages + 1
				}
				q.Cursor = page.NextCursor
			}
			t.Fatal("pagination does not end")
			return 0, 0
		}
		want, _ := count()
		var entries []store.AuditEntry
		for i := range store.MaxExamined + 50 {
			e := store.AuditEntry{TenantID: "acme", ID: fmt.Sprintf("z%05d", i), Time: clk.Now().Add(time.Duration(i+1) * time.Second),
				Action: "key.updated", KeyID: "k1", Environment: "live"}
			entries = append(entries, e)
		}
		for batch := range slices.Chunk(entries, store.MaxChangeItems) {
			if err := s.Apply(ctx, store.Change{Audit: batch}); err != nil {
				t.Fatal(err)
			}
		}
		first, err := s.ListAudit(ctx, "acme", store.AuditQuery{Environment: "test", Limit: 10})
		if err != nil || len(first.Entries) != 0 || first.NextCursor == "" {
			t.Fatalf("the first page, past %d entries of another environment: %v %d entries, cursor %q",
				store.MaxExamined, err, len(first.Entries), first.NextCursor)
		}
		if got, pages := count(); got != want || pages < 2 {
			t.Fatalf("%d matching entries in %d pages, want the %d there were before", got, pages, want)
		}
	})
}
