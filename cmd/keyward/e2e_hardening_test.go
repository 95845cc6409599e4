package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// 13. Expiry ends cached decisions as revocation does: a key that
// expires, a rotation overlap that ends and an expiry moved close are all
// refused within a second of the instant, though each was allowed (and its
// decision cached) just before.
func TestExpiryEndsCachedDecisions(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	admin := s.adminKey()
	body := `{"name":"%s","environment":"live","scopes":["invoices:read"]%s}`
	_, short, _ := s.createKey(admin, fmt.Sprintf(body, "short-lived", `,"expires_in":3`))
	rotID, rotated, _ := s.createKey(admin, fmt.Sprintf(body, "rotated", ""))
	movedID, moved, _ := s.createKey(admin, fmt.Sprintf(body, "moved", ""))
	start := time.Now()
	r := s.post("/v1/keys/"+rotID+"/rotate", admin, `{"expire_old_in":3}`)
	if r.status != http.StatusCreated {
		t.Fatalf("rotate: %s", r)
	}
	s.addSecret(decodeBody(t, r)["secret"].(string))
	if r := s.send(request{method: "PATCH", path: "/v1/keys/" + movedID, token: admin,
		body: `{"expires_at":"` + time.Now().Add(3*time.Second).UTC().Format(time.RFC3339) + `"}`}); r.status != http.StatusOK {
		t.Fatalf("moving the expiry: %s", r)
	}
	// The latest of the three instants, to the second.
	instant := start.Add(4 * time.Second).Truncate(time.Second)
	for name, tok := range map[string]string{"expires_in 3": short, "rotation overlap 3 s": rotated, "expires_at in 3 s": moved} {
		if got := s.get("/invoices", tok); got.status != http.StatusOK {
			t.Fatalf("%s before its expiry: %s", name, got)
		}
	}
	waitUntil(t, instant.Add(time.Second), 10*time.Second)
	for name, tok := range map[string]string{"expires_in 3": short, "rotation overlap 3 s": rotated, "expires_at in 3 s": moved} {
		want401(t, name+", a second after its expiry", s.get("/invoices", tok))
	}
	s.stop()
}

func decodeBody(t *testing.T, r response) map[string]any {
	t.Helper()
	return decode(t, "answer", r, r.status)
}

// 14. The gateway's memory stays bounded under hostile headers: 10,000
// requests carrying one valid key's Authorization header repeated 1 to
// 4,000 times keep the process under 100 MB.
func TestRepeatedHeadersKeepMemoryBounded(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	header := "Authorization: Bearer " + s.demoKey() + "\r\n"
	send := func(k int) {
		conn, err := net.DialTimeout("tcp", s.addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		w := bufio.NewWriter(conn)
		fmt.Fprintf(w, "GET /invoices HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", s.addr)
		for range k {
			_, _ = w.WriteString(header)
		}
		_, _ = w.WriteString("\r\n")
		_ = w.Flush() // the server may refuse and close before all is sent
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return
		}
		resp.Body.Close()
		// The same credential repeated is one credential (the authorizer
		// refuses two different ones); past the head limit it is refused.
		if k == 1 && resp.StatusCode != http.StatusOK || resp.StatusCode >= 500 {
			t.Errorf("%d Authorization headers: %d", k, resp.StatusCode)
		}
	}
	peak := 0
	for i := range 10000 {
		send(i%4000 + 1)
		if i%500 == 0 {
			peak = max(peak, s.rssKiB(t))
		}
	}
	peak = max(peak, s.rssKiB(t))
	t.Logf("peak RSS %d MiB", peak/1024)
	if peak > 100*1024 {
		t.Fatalf("the process reached %d MiB", peak/1024)
	}
	s.stop()
}

// rssKiB reads the process's resident set from /proc.
func (s *stack) rssKiB(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("VmRSS %q", v)
			}
			return kib
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
