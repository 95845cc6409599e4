// Package dynamolocal runs DynamoDB Local for tests: one java process per
// test binary, started on first use and stopped by Main.
package dynamolocal

import (
	"bytes"
	"context"
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

const startTimeout = 60 * time.Second

var (
	once   sync.Once
	server *process
	// unavailable is set when Java or the jar cannot be had, which skips
	// tests outside CI; startErr is set when they were there but failed.
	unavailable error
	startErr    error
	tables      atomic.Int64
)

type process struct {
	cmd      *exec.Cmd
	endpoint string
	output   *testenv.SyncBuffer
	exited   chan struct{}
}

// Main runs the tests and then stops DynamoDB Local; call it from TestMain,
// since sync.Once offers no teardown of its own.
func Main(m *testing.M) {
	code := m.Run()
	if server != nil {
		_ = server.cmd.Process.Kill()
		<-server.exited
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
	return newClient(server.endpoint)
}

// NewTable creates a table with a name unique in this test process, laid
// out as package dynamo expects, and deletes it when the test ends.
func NewTable(t testing.TB) (*dynamodb.Client, string) {
	t.Helper()
	client := Client(t)
	name := "keyward-test-" + strconv.FormatInt(tables.Add(1), 10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := dynamo.CreateTable(ctx, client, name); err != nil {
		t.Fatalf("create table %s: %v\nDynamoDB Local output:\n%s", name, err, server.output)
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

// StreamsClient returns a DynamoDB Streams client for this test process's
// DynamoDB Local, which serves the Streams API on the same port.
func StreamsClient(t testing.TB) *dynamodbstreams.Client {
	t.Helper()
	Client(t) // starts it, or skips
	return dynamodbstreams.New(dynamodbstreams.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(server.endpoint),
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
	dir, err := jarDir()
	if err != nil {
		unavailable = err
		return
	}
	java, err := exec.LookPath("java")
	if err != nil {
		unavailable = err
		return
	}
	port, err := testenv.FreePort()
	if err != nil {
		startErr = err
		return
	}
	args := []string{
		"-Djava.library.path=" + filepath.Join(dir, "DynamoDBLocal_lib"),
		"-jar", filepath.Join(dir, "DynamoDBLocal.jar"),
		"-inMemory", "-port", strconv.Itoa(port),
	}
	if supportsTelemetryFlag(java, dir) {
		args = append(args, "-disableTelemetry")
	}
	p := &process{
		cmd:      exec.Command(java, args...),
		endpoint: "http://127.0.0.1:" + strconv.Itoa(port),
		output:   &testenv.SyncBuffer{},
		exited:   make(chan struct{}),
	}
	p.cmd.Dir = dir
	p.cmd.Stdout = p.output
	p.cmd.Stderr = p.output
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		startErr = fmt.Errorf("start java: %w", err)
		return
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	server = p
	if err := p.waitReady(); err != nil {
		startErr = fmt.Errorf("%w\noutput:\n%s", err, p.output)
	}
}

// waitReady polls until the server answers a request, or it dies.
func (p *process) waitReady() error {
	client := newClient(p.endpoint)
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := client.ListTables(ctx, &dynamodb.ListTablesInput{}, func(o *dynamodb.Options) {
			o.RetryMaxAttempts = 1
		})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", startTimeout, err)
		}
		select {
		case <-p.exited:
			return fmt.Errorf("java exited: %v", p.cmd.ProcessState)
		case <-time.After(200 * time.Millisecond):
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
