package embedded

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/testclock"
	"github.com/keyward/keyward/pkg/store"
)

// populate makes every kind of write. Times are in a non-UTC zone with
// nanoseconds, so that round trips check normalisation and precision.
func populate(t *testing.T, s *Store, clock *testclock.Clock) {
	t.Helper()
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	at := clock.Now().In(time.FixedZone("CET", 3600))
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
	must(s.RehashKey(ctx, "k2", 1, []byte{2, 2}, 2))

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

// state is a store's content, comparable with reflect.DeepEqual.
type state struct {
	Keys    map[string]store.Key
	Tenants map[string]store.Tenant
	Peppers map[int]store.Pepper
	Audit   map[string]map[string]store.AuditEntry
	Idem    map[idemID]store.Idempotency
	Checks  map[string]string
}

func dump(s *Store) state {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := state{
		Keys:    maps.Clone(s.keys),
		Tenants: maps.Clone(s.tenants),
		Peppers: maps.Clone(s.peppers),
		Audit:   make(map[string]map[string]store.AuditEntry),
		Idem:    maps.Clone(s.idem),
		Checks:  maps.Clone(s.checkpoint),
	}
	for tenant, entries := range s.audit {
		if len(entries) > 0 {
			st.Audit[tenant] = maps.Clone(entries)
		}
	}
	return st
}

func wantState(t *testing.T, got, want state) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("state:\n got %+v\nwant %+v", got, want)
	}
}

func TestReopenRestoresEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "keyward.journal")
	clock := newClock()
	s := openFile(t, path, clock.Now)
	populate(t, s, clock)
	before := dump(s)
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

	s = openFile(t, path, clock.Now)
	wantState(t, dump(s), before)
	got, err := s.GetKey(t.Context(), "k1")
	if err != nil || !reflect.DeepEqual(got, k1) {
		t.Fatalf("key after reopen: %v\n got %+v\nwant %+v", err, got, k1)
	}
	if got.CreatedAt.Location() != time.UTC || got.CreatedAt.Nanosecond() != 987654321 {
		t.Fatalf("CreatedAt %v: want UTC with nanoseconds", got.CreatedAt)
	}
	// What the new calls wrote reads back.
	if !reflect.DeepEqual(got.Notices, []string{store.NoticeExpiring7d, store.NoticeExpiring1d}) {
		t.Fatalf("notices after reopen: %q", got.Notices)
	}
	audit, err := s.ListAudit(t.Context(), "acme", store.AuditQuery{KeyID: "k1", Limit: 10})
	if err != nil || len(audit.Entries) != 2 || audit.Entries[1].KeyDisplay != "sk_live_…abcd" {
		t.Fatalf("audit after reopen: %v %+v", err, audit)
	}
	peppers, err := s.ListPeppers(t.Context())
	if err != nil || len(peppers) != 2 || !peppers[0].RetiredAt.Equal(clock.Now().Add(time.Hour)) || !peppers[1].RetiredAt.IsZero() {
		t.Fatalf("peppers after reopen: %v %+v", err, peppers)
	}
	for job, want := range map[string]string{"sweep": "c2", "rotate": ""} {
		if c, err := s.GetCheckpoint(t.Context(), job); err != nil || c != want {
			t.Fatalf("checkpoint %s after reopen: %q %v, want %q", job, c, err, want)
		}
	}
	// The per-tenant index is rebuilt too.
	page, err := s.ListKeys(t.Context(), "acme", store.KeyQuery{Limit: 10})
	if err != nil || len(page.Keys) != 2 || page.Keys[0].ID != "k2" {
		t.Fatalf("ListKeys after reopen: %v %+v", err, page)
	}
	// Memory mode reaches the same state by the same writes.
	clock = newClock()
	mem := NewMemory(WithClock(clock.Now))
	populate(t, mem, clock)
	wantState(t, dump(mem), before)
}

// The journal holds every write as soon as the call returns, before any
// Close: replaying the file as it is rebuilds the live state.
func TestWritesAreJournaledBeforeTheyReturn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyward.journal")
	clock := newClock()
	s := openFile(t, path, clock.Now)
	populate(t, s, clock)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	replica := NewMemory()
	if err := replica.replay(data); err != nil {
		t.Fatalf("replay: %v", err)
	}
	wantState(t, dump(replica), dump(s))
}

const crashEnv = "EMBEDDED_CRASH_JOURNAL"

// TestCrashKeepsAcknowledgedWrites runs populate in a child process that
// then kills itself with SIGKILL, without Close.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		clock := newClock()
		s, err := Open(path, WithClock(clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		populate(t, s, clock)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal ends the process
	}
	path := filepath.Join(t.TempDir(), "keyward.journal")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledgedWrites$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", err, out)
	}

	clock := newClock()
	want := NewMemory(WithClock(clock.Now))
	populate(t, want, clock)
	s := openFile(t, path, clock.Now) // also shows the dead process's lock is gone
	wantState(t, dump(s), dump(want))
}

func TestTornLastLineIsDropped(t *testing.T) {
	for name, torn := range map[string]string{
		"cut mid-line":     `{"keys":[{"id":"k9","tenant_id":"ac`,
		"garbage and eol":  "\x00\x00\x00\x00\n",
		"cut after a line": "\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keyward.journal")
			clock := newClock()
			s := openFile(t, path, clock.Now)
			populate(t, s, clock)
			want := dump(s)
			s.Close()
			appendFile(t, path, torn)

			s = openFile(t, path, clock.Now)
			wantState(t, dump(s), want)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if n := bytes.Count(data, []byte("\n")); n != 1 || !bytes.HasSuffix(data, []byte("}\n")) {
				t.Fatalf("journal after recovery has %d lines, want 1 compacted line:\n%q", n, data)
			}
		})
	}
}

