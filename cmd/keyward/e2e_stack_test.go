package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/pkg/apikey"
)

// Deadlines: every wait of the suite is bounded by one of these.
const (
	startDeadline   = 60 * time.Second // the process answers and has printed its banner (generous: 2 busy cores)
	stopDeadline    = 15 * time.Second // graceful shutdown waits up to 10 s for requests in flight
	requestDeadline = 10 * time.Second // one HTTP request
)

// The gateway responses of pkg/config/gateway.json, byte for byte: what a
// client of the stack receives.
const (
	body401      = `{"error":{"type":"unauthorized","message":"Invalid or missing API key."}}`
	body403Scope = `{"error":{"type":"forbidden","code":"insufficient_scope","message":"This API key does not have the scope this route requires."}}`
	body404Route = `{"error":{"type":"not_found","code":"not_found","message":"No such route."}}`
	body429      = `{"error":{"type":"rate_limited","code":"rate_limited","message":"Too many requests for this API key; retry after the Retry-After delay."}}`
)

// tokenPattern is the README's pattern for secret scanners: every keyward
// token matches it.
var tokenPattern = regexp.MustCompile(apikey.Pattern)

// requestIDPattern is API Gateway's request id form, a version 4 UUID.
var requestIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// stackOptions configure one `keyward dev` process.
type stackOptions struct {
	dataDir  string   // default a new t.TempDir()
	addr     string   // default 127.0.0.1 and a free port
	upstream string   // UPSTREAM; empty for the built-in echo
	opToken  string   // KEYWARD_OPERATOR_TOKEN; default a random one
	env      []string // more NAME=value settings
}

// stack is one running `keyward dev` process.
type stack struct {
	t       *testing.T
	dataDir string
	addr    string
	base    string // http://addr
	opToken string
	banner  banner
	client  *http.Client

	cmd     *exec.Cmd
	stdout  *testenv.SyncBuffer // JSON logs
	stderr  *testenv.SyncBuffer // the banner
	done    chan struct{}
	waitErr error // set before done closes

	mu      sync.Mutex
	secrets map[string]bool // every credential seen: none may reach the logs
}

// startStack starts `keyward dev` and waits until it serves and has printed
// its banner. The process is killed at cleanup if the test has not stopped
// it.
func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	if o.opToken == "" {
		o.opToken = "op_e2e_" + randomHex(t, 16)
	}
	fixedAddr := o.addr != ""
	for attempt := 1; ; attempt++ {
		addr := o.addr
		if addr == "" {
			addr = freeAddr(t)
		}
		s, err := launch(t, o, addr)
		if err == nil {
			return s
		}
		// Another process may take the free port between our probe and
		// the stack's listen: try another one.
		if !errors.Is(err, errAddrInUse) || fixedAddr && attempt > 1 || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("retrying on another port: %v", err)
		o.addr = ""
	}
}

var errAddrInUse = errors.New("address already in use")

