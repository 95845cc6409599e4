package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/localstack"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/store/embedded"
)

// idempotentWrite is one request sent with an Idempotency-Key.
type idempotentWrite struct {
	path, body string
	rotates    string // the key a rotation replaces; empty for a create
}

// crashLoad is what concurrent writers sent across the stack's crashes.
type crashLoad struct {
	mu      sync.Mutex
	writes  map[string]idempotentWrite // Idempotency-Key → request
	unknown []string                   // requests the last kill left unanswered
}

func (l *crashLoad) add(idem string, w idempotentWrite) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes[idem] = w
}

// TestKillUnderIdempotentLoad: writers create and rotate keys with
// Idempotency-Keys while `keyward dev` is killed (SIGKILL) and restarted,
// again and again; after each restart the requests the kill left
// unanswered are retried, until at least one retry was answered from its
// record (the kill landed between a commit and its answer, the case that
// matters). Then every Idempotency-Key is retried: each answers 201 and
// names the one key its request made (one create, one rotation each,
// whatever the kill interrupted), and after a graceful stop the audit log
// and events.jsonl hold the same entries, one for one.
func TestKillUnderIdempotentLoad(t *testing.T) {
	dir := t.TempDir()
	s := startStack(t, stackOptions{dataDir: dir})
	admin, opToken := s.adminKey(), s.opToken
	load := &crashLoad{writes: map[string]idempotentWrite{}}
	const minCycles, maxCycles, writers = 5, 40, 6
	unanswered, replayed := 0, 0
	for cycle := 0; cycle < minCycles || replayed == 0 && cycle < maxCycles; cycle++ {
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() { writeUntilKilled(ctx, s.base, admin, fmt.Sprintf("c%d-w%d", cycle, w), load) })
		}
		time.Sleep(time.Duration(300+rand.IntN(500)) * time.Millisecond)
		s.kill()
		cancel()
		wg.Wait()
		s = startStack(t, stackOptions{dataDir: dir, opToken: opToken})
		for _, idem := range load.unknown {
			r := retry(s, admin, idem, load.writes[idem])
			m := decode(t, "retry of "+idem, r, http.StatusCreated)
			if sec, ok := m["secret"].(string); ok {
				s.addSecret(sec)
			}
			if r.header.Get("Idempotent-Replayed") == "true" {
				replayed++
			}
		}
		unanswered += len(load.unknown)
		load.unknown = nil
	}
	if replayed == 0 {
		t.Fatalf("in %d kills no request was committed and left unanswered: the test proved nothing", maxCycles)
	}
	t.Logf("%d idempotent writes, %d left unanswered by a kill, %d of those committed before it", len(load.writes), unanswered, replayed)

	// Every Idempotency-Key again: one key per request, whatever happened.
	made := map[string]string{} // Idempotency-Key → the key its request made
	for idem, w := range load.writes {
		r := retry(s, admin, idem, w)
		m := decode(t, "retry of "+idem, r, http.StatusCreated)
		key, _ := m["key"].(map[string]any)
		made[idem], _ = key["id"].(string)
		if sec, ok := m["secret"].(string); ok {
			s.addSecret(sec)
		}
		if w.rotates != "" {
			prev, _ := m["previous_key"].(map[string]any)
			if prev["id"] != w.rotates || key["replaces"] != w.rotates {
				t.Errorf("retry of rotation %s: %s", idem, r)
			}
		}
	}
	keys := listKeys(t, s, admin)
	byID := map[string]map[string]any{}
	replacements := map[string]int{} // key → keys that replace it
	originals := map[string]int{}    // name → keys created (not by rotation)
	for _, k := range keys {
		byID[k["id"].(string)] = k
		if r, ok := k["replaces"].(string); ok {
			replacements[r]++
		} else {
			originals[k["name"].(string)]++
		}
	}
	for idem, w := range load.writes {
		k := byID[made[idem]]
		switch {
		case k == nil:
			t.Errorf("%s: the key %s its retry named is not listed", idem, made[idem])
		case w.rotates == "" && (originals[idem] != 1 || k["name"] != idem):
			t.Errorf("create %s made %d keys", idem, originals[idem])
		case w.rotates != "" && replacements[w.rotates] != 1:
			t.Errorf("rotation %s replaced %s by %d keys", idem, w.rotates, replacements[w.rotates])
		}
	}

	s.stop()
	audit := auditIDs(t, filepath.Join(dir, "keyward.db"))
	events := eventIDs(t, filepath.Join(dir, "events.jsonl"))
	for id := range audit {
		if !events["evt_"+id] {
			t.Errorf("audit entry %s has no event", id)
		}
	}
	for id := range events {
		if !audit[id[len("evt_"):]] {
			t.Errorf("event %s has no audit entry", id)
		}
	}
	if len(audit) < len(load.writes) {
		t.Errorf("%d audit entries for %d writes", len(audit), len(load.writes))
	}
}

// retry sends an idempotent write again.
func retry(s *stack, admin, idem string, w idempotentWrite) response {
	s.t.Helper()
	return s.patiently(request{method: http.MethodPost, path: w.path, token: admin, body: w.body, header: http.Header{"Idempotency-Key": {idem}}})
}

