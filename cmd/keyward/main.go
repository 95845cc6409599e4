// Command keyward runs keyward on this machine with no AWS account, and
// manages the keys and tenants of any keyward, local or deployed:
//
//	keyward dev      the whole system on 127.0.0.1:8080 (make dev)
//	keyward invoke   one function's handler on one event (make invoke)
//	keyward keys     list, get, create, update, rotate, revoke
//	keyward audit    the tenant's audit log
//	keyward members  revoke-keys
//	keyward tenants  create, offboard
//
// keyward help <command> shows each command's flags and an example.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/localstack"
)

func main() {
	c := &cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now, terminal: isTerminal(os.Stderr)}
	os.Exit(runCLI(context.Background(), c, os.Args[1:]))
}

// isTerminal reports whether f is a terminal: progress is shown there,
// not in a pipe or a file.
func isTerminal(f *os.File) bool {
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// stackFlags are the options dev and invoke share.
func stackFlags(fs *flag.FlagSet) (*localstack.Options, *string) {
	o := &localstack.Options{}
	fs.StringVar(&o.DataDir, "data", env("KEYWARD_DATA_DIR", ".keyward"), "data directory (KEYWARD_DATA_DIR)")
	fs.StringVar(&o.RoutesFile, "routes", os.Getenv(config.EnvRoutesFile), "route table of the protected API ("+config.EnvRoutesFile+"); default the demo API")
	fs.StringVar(&o.GatewayFile, "gateway", os.Getenv("KEYWARD_GATEWAY_FILE"), "gateway settings, like pkg/config/gateway.json (KEYWARD_GATEWAY_FILE); default the shipped ones")
	fs.StringVar(&o.GitHubKeysFile, "github-keys", os.Getenv("KEYWARD_GITHUB_KEYS_FILE"), "keys that may sign leaked-key reports, in GitHub's format (KEYWARD_GITHUB_KEYS_FILE)")
	fs.StringVar(&o.TokenPrefix, "prefix", env(config.EnvTokenPrefix, apikey.DefaultPrefix), "token prefix ("+config.EnvTokenPrefix+")")
	ttl := fs.String("cache-ttl", os.Getenv(config.EnvCacheTTL), "authorizer cache TTL in seconds ("+config.EnvCacheTTL+"); default gateway.json's")
	return o, ttl
}

func applyTTL(o *localstack.Options, ttl string) error {
	if ttl == "" {
		return nil
	}
	n, err := config.ParseCacheTTL(ttl)
	if err != nil {
		return fmt.Errorf("cache TTL: %w", err)
	}
	o.CacheTTL = &n
	return nil
}

func dev(args []string) error {
	fs := flag.NewFlagSet("dev", flag.ExitOnError)
	o, ttl := stackFlags(fs)
	addr := fs.String("addr", env("KEYWARD_ADDR", "127.0.0.1:8080"), "listen address (KEYWARD_ADDR)")
	fs.StringVar(&o.Upstream, "upstream", os.Getenv("UPSTREAM"), "your service, http://host:port (UPSTREAM); default the built-in echo")
	fs.BoolVar(&o.Fast, "fast", os.Getenv("KEYWARD_FAST") != "", "run the scheduled jobs every few seconds and rotate peppers every minute (KEYWARD_FAST)")
	fs.StringVar(&o.OperatorToken, "operator-token", os.Getenv("KEYWARD_OPERATOR_TOKEN"), "operator token (KEYWARD_OPERATOR_TOKEN); default one made on the first start and kept in the data directory")
	_ = fs.Parse(args)
	if err := applyTTL(o, *ttl); err != nil {
		return err
	}
	o.Logger, o.Decisions = slog.New(slog.NewJSONHandler(os.Stdout, nil)), os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Bound before the store opens, so that a busy address leaves a first
	// start's data directory uncreated.
	ln, err := net.Listen("tcp", *addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w (another keyward already running on %s? stop it, or pick another address with -addr or KEYWARD_ADDR)", err, *addr)
	}
	if err != nil {
		return err
	}
	o.BaseURL = "http://" + ln.Addr().String()
	stack, err := localstack.Open(ctx, *o)
	if err != nil {
		return errors.Join(err, ln.Close())
	}
	stack.PrintBanner(os.Stderr, o.BaseURL, o.DataDir)
	o.Logger.Info("listening", "addr", ln.Addr().String(), "data", o.DataDir, "upstream", o.Upstream,
		"cache_ttl_seconds", stack.Gateway.Authorizer.CacheTTLSeconds)
	err = errors.Join(stack.Serve(ctx, ln), stack.Close())
	if err == nil {
		o.Logger.Info("stopped")
	}
	return err
}