func launch(t *testing.T, o stackOptions, addr string) (*stack, error) {
	t.Helper()
	s := &stack{t: t, dataDir: o.dataDir, addr: addr, base: "http://" + addr, opToken: o.opToken,
		stdout: &testenv.SyncBuffer{}, stderr: &testenv.SyncBuffer{}, done: make(chan struct{}), secrets: map[string]bool{}}
	s.addSecret(o.opToken)
	s.client = &http.Client{Timeout: requestDeadline, Transport: &http.Transport{}}
	s.cmd = exec.Command(keywardBin, "dev", "-addr", addr, "-data", o.dataDir)
	s.cmd.Env = append(cleanEnv(), "KEYWARD_OPERATOR_TOKEN="+o.opToken)
	s.cmd.Env = append(s.cmd.Env, o.env...)
	if o.upstream != "" {
		s.cmd.Env = append(s.cmd.Env, "UPSTREAM="+o.upstream)
	}
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting keyward: %w", err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.cleanup)

	deadline := time.Now().Add(startDeadline)
	for {
		select {
		case <-s.done:
			if strings.Contains(s.stderr.String(), "address already in use") {
				return nil, fmt.Errorf("%w: %s", errAddrInUse, s.stderr.String())
			}
			return nil, fmt.Errorf("keyward dev exited before serving (%v)\nstderr:\n%s\nstdout:\n%s", s.waitErr, s.stderr, s.stdout)
		default:
		}
		if s.ready() {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("keyward dev not ready after %v\nstderr:\n%s\nstdout:\n%s", startDeadline, s.stderr, s.stdout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.banner = parseBanner(t, s.stderr.String())
	for _, v := range s.banner.exports {
		s.addSecret(v)
	}
	if s.banner.base != s.base {
		t.Errorf("banner serves on %q, want %q", s.banner.base, s.base)
	}
	if s.banner.dataDir != s.dataDir {
		t.Errorf("banner names data directory %q, want %q", s.banner.dataDir, s.dataDir)
	}
	return s, nil
}

// ready reports whether the port answers, the "listening" line is logged
// and the banner, written before it in one piece, has been read in full.
func (s *stack) ready() bool {
	c, err := net.DialTimeout("tcp", s.addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return strings.Contains(s.stdout.String(), `"msg":"listening"`) &&
		strings.Contains(s.stderr.String(), "KEYWARD_OPERATOR_TOKEN=") && strings.HasSuffix(s.stderr.String(), "\n\n")
}

// cleanEnv is the test's environment without the variables that configure
// keyward, so a developer's own settings cannot change what is tested.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KEYWARD_") || strings.HasPrefix(kv, "UPSTREAM=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func (s *stack) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// stop ends the process as Ctrl-C would (SIGTERM), and checks it exits 0
// with "stopped" as its last log line and logs only JSON without secrets.
func (s *stack) stop() {
	t := s.t
	t.Helper()
	s.client.CloseIdleConnections()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.done:
	case <-time.After(stopDeadline):
		_ = s.cmd.Process.Kill()
		<-s.done
		t.Fatalf("keyward dev still running %v after SIGTERM", stopDeadline)
	}
	if s.waitErr != nil || s.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("keyward dev exited with %v (code %d), want 0\nstderr:\n%s", s.waitErr, s.cmd.ProcessState.ExitCode(), s.stderr)
	}
	lines := s.logLines()
	if len(lines) == 0 || lines[len(lines)-1]["msg"] != "stopped" {
		t.Errorf("last log line is not \"stopped\":\n%s", s.stdout)
	}
	s.checkLogs()
}

// cleanup kills the process if the test did not stop it, and shows its
// output when the test failed.
func (s *stack) cleanup() {
	if !s.exited() {
		_ = s.cmd.Process.Kill()
		select {
		case <-s.done:
		case <-time.After(stopDeadline):
			s.t.Errorf("keyward dev (pid %d) did not die after SIGKILL", s.cmd.Process.Pid)
		}
	}
	if s.t.Failed() {
		s.t.Logf("keyward dev on %s, stderr:\n%s\nstdout:\n%s", s.addr, s.stderr, s.stdout)
	}
}

// logLines parses stdout, failing the test on any line that is not a JSON
// object with time, level and msg.
func (s *stack) logLines() []map[string]any {
	t := s.t
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.stdout.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("stdout line is not a JSON object: %v\n%s", err, sc.Text())
			continue
		}
		for _, f := range []string{"time", "level", "msg"} {
			if _, ok := m[f].(string); !ok {
				t.Errorf("log line without %q: %s", f, sc.Text())
			}
		}
		lines = append(lines, m)
	}
	if err := sc.Err(); err != nil {
		t.Errorf("reading stdout: %v", err)
	}
	return lines
}

// checkLogs checks that the logs hold no credential: none the test saw
// (banner, API answers, the operator token, tokens it made up) and nothing
// a secret scanner would take for a token.
func (s *stack) checkLogs() {
	t := s.t
	t.Helper()
	out := s.stdout.String()
	s.mu.Lock()
	secrets := make([]string, 0, len(s.secrets))
	for sec := range s.secrets {
		secrets = append(secrets, sec)
	}
	s.mu.Unlock()
	for _, sec := range secrets {
		if strings.Contains(out, sec) {
			t.Errorf("a secret (%.12s…) appears in the logs", sec)
		}
	}
	if m := tokenPattern.FindAllString(out, -1); len(m) > 0 {
		t.Errorf("the logs hold %d token-shaped strings, such as %.12s…", len(m), m[0])
	}
}

func (s *stack) addSecret(sec string) {
	if sec == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets[sec] = true
}

// response is an HTTP answer, read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// request is one HTTP request to the stack.
type request struct {
	method string
	path   string
	token  string // sent as "Authorization: Bearer <token>" unless empty
	body   string // sent as application/json unless empty
	header http.Header
}

