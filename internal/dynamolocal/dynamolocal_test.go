package dynamolocal

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// childEnv marks the test processes TestSharedServer starts.
const childEnv = "KEYWARD_DYNAMOLOCAL_CHILD"

func TestMain(m *testing.M) { Main(m) }

// TestSharedServer: test processes given one server's endpoint use it,
// starting no JVM of their own, and their tables do not collide.
func TestSharedServer(t *testing.T) {
	endpoint := os.Getenv(EndpointEnv)
	if endpoint == "" {
		s, err := Start()
		if errors.Is(err, ErrUnavailable) && os.Getenv("CI") != "true" {
			t.Skip(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		endpoint = s.Endpoint
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestChildCreatesTables$", "-test.count=1")
			cmd.Env = append(os.Environ(), EndpointEnv+"="+endpoint, childEnv+"=1", "KEYWARD_DYNAMODB_LOCAL=/nonexistent")
			if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "PASS") {
				t.Errorf("child: %v\n%s", err, out)
			}
		})
	}
	wg.Wait()
}

// TestChildCreatesTables runs in TestSharedServer's children only. Its
// KEYWARD_DYNAMODB_LOCAL names no jar, so it passes only on the shared
// server.
func TestChildCreatesTables(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("run by TestSharedServer")
	}
	for range 3 {
		NewTable(t)
	}
	if server.cmd != nil {
		t.Fatal("a child started its own DynamoDB Local")
	}
}

// TestWaitReadyGivesUpClearly: a server that never answers is reported
// with its endpoint and what to look at, once the wait is over.
func TestWaitReadyGivesUpClearly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	start := time.Now()
	err = (&Server{Endpoint: "http://" + addr}).waitReady(time.Second)
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("waitReady = %v", err)
	}
	if time.Since(start) < time.Second {
		t.Fatalf("gave up after %v", time.Since(start))
	}
}

// TestStreamOnlyWhenAsked: NewTable's tables have no stream, since each
// stream DynamoDB Local has ever had slows all of its requests and the
// suite makes hundreds of tables; NewTableWithStream's has one.
func TestStreamOnlyWhenAsked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		create func(testing.TB) (*dynamodb.Client, string)
		want   bool
	}{{"NewTable", NewTable, false}, {"NewTableWithStream", NewTableWithStream, true}} {
		client, table := tc.create(t)
		out, err := client.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err != nil {
			t.Fatal(err)
		}
		spec := out.Table.StreamSpecification
		if got := spec != nil && aws.ToBool(spec.StreamEnabled); got != tc.want {
			t.Errorf("%s: stream enabled %v, want %v", tc.name, got, tc.want)
		}
	}
}
