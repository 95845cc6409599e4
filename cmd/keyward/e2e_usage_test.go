package main

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/config"
)

// TestUsageAndAlerts: a key's traffic shows in its usage within a minute
// of the minute it came in; after a (here empty) learning period from
// 127.0.0.1, a request from 127.0.0.2 emits key.new_network (client
// networks are single addresses in this gateway file), and a key replaced
// by rotation and still used shortly before its overlap ends emits
// key.old_key_in_use, both to events.jsonl with the tenant's contact.
func TestUsageAndAlerts(t *testing.T) {
	t.Parallel()
	gw, err := config.LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	gw.Alerts = config.DefaultAlerts
	gw.Alerts.LearningHours, gw.Alerts.NetworkBitsV4 = 0, 32
	gwFile := filepath.Join(t.TempDir(), "gateway.json")
	raw, _ := json.Marshal(gw)
	if err := os.WriteFile(gwFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, stackOptions{env: []string{"KEYWARD_GATEWAY_FILE=" + gwFile}})
	id, secret, _ := s.createKey(s.adminKey(), `{"name":"watched","scopes":["invoices:read"],"contact":"payments@example.com"}`)

	sent := time.Now()
	wantEcho(t, "from 127.0.0.1", s.get("/invoices", secret), "GET", "/invoices", nil, caller("demo", id, "live", "invoices:read"))
	// The minute is written once it has ended (and the local stack's
	// flush has run): wait for it, within a generous bound.
	minuteEnd := sent.Truncate(time.Minute).Add(time.Minute)
	for {
		u := decode(t, "usage", s.get("/v1/keys/"+id+"/usage?granularity=minute", s.adminKey()), http.StatusOK)
		if req, _ := u["requests"].(map[string]any); req != nil && req["2xx"] == float64(1) {
			if late := time.Since(minuteEnd); late > 30*time.Second {
				t.Errorf("the usage showed %v after its minute ended", late)
			}
			break
		}
		if time.Since(minuteEnd) > 90*time.Second {
			t.Fatalf("no usage 90 s after the minute ended: %v", u)
		}
		time.Sleep(500 * time.Millisecond)
	}
	r := decode(t, "requests", s.get("/v1/keys/"+id+"/requests", s.adminKey()), http.StatusOK)
	if data, _ := r["data"].([]any); len(data) != 1 || data[0].(map[string]any)["route"] != "/invoices" || data[0].(map[string]any)["source_ip"] != "127.0.0.1" {
		t.Fatalf("recent requests %v", r)
	}

	// From another address, then the key replaced and still used.
	other := &http.Client{Timeout: requestDeadline, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	req, _ := http.NewRequest(http.MethodGet, s.base+"/invoices", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := other.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("from 127.0.0.2: %v %v", err, resp)
	}
	resp.Body.Close()
	decode(t, "rotate", s.post("/v1/keys/"+id+"/rotate", s.adminKey(), `{"expire_old_in":300}`), http.StatusCreated)
	wantEcho(t, "the old key in its overlap", s.get("/invoices", secret), "GET", "/invoices", nil, caller("demo", id, "live", "invoices:read"))

	s.stop() // writes the minute in progress, then publishes its events
	f, err := os.Open(filepath.Join(s.dataDir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string][]map[string]any{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("events.jsonl: %q: %v", sc.Text(), err)
		}
		if e["key_id"] == id {
			got[e["type"].(string)] = append(got[e["type"].(string)], e)
		}
	}
	nn, old := got["key.new_network"], got["key.old_key_in_use"]
	if len(nn) != 1 || len(old) != 1 {
		t.Fatalf("key.new_network %v, key.old_key_in_use %v: want one of each", nn, old)
	}
	if d := nn[0]["data"].(map[string]any); d["network"] != "127.0.0.2/32" || d["known_networks"] != "127.0.0.1/32" || d["contact"] != "payments@example.com" {
		t.Fatalf("key.new_network data %v", d)
	}
	if d := old[0]["data"].(map[string]any); d["networks"] == "" || d["contact"] != "payments@example.com" {
		t.Fatalf("key.old_key_in_use data %v", d)
	}
}
