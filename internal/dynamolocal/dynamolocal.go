// Package dynamolocal runs DynamoDB Local for tests: the one `make test`
// shares between all test binaries (EndpointEnv), or else one java process
// per test binary, started on first use and stopped by Main.
package dynamolocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"github.com/keyward/keyward/internal/testenv"
	"github.com/keyward/keyward/pkg/store/dynamo"
)

// version must match scripts/dynamodb-local.sh, which fetches it.
const version = "2.9.30"

// EndpointEnv names a DynamoDB Local that is already running, such as the
// one `make test` starts for the whole run (scripts/with-dynamodb-local); without
// it each test binary starts its own.
const EndpointEnv = "KEYWARD_DYNAMODB_ENDPOINT"

// startTimeout is how long a JVM may take to answer: seconds on an idle
// machine, but a minute was seen on two busy cores while other test
// binaries compiled and ran.
const startTimeout = 3 * time.Minute

// ErrUnavailable: Java or the jar cannot be had.
var ErrUnavailable = errors.New("dynamolocal: DynamoDB Local unavailable")

var (
	once   sync.Once
	server *Server
	// unavailable is set when Java or the jar cannot be had, which skips
	// tests outside CI; startErr is set when they were there but failed.
	unavailable error
	startErr    error
	tables      atomic.Int64
)

// Server is a DynamoDB Local that answers on Endpoint.
type Server struct {
	Endpoint string
	cmd      *exec.Cmd // nil for one started by another process
	output   *testenv.SyncBuffer
	exited   chan struct{}
}

// Main runs the tests and then stops DynamoDB Local; call it from TestMain,
// since sync.Once offers no teardown of its own.
func Main(m *testing.M) {
	code := m.Run()
	if server != nil {
		server.Stop()
	}
	os.Exit(code)
}

// Client returns a client for this test process's DynamoDB Local, starting
// it on first use. Without Java or the jar it skips the test, except in CI.
func Client(t testing.TB) *dynamodb.Client {
	t.Helper()
	once.Do(start)
	if unavailable != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("DynamoDB Local is required in CI: %v", unavailable)
		}
		t.Skipf("DynamoDB Local unavailable (run scripts/dynamodb-local.sh or set KEYWARD_DYNAMODB_LOCAL): %v", unavailable)
	}
	if startErr != nil {
		t.Fatalf("DynamoDB Local: %v", startErr)
	}
	return newClient(server.Endpoint)
}

// NewTable creates a table with a name unique among the test processes
// sharing DynamoDB Local, laid out as package dynamo expects but without a
// stream (dynamo.TableStream says why), and deletes it when the test ends.
func NewTable(t testing.TB) (*dynamodb.Client, string) {
	t.Helper()
	return newTable(t, dynamo.WithoutStream)
}

// NewTableWithStream is NewTable with the table's stream, for a test that
// reads it.
func NewTableWithStream(t testing.TB) (*dynamodb.Client, string) {
	t.Helper()
	return newTable(t, dynamo.WithStream)
}

func newTable(t testing.TB, stream dynamo.TableStream) (*dynamodb.Client, string) {
	t.Helper()
	client := Client(t)
	name := tableName(os.Getpid(), tables.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := dynamo.CreateTable(ctx, client, name, stream); err != nil {
		t.Fatalf("create table %s: %v\nDynamoDB Local output:\n%s", name, err, server.Output())
	}
	t.Cleanup(func() {
		// In-memory tables die with the process; deleting keeps memory flat
		// across a long suite, so a failure here is not worth failing for.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := client.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)}); err != nil {
			t.Logf("delete table %s: %v", name, err)
		}
	})
	return client, name
}

// tableName is the n-th table of test process pid.
func tableName(pid int, n int64) string {
	return "keyward-test-" + strconv.Itoa(pid) + "-" + strconv.FormatInt(n, 10)
}

// Endpoint is this test process's DynamoDB Local's URL, for a process
// the test starts.
func Endpoint(t testing.TB) string {
	t.Helper()
	Client(t) // starts it, or skips
	return server.Endpoint
}

// StreamsClient returns a DynamoDB Streams client for this test process's
// DynamoDB Local, which serves the Streams API on the same port.
func StreamsClient(t testing.TB) *dynamodbstreams.Client {
	t.Helper()
	Client(t) // starts it, or skips
	return dynamodbstreams.New(dynamodbstreams.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(server.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
	})
}