// patiently sends a request, waiting out the key's rate limit.
func (s *stack) patiently(rq request) response {
	s.t.Helper()
	for {
		if r := s.send(rq); r.status != http.StatusTooManyRequests {
			return r
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writeUntilKilled creates keys, and rotates half of them, each request
// with its own Idempotency-Key, until the stack stops answering.
func writeUntilKilled(ctx context.Context, base, admin, name string, load *crashLoad) {
	client := &http.Client{Timeout: requestDeadline}
	post := func(idem string, w idempotentWrite) (map[string]any, bool) {
		load.add(idem, w)
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+w.path, bytes.NewReader([]byte(w.body)))
			req.Header.Set("Authorization", "Bearer "+admin)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", idem)
			resp, err := client.Do(req)
			if err != nil {
				break
			}
			var m map[string]any
			err = json.NewDecoder(resp.Body).Decode(&m)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusTooManyRequests:
				time.Sleep(50 * time.Millisecond)
				continue
			case resp.StatusCode == http.StatusCreated && err == nil:
				return m, true
			}
			break
		}
		load.mu.Lock()
		load.unknown = append(load.unknown, idem)
		load.mu.Unlock()
		return nil, false
	}
	for i := 0; ctx.Err() == nil; i++ {
		idem := fmt.Sprintf("%s-%d", name, i)
		m, ok := post(idem, idempotentWrite{path: "/v1/keys", body: fmt.Sprintf(`{"name":%q,"scopes":["invoices:read"]}`, idem)})
		if !ok {
			return
		}
		if i%2 == 1 {
			continue
		}
		id, _ := m["key"].(map[string]any)["id"].(string)
		if _, ok := post(idem+"-rotate", idempotentWrite{path: "/v1/keys/" + url.PathEscape(id) + "/rotate", body: `{"expire_old_in":3600}`, rotates: id}); !ok {
			return
		}
	}
}

// TestStartErrorsSayWhatFailed: a start that cannot use its data directory
// says why, and only why: another process holds it, or its database is
// damaged.
func TestStartErrorsSayWhatFailed(t *testing.T) {
	dir := t.TempDir()
	s := startStack(t, stackOptions{dataDir: dir})
	db := filepath.Join(dir, "keyward.db")
	if out := failedStart(t, dir); !strings.Contains(out, "open in another process") || !strings.Contains(out, db) {
		t.Errorf("a second keyward on the same directory:\n%s", out)
	}
	s.stop()

	data, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	clear(data[:8192]) // both meta pages
	if err := os.WriteFile(db, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out := failedStart(t, dir)
	if !strings.Contains(out, "damaged database "+db) || !strings.Contains(out, "restore it from a backup") || strings.Contains(out, "another") {
		t.Errorf("a damaged database:\n%s", out)
	}
}

// failedStart runs `keyward dev` on dir, which must exit with an error,
// and returns what it printed.
func failedStart(t *testing.T, dir string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), startDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, keywardBin, "dev", "-addr", freeAddr(t), "-data", dir)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("keyward dev on %s did not fail at once (%v):\n%s", dir, err, out)
	}
	return string(out)
}

// kill ends the process with SIGKILL, as a crash or the OOM killer would.
func (s *stack) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatalf("SIGKILL: %v", err)
	}
	<-s.done
	s.client.CloseIdleConnections()
}

// listKeys is every key the management key sees, all pages.
func listKeys(t *testing.T, s *stack, admin string) []map[string]any {
	t.Helper()
	var out []map[string]any
	path := "/v1/keys?limit=100"
	for {
		m := decode(t, "listing keys", s.patiently(request{method: http.MethodGet, path: path, token: admin}), http.StatusOK)
		data, _ := m["data"].([]any)
		for _, k := range data {
			out = append(out, k.(map[string]any))
		}
		cursor, _ := m["next_cursor"].(string)
		if cursor == "" {
			return out
		}
		path = "/v1/keys?limit=100&cursor=" + url.QueryEscape(cursor)
	}
}

// auditIDs is the id of every audit entry in the database: the demo
// tenant's and the system's.
func auditIDs(t *testing.T, path string) map[string]bool {
	t.Helper()
	st, err := embedded.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ids := map[string]bool{}
	for _, tenant := range []string{localstack.DemoTenant, store.SystemTenant} {
		q := store.AuditQuery{Limit: store.MaxPageSize}
		for {
			page, err := st.ListAudit(t.Context(), tenant, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range page.Entries {
				ids[a.ID] = true
			}
			if q.Cursor = page.NextCursor; q.Cursor == "" {
				break
			}
		}
	}
	return ids
}

// eventIDs is the id of every event in the events file. Publication is at
// least once, so an id may appear twice, but only as the same event.
func eventIDs(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.ID == "" {
			t.Fatalf("events.jsonl line %q: %v", sc.Text(), err)
		}
		if prev, ok := seen[ev.ID]; ok && prev != sc.Text() {
			t.Errorf("event %s published twice, differently:\n%s\n%s", ev.ID, prev, sc.Text())
		}
		seen[ev.ID] = sc.Text()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	ids := make(map[string]bool, len(seen))
	for id := range seen {
		ids[id] = true
	}
	return ids
}
