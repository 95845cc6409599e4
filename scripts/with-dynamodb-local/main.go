// Command with-dynamodb-local runs a command with one DynamoDB Local
// started for it: `make test` runs `go test` under it, so that every test
// binary shares one JVM (dynamolocal.EndpointEnv) instead of starting its
// own on a busy machine. DynamoDB Local is stopped when the command ends.
//
//	go run ./scripts/with-dynamodb-local -- go test ./...
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/keyward/keyward/internal/dynamolocal"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: with-dynamodb-local -- command [args...]")
		os.Exit(2)
	}
	os.Exit(run(args))
}

func run(args []string) int {
	server, err := dynamolocal.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "with-dynamodb-local:", err)
		return 1
	}
	defer server.Stop()
	fmt.Fprintln(os.Stderr, "with-dynamodb-local: DynamoDB Local on", server.Endpoint)

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), dynamolocal.EndpointEnv+"="+server.Endpoint)
	// A signal is passed on to the command, and this process lives on to
	// stop DynamoDB Local once the command has ended.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "with-dynamodb-local:", err)
		return 1
	}
	go func() {
		for sig := range signals {
			_ = cmd.Process.Signal(sig)
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode()
	case err != nil:
		fmt.Fprintln(os.Stderr, "with-dynamodb-local:", err)
		return 1
	}
	return 0
}
