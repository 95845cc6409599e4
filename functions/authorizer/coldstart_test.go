package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/keyward/keyward/internal/dynamolocal"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/store/dynamo"
)

// The cold start of the authorizer as Lambda runs it: the built bootstrap,
// exec'd with the environment the CDK stack sets, against a fake Lambda
// runtime API, DynamoDB Local and a fake KMS (both behind AWS_ENDPOINT_URL),
// measured as the process's CPU time from exec to its first request for
// work (GET .../invocation/next), when its init is over. Issue 17's target
// is 25 ms.

func TestMain(m *testing.M) { dynamolocal.Main(m) }

// coldStartDeadline bounds one start (generous: two busy cores).
const coldStartDeadline = time.Minute

// fakeKMS answers the two KMS calls the pepper ring makes, as KMS's JSON
// protocol does: a data key's "ciphertext" is random, and its "plaintext"
// the SHA-256 of it, so that every Decrypt of one ciphertext agrees.
func fakeKMS(w http.ResponseWriter, r *http.Request) {
	var in struct{ CiphertextBlob []byte }
	_ = json.NewDecoder(r.Body).Decode(&in)
	out := map[string]any{"KeyId": "arn:aws:kms:us-east-1:000000000000:key/cold-start"}
	switch r.Header.Get("X-Amz-Target") {
	case "TrentService.GenerateDataKeyWithoutPlaintext":
		blob := make([]byte, 64)
		_, _ = rand.Read(blob)
		out["CiphertextBlob"] = blob
	case "TrentService.Decrypt":
		sum := sha256.Sum256(in.CiphertextBlob)
		out["Plaintext"] = sum[:]
	default:
		http.Error(w, `{"__type":"UnknownOperationException"}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(out)
}

// coldStart is a built authorizer and the services it starts against.
type coldStart struct {
	bin string
	env []string
	// token is a live key's, for an allowed decision.
	token string
}

func newColdStart(t testing.TB) *coldStart {
	t.Helper()
	client, table := dynamolocal.NewTable(t) // skips without DynamoDB Local
	dynamoURL, err := url.Parse(dynamolocal.Endpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	toDynamo := httputil.NewSingleHostReverseProxy(dynamoURL)
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("X-Amz-Target"), "TrentService.") {
			fakeKMS(w, r)
			return
		}
		toDynamo.ServeHTTP(w, r)
	}))
	t.Cleanup(endpoint.Close)

	keyID := "arn:aws:kms:us-east-1:000000000000:key/cold-start"
	ring := pepper.KMS{Client: kms.New(kms.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint.URL),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}), KeyID: keyID}
	st := dynamo.New(client, table)
	if _, err := pepper.Create(t.Context(), st, ring, time.Now()); err != nil {
		t.Fatal(err)
	}
	peppers, err := pepper.Load(t.Context(), st, ring)
	if err != nil {
		t.Fatal(err)
	}
	format, _ := apikey.NewFormat("keyward")
	svc := lifecycle.New(st, peppers, format)
	operator := lifecycle.Actor{ID: "operator"}
	if _, err := svc.Onboard(t.Context(), operator, lifecycle.OnboardParams{TenantID: "acme", Name: "Acme"}); err != nil {
		t.Fatal(err)
	}
	k, err := svc.Create(t.Context(), operator, "acme", lifecycle.CreateParams{Name: "cold", Environment: apikey.Live, Scopes: []string{"invoices:read"}})
	if err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(t.TempDir(), "bootstrap")
	build := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the authorizer: %v\n%s", err, out)
	}
	gw, err := config.LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	d := config.Deployment{Table: table, PepperKeyID: keyID, TokenPrefix: "keyward", Gateway: gw}
	env := []string{"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=local", "AWS_SECRET_ACCESS_KEY=local", "AWS_ENDPOINT_URL=" + endpoint.URL,
		"PATH=" + os.Getenv("PATH")}
	for name, v := range d.Environ(config.FnAuthorizer) {
		env = append(env, name+"="+v)
	}
	return &coldStart{bin: bin, env: env, token: k.Token.Plain()}
}

// runtimeAPI fakes Lambda's runtime and extensions APIs: the internal
// extension that asks for SIGTERM (lambda.WithEnableSIGTERM) registers and
// waits for events, as in Lambda; each request for work gets the next of
// invocations, then none, and ready is signalled when the process asks for
// work with none left. Responses (and anything else it is sent) are
// recorded in posted.
type runtimeAPI struct {
	invocations []string // events, in order
	ready       chan struct{}
	mu          sync.Mutex
	posted      []string
}

func (f *runtimeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasSuffix(r.URL.Path, "/extension/register"):
		w.Header().Set("Lambda-Extension-Identifier", "cold-start")
		_, _ = w.Write([]byte(`{}`))
	case strings.HasSuffix(r.URL.Path, "/extension/event/next"):
		<-r.Context().Done() // the extension takes no events
	case strings.HasSuffix(r.URL.Path, "/runtime/invocation/next"):
		f.mu.Lock()
		var event string
		if len(f.invocations) > 0 {
			event, f.invocations = f.invocations[0], f.invocations[1:]
		}
		f.mu.Unlock()
		if event != "" {
			w.Header().Set("Lambda-Runtime-Aws-Request-Id", "cold-start-"+strconv.Itoa(len(event)))
			w.Header().Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
			_, _ = w.Write([]byte(event))
			return
		}
		select {
		case f.ready <- struct{}{}:
		default:
		}
		<-r.Context().Done() // no work: the process is stopped here
	default:
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.posted = append(f.posted, r.URL.Path+" "+string(body))
		f.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}
}

// run starts the authorizer once and returns its CPU time up to its first
// request for work, and its output.
func (c *coldStart) run(t testing.TB) (time.Duration, string) {
	t.Helper()
	cpu, out, _ := c.serve(t, &runtimeAPI{}, syscall.SIGKILL)
	return cpu, out
}

// serve starts the authorizer, lets it serve api's invocations, stops it
// with sig once it asks for more work, and returns its CPU time at that
// moment, its output and what it posted to the runtime API.
func (c *coldStart) serve(t testing.TB, api *runtimeAPI, sig syscall.Signal) (time.Duration, string, []string) {
	t.Helper()
	api.ready = make(chan struct{}, 1)
	ready := api.ready
	runtimeAPI := httptest.NewServer(api)
	defer runtimeAPI.Close()

	var out bytes.Buffer
	cmd := exec.Command(c.bin)
	cmd.Env = append(c.env, "AWS_LAMBDA_RUNTIME_API="+strings.TrimPrefix(runtimeAPI.URL, "http://"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), coldStartDeadline)
	defer cancel()
	var cpu time.Duration
	select {
	case <-ready:
		// Read while it waits for work: after the kill, the time would
		// include tearing the process down.
		cpu = cpuTime(t, cmd.Process.Pid)
		_ = cmd.Process.Signal(sig)
		if sig == syscall.SIGTERM {
			// Lambda gives the process a moment after SIGTERM, then kills it.
			time.Sleep(time.Second)
			_ = cmd.Process.Kill()
		}
		<-exited
	case err := <-exited:
		t.Fatalf("the authorizer exited before asking for work: %v\n%s", err, out.String())
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("the authorizer did not ask for work within %v\n%s", coldStartDeadline, out.String())
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	return cpu, out.String(), api.posted
}

// cpuTime is the time every thread of process pid has run on a CPU, in
// nanoseconds, from the scheduler's statistics (Linux's schedstat: the
// first field, exact, unlike the tick-counted utime and stime).
func cpuTime(t testing.TB, pid int) time.Duration {
	t.Helper()
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "schedstat"))
	if err != nil || len(tasks) == 0 {
		t.Skipf("no scheduler statistics for process %d (Linux only): %v", pid, err)
	}
	var total time.Duration
	for _, f := range tasks {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ns, err := strconv.ParseInt(strings.Fields(string(raw))[0], 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		total += time.Duration(ns)
	}
	return total
}

// TestColdStart: the built authorizer starts against the fakes and asks
// for work; its CPU time to get there is logged (BenchmarkColdStart
// measures it).
func TestColdStart(t *testing.T) {
	c := newColdStart(t)
	cpu, out := c.run(t)
	if strings.Contains(out, `"level":"ERROR"`) || strings.Contains(out, "WARNING") {
		t.Errorf("the start logged a problem:\n%s", out)
	}
	t.Logf("cold start: %v CPU to the first request for work", cpu)
}

// TestSIGTERMFlushesTheDecisions: Lambda sends SIGTERM at shutdown (the
// SIGTERM extension asked for it), and the authorizer then writes the
// batch of allowed decisions it had not written yet; a refusal has its
// line at once.
func TestSIGTERMFlushesTheDecisions(t *testing.T) {
	c := newColdStart(t)
	event := func(name string) string {
		raw, err := os.ReadFile(filepath.Join("..", "..", "events", name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.ReplaceAll(string(raw), "${TOKEN}", c.token)
	}
	_, out, posted := c.serve(t, &runtimeAPI{invocations: []string{event("authorizer-bearer.json"), event("authorizer-missing.json")}},
		syscall.SIGTERM)
	if !strings.Contains(out, `"reason":"missing_credential"`) {
		t.Fatalf("no refusal line:\n%s", out)
	}
	if !strings.Contains(out, `"msg":"authorization decisions","outcome":"allow","decisions":1`) {
		t.Fatalf("SIGTERM did not write the batch of allowed decisions:\n%s", out)
	}
	if len(posted) != 2 || !strings.Contains(posted[0], "/response") || !strings.Contains(posted[1], "Unauthorized") {
		t.Fatalf("the runtime API got %q, want an Allow and the Unauthorized error", posted)
	}
}

// BenchmarkColdStart is the authorizer's whole-process init, from exec to
// its first request for work, in CPU time per start (cpu-ms/start).
func BenchmarkColdStart(b *testing.B) {
	c := newColdStart(b)
	var total time.Duration
	n := 0
	for b.Loop() {
		cpu, _ := c.run(b)
		total += cpu
		n++
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(n), "cpu-ms/start")
}