func newClient(endpoint string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
	})
}

func start() {
	if endpoint := os.Getenv(EndpointEnv); endpoint != "" {
		server = &Server{Endpoint: endpoint}
		if err := server.waitReady(startTimeout); err != nil {
			startErr = fmt.Errorf("%s=%s: %w", EndpointEnv, endpoint, err)
		}
		return
	}
	s, err := Start()
	switch {
	case errors.Is(err, ErrUnavailable):
		unavailable = err
	case err != nil:
		startErr = err
	}
	server = s
}

// Start starts DynamoDB Local, in memory, on a free loopback port, and
// waits until it answers. The Server is nil only when Java or the jar
// cannot be had (ErrUnavailable); Stop it when done.
func Start() (*Server, error) {
	dir, err := jarDir()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{
		"-Djava.library.path=" + filepath.Join(dir, "DynamoDBLocal_lib"),
		"-jar", filepath.Join(dir, "DynamoDBLocal.jar"),
		"-inMemory", "-port", strconv.Itoa(port),
	}
	if supportsTelemetryFlag(java, dir) {
		args = append(args, "-disableTelemetry")
	}
	s := &Server{
		cmd:      exec.Command(java, args...),
		Endpoint: "http://127.0.0.1:" + strconv.Itoa(port),
		output:   &testenv.SyncBuffer{},
		exited:   make(chan struct{}),
	}
	s.cmd.Dir = dir
	s.cmd.Stdout = s.output
	s.cmd.Stderr = s.output
	s.cmd.SysProcAttr = sysProcAttr()
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start java: %w", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(startTimeout); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w\noutput:\n%s", err, s.output)
	}
	return s, nil
}

// Stop ends a DynamoDB Local this process started.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// Output is what the JVM printed, if this process started it.
func (s *Server) Output() string {
	if s.output == nil {
		return "(started by another process)"
	}
	return s.output.String()
}

// waitReady polls until the server answers a request, the JVM dies, or
// timeout passes.
func (s *Server) waitReady(timeout time.Duration) error {
	client := newClient(s.Endpoint)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := client.ListTables(ctx, &dynamodb.ListTablesInput{}, func(o *dynamodb.Options) {
			o.RetryMaxAttempts = 1
		})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("DynamoDB Local did not answer on %s within %v (an overloaded machine, or a JVM that cannot start; see its output): %w", s.Endpoint, timeout, err)
		}
		select {
		case <-s.exited: // nil, never ready, for another process's server
			return fmt.Errorf("java exited: %v", s.cmd.ProcessState)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// jarDir finds the directory holding DynamoDBLocal.jar: the one named by
// KEYWARD_DYNAMODB_LOCAL, else the script's cache, fetched if missing.
func jarDir() (string, error) {
	if dir := os.Getenv("KEYWARD_DYNAMODB_LOCAL"); dir != "" {
		if !hasJar(dir) {
			return "", fmt.Errorf("KEYWARD_DYNAMODB_LOCAL=%s holds no DynamoDBLocal.jar", dir)
		}
		return dir, nil
	}
	if dir, err := defaultDir(); err == nil && hasJar(dir) {
		if _, err := exec.LookPath("java"); err == nil {
			return dir, nil
		}
	}
	// The script fetches the jar and installs Java where either is missing.
	root, err := testenv.ModuleRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "dynamodb-local.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/dynamodb-local.sh: %w\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dir := lines[len(lines)-1]
	if !hasJar(dir) {
		return "", fmt.Errorf("scripts/dynamodb-local.sh printed %q, which holds no DynamoDBLocal.jar", dir)
	}
	return dir, nil
}

// defaultDir mirrors the script's cache location.
func defaultDir() (string, error) {
	cache := os.Getenv("KEYWARD_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", err
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "keyward")
	}
	return filepath.Join(cache, "dynamodb-local-"+version), nil
}

func hasJar(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "DynamoDBLocal.jar"))
	return err == nil
}

// supportsTelemetryFlag asks the jar's usage text, since releases before
// 1.24 reject the flag outright.
func supportsTelemetryFlag(java, dir string) bool {
	out, _ := exec.Command(java, "-jar", filepath.Join(dir, "DynamoDBLocal.jar"), "-help").CombinedOutput()
	return bytes.Contains(out, []byte("-disableTelemetry"))
}