func (s *stack) send(rq request) response {
	s.t.Helper()
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	req, err := http.NewRequest(rq.method, s.base+rq.path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	for k, vs := range rq.header {
		req.Header[k] = slices.Clone(vs)
	}
	if rq.token != "" {
		req.Header.Set("Authorization", "Bearer "+rq.token)
	}
	if rq.body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return s.do(req)
}

func (s *stack) do(req *http.Request) response {
	s.t.Helper()
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL.Path, err)
	}
	if id := resp.Header.Get("Request-Id"); !requestIDPattern.MatchString(id) {
		s.t.Errorf("%s %s: Request-Id %q is not a UUID", req.Method, req.URL.Path, id)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (s *stack) get(path, token string) response {
	s.t.Helper()
	return s.send(request{method: http.MethodGet, path: path, token: token})
}

func (s *stack) post(path, token, body string) response {
	s.t.Helper()
	return s.send(request{method: http.MethodPost, path: path, token: token, body: body})
}

// wantGateway checks an answer the gateway itself renders: its status and
// its body byte for byte.
func wantGateway(t *testing.T, what string, r response, status int, body string) {
	t.Helper()
	if r.status != status || string(r.body) != body {
		t.Errorf("%s: got %s\nwant %d %s", what, r, status, body)
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	if got := r.header.Get("WWW-Authenticate"); (status == http.StatusUnauthorized) != (got == "Bearer") {
		t.Errorf("%s: WWW-Authenticate %q on a %d", what, got, status)
	}
}

// want401 checks the one answer every refused credential gets.
func want401(t *testing.T, what string, r response) {
	t.Helper()
	wantGateway(t, what, r, http.StatusUnauthorized, body401)
}

// decode parses a JSON answer of the expected status.
func decode(t *testing.T, what string, r response, status int) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: got %s, want status %d", what, r, status)
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("%s: answer is not a JSON object: %v: %s", what, err, r.body)
	}
	return m
}

// wantError checks an admin API error envelope exactly, message aside
// (messages are for people), but the message must be there.
func wantError(t *testing.T, what string, r response, status int, typ, code string) {
	t.Helper()
	m := decode(t, what, r, status)
	e, ok := m["error"].(map[string]any)
	if !ok || len(m) != 1 {
		t.Errorf("%s: not an error envelope: %s", what, r.body)
		return
	}
	if e["type"] != typ || code != "" && e["code"] != code || code == "" && e["code"] != nil {
		t.Errorf("%s: error type %v code %v, want %s %q: %s", what, e["type"], e["code"], typ, code, r.body)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("%s: error without a message: %s", what, r.body)
	}
}

// echo is what the built-in echo answers.
type echo struct {
	Method        string              `json:"method"`
	Path          string              `json:"path"`
	Query         map[string][]string `json:"query"`
	Authorizer    map[string]string   `json:"authorizer"`
	Authorization string              `json:"authorization"`
}

// wantEcho checks a 200 from the built-in echo and the caller it saw.
func wantEcho(t *testing.T, what string, r response, method, path string, query map[string][]string, authz map[string]string) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Errorf("%s: got %s, want 200 from the echo", what, r)
		return
	}
	var got echo
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Errorf("%s: not the echo's answer: %v: %s", what, err, r.body)
		return
	}
	// The upstream never sees the key: the gateway replaces the
	// Authorization header.
	want := echo{Method: method, Path: path, Query: query, Authorizer: authz, Authorization: "keyward-verified"}
	if want.Query == nil {
		want.Query = map[string][]string{}
	}
	if !equalJSON(got, want) {
		t.Errorf("%s: echo saw %s\nwant %s", what, r.body, mustJSON(want))
	}
}

// caller is the authorizer context the echo shows for a key.
func caller(tenant, keyID, env, scopes string) map[string]string {
	return map[string]string{"tenant_id": tenant, "key_id": keyID, "environment": env, "scopes": scopes}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func equalJSON(a, b any) bool { return mustJSON(a) == mustJSON(b) }

// createKey creates a key with a management key and returns its id and
// secret; body is the JSON request.
func (s *stack) createKey(adminToken, body string) (id, secret string, key map[string]any) {
	s.t.Helper()
	m := decode(s.t, "POST /v1/keys "+body, s.post("/v1/keys", adminToken, body), http.StatusCreated)
	return s.created(m)
}

// created reads a create or rotate answer, remembering the secret.
func (s *stack) created(m map[string]any) (id, secret string, key map[string]any) {
	s.t.Helper()
	key, _ = m["key"].(map[string]any)
	id, _ = key["id"].(string)
	secret, _ = m["secret"].(string)
	s.addSecret(secret)
	if !regexp.MustCompile(`^key_[0-9A-Za-z]{12}$`).MatchString(id) || !tokenPattern.MatchString(secret) {
		s.t.Fatalf("created key id %q secret %q: %v", id, secret, m)
	}
	if !strings.Contains(secret, "_"+strings.TrimPrefix(id, "key_")) {
		s.t.Errorf("secret does not carry the key id %s", id)
	}
	if validChecksum(secret) != nil {
		s.t.Errorf("secret of %s: %v", id, validChecksum(secret))
	}
	return id, secret, key
}

func (s *stack) revoke(adminToken, id string) map[string]any {
	s.t.Helper()
	k := decode(s.t, "revoke "+id, s.post("/v1/keys/"+id+"/revoke", adminToken, ""), http.StatusOK)
	if k["id"] != id || k["status"] != "revoked" || k["revoked_at"] == nil {
		s.t.Errorf("revoke %s answered %v", id, k)
	}
	return k
}

// basic is the HTTP Basic form of a token: the token as user name, an
// empty password.
func basic(token string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(token+":"))
}