func TestCorruptJournalRefused(t *testing.T) {
	// Each case turns a journal of a snapshot line and one commit into a
	// corrupt one; line is where the corruption is.
	for name, tc := range map[string]struct {
		corrupt func(snapshot, commit string) string
		line    int
	}{
		"invalid json in the middle": {func(s, c string) string { return s + `{"keys":[{"id":` + "\n" + c }, 2},
		"empty line in the middle":   {func(s, c string) string { return s + "\n" + c }, 2},
		"trailing data":              {func(s, c string) string { return s + `{"peppers":[]} {}` + "\n" + c }, 2},
		// A whole line this version cannot decode may come from a newer one.
		"unknown field as last line": {func(s, c string) string { return s + c + `{"widgets":[]}` + "\n" }, 3},
		// A key no reader would recognise is never served.
		"unknown key status": {func(s, c string) string {
			return s + c + `{"keys":[{"id":"k9","tenant_id":"acme","status":"disabled"}]}` + "\n"
		}, 3},
		// Compaction renames the snapshot into place whole: it is never torn.
		"torn snapshot": {func(s, c string) string { return s[:len(s)/2] }, 1},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keyward.journal")
			clock := newClock()
			s := openFile(t, path, clock.Now)
			populate(t, s, clock)
			s.Close()
			s = openFile(t, path, clock.Now)
			if err := s.CreatePepper(t.Context(), store.Pepper{Version: 3}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			snapshot, commit, _ := strings.Cut(string(data), "\n")
			corrupt := []byte(tc.corrupt(snapshot+"\n", commit))
			if err := os.WriteFile(path, corrupt, 0o600); err != nil {
				t.Fatal(err)
			}

			if s, err := Open(path); err == nil {
				s.Close()
				t.Fatal("Open accepted a corrupt journal")
			} else if want := fmt.Sprintf("line %d:", tc.line); !strings.Contains(err.Error(), want) {
				t.Fatalf("error does not locate the corruption at %q: %v", want, err)
			}
			// The evidence is left as it was.
			if data, _ := os.ReadFile(path); !bytes.Equal(data, corrupt) {
				t.Fatal("refused journal was rewritten")
			}
		})
	}
}

func TestSecondOpenRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyward.journal")
	s := openFile(t, path, time.Now)
	// flock locks conflict between two opens even in one process, as they
	// would between two processes.
	if other, err := Open(path); !errors.Is(err, syscall.EWOULDBLOCK) {
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

// A process that opened the journal just before another's compaction
// renamed a new file over it must not settle for a lock on the old file.
func TestLockNoticesReplacedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyward.journal")
	stale, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	if err := os.WriteFile(path+".new", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	if current, err := lockedAt(stale, path); err != nil || current {
		t.Fatalf("lockedAt on a replaced file: %v, %v; want false", current, err)
	}
	// Open moves on to the file the path names now.
	openFile(t, path, time.Now)
}

func TestFailedWriteChangesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyward.journal")
	clock := newClock()
	s := openFile(t, path, clock.Now)
	populate(t, s, clock)
	want := dump(s)
	ctx := t.Context()

	// A read-only descriptor makes every journal write fail.
	readOnly, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	journal := s.journal
	s.journal = readOnly
	key := store.Key{ID: "k3", TenantID: "acme", Status: store.KeyActive}
	if err := s.Apply(ctx, store.Change{Keys: []store.KeyWrite{{Key: key}}}); err == nil {
		t.Fatal("Apply succeeded without its journal write")
	}
	if _, err := s.TouchKey(ctx, "k1", clock.Now().Add(time.Hour), time.Minute); err == nil {
		t.Fatal("TouchKey succeeded without its journal write")
	}
	wantState(t, dump(s), want)

	// Once a write has failed, the journal's end is unknown: nothing more
	// is written even when the file works again.
	s.journal = journal
	readOnly.Close()
	if err := s.CreatePepper(ctx, store.Pepper{Version: 3}); err == nil {
		t.Fatal("write accepted after a journal failure")
	}
	wantState(t, dump(s), want)
	s.Close()
	wantState(t, dump(openFile(t, path, clock.Now)), want)
}

func TestCompactionDropsExpired(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyward.journal")
	clock := newClock()
	s := openFile(t, path, clock.Now)
	populate(t, s, clock)
	want := dump(s)
	s.Close()

	clock.Advance(2 * time.Hour) // a2 and r1 expire after one hour
	for order, a := range want.Audit["acme"] {
		if a.ID == "a2" {
			delete(want.Audit["acme"], order)
		}
	}
	delete(want.Idem, idemID{"acme", "r1"})
	s = openFile(t, path, clock.Now)
	wantState(t, dump(s), want)
	s.Close()
	if data, _ := os.ReadFile(path); bytes.Count(data, []byte("\n")) != 1 {
		t.Fatalf("compacted journal has more than one line:\n%s", data)
	}
	// Compacting a compacted journal changes nothing.
	wantState(t, dump(openFile(t, path, clock.Now)), want)
}

func appendFile(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
}
