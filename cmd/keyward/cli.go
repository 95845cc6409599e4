package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/spf13/cobra"
)

// DefaultEndpoint is the local stack's (make dev).
const DefaultEndpoint = "http://127.0.0.1:8080"

// cli is one run of the command line: its streams, environment and the
// global flags.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	// terminal reports whether stderr is a terminal (progress is shown
	// there only).
	terminal bool

	endpoint, profile, output, idempotencyKey string
	apiKeyStdin                               bool
}

// runCLI runs the command line args and returns the exit code.
func runCLI(ctx context.Context, c *cli, args []string) int {
	root := c.root()
	root.SetArgs(args)
	root.SetIn(c.stdin)
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(c.stderr, "keyward:", err)
	}
	return exitCode(err)
}

func (c *cli) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "keyward",
		Short: "keyward's API keys from a terminal: the local stack, and keys and tenants of any keyward",
		Long: `keyward runs the local stack (dev, invoke) and manages keys and tenants
of a keyward, local or deployed, through its admin API.

Where: --endpoint, KEYWARD_ENDPOINT, or a profile of
$XDG_CONFIG_HOME/keyward/config.toml; the local stack by default.
As whom: key commands use the management key in KEYWARD_API_KEY, or read
from standard input with --api-key-stdin (never a flag: it would land in
the shell's history); tenant commands sign with AWS SigV4 from the standard
credential chain, or send KEYWARD_OPERATOR_TOKEN to the local stack.

Exit codes: 0 done, 1 failure (5xx, network), 2 usage, 3 refused (4xx).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&c.endpoint, "endpoint", "", "the keyward's base URL (KEYWARD_ENDPOINT); default the profile's, else "+DefaultEndpoint)
	pf.StringVar(&c.profile, "profile", "", "a profile of the config file (KEYWARD_PROFILE)")
	pf.StringVarP(&c.output, "output", "o", "table", "table, or json (the API's own objects)")
	pf.StringVar(&c.idempotencyKey, "idempotency-key", "", "for a write: the key a retry of the same command must reuse (default a new one, printed)")
	pf.BoolVar(&c.apiKeyStdin, "api-key-stdin", false, "read the management key from the first line of standard input")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	root.AddCommand(c.devCommand(), c.invokeCommand(), c.keysCommand(), c.auditCommand(), c.membersCommand(), c.tenantsCommand())
	return root
}

func (c *cli) devCommand() *cobra.Command {
	return &cobra.Command{Use: "dev [flags]", Short: "Run the whole system locally (make dev); -h for its flags",
		Example: "  keyward dev -addr 127.0.0.1:8080 -data .keyward", DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error { return dev(args) }}
}

func (c *cli) invokeCommand() *cobra.Command {
	return &cobra.Command{Use: "invoke -fn <function> -event <file>", Short: "Run one function's handler once on a sample event (make invoke)",
		Example: "  TOKEN=keyward_live_... keyward invoke -fn authorizer -event events/authorizer-bearer.json", DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error { return invoke(args) }}
}

// profiles is the config file: endpoints by profile name, never secrets.
type profiles struct {
	Profiles map[string]struct {
		Endpoint string `toml:"endpoint"`
		Region   string `toml:"region"`
	} `toml:"profiles"`
}

// configFile is where the profiles are.
func (c *cli) configFile() string {
	dir := c.getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "keyward", "config.toml")
}

// target is where the commands go, and the region for SigV4: --endpoint,
// else --profile, else KEYWARD_ENDPOINT, else KEYWARD_PROFILE, else the
// config file's "default" profile, else the local stack.
func (c *cli) target() (endpoint, region string, err error) {
	name := c.profile
	switch {
	case c.endpoint != "":
		return strings.TrimSuffix(c.endpoint, "/"), regionOf(c.endpoint), nil
	case name == "" && c.getenv("KEYWARD_ENDPOINT") != "":
		e := c.getenv("KEYWARD_ENDPOINT")
		return strings.TrimSuffix(e, "/"), regionOf(e), nil
	case name == "":
		name = c.getenv("KEYWARD_PROFILE")
	}
	path := c.configFile()
	info, statErr := os.Stat(path)
	switch {
	case statErr != nil && name != "":
		return "", "", usagef("profile %q: no config file %s", name, path)
	case statErr != nil:
		return DefaultEndpoint, "", nil
	case info.Mode().Perm()&0o077 != 0:
		return "", "", fmt.Errorf("%s is readable by others (mode %v): chmod 600 it", path, info.Mode().Perm())
	}
	var p profiles
	md, err := toml.DecodeFile(path, &p)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	if extra := md.Undecoded(); len(extra) > 0 {
		return "", "", fmt.Errorf("%s: %s: profiles hold endpoints and regions only, never a secret", path, extra[0])
	}
	if name == "" {
		name = "default"
	}
	pr, ok := p.Profiles[name]
	switch {
	case !ok && name == "default":
		return DefaultEndpoint, "", nil
	case !ok:
		return "", "", usagef("profile %q is not in %s", name, path)
	case pr.Endpoint == "":
		return "", "", fmt.Errorf("%s: profile %q has no endpoint", path, name)
	}
	return strings.TrimSuffix(pr.Endpoint, "/"), cmp.Or(pr.Region, regionOf(pr.Endpoint)), nil
}

// tenantClient calls the admin API with the management key.
func (c *cli) tenantClient() (*client, error) {
	endpoint, _, err := c.target()
	if err != nil {
		return nil, err
	}
	key := c.getenv("KEYWARD_API_KEY")
	if c.apiKeyStdin {
		line, err := bufio.NewReader(c.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading the management key: %w", err)
		}
		key = strings.TrimSpace(line)
	}
	if key == "" {
		return nil, usagef("no management key: set KEYWARD_API_KEY, or pass --api-key-stdin and write it to standard input")
	}
	return &client{endpoint: endpoint, http: &http.Client{Timeout: 30 * time.Second}, sign: bearer(key)}, nil
}

// operatorClient calls the admin API as an operator: the local stack's
// operator token, or SigV4.
func (c *cli) operatorClient(ctx context.Context) (*client, error) {
	endpoint, region, err := c.target()
	if err != nil {
		return nil, err
	}
	cl := &client{endpoint: endpoint, http: &http.Client{Timeout: 30 * time.Second}}
	if token := c.getenv("KEYWARD_OPERATOR_TOKEN"); token != "" {
		cl.sign = bearer(token)
		return cl, nil
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	region = cmp.Or(region, cfg.Region)
	if region == "" {
		return nil, usagef("no AWS region: name one in the profile, or set AWS_REGION")
	}
	cl.sign = sigV4(cfg.Credentials, region, c.now)
	return cl, nil
}

// writeKey is the idempotency key of a write: the one given, or a new one
// told on stderr so that a retry can reuse it.
func (c *cli) writeKey() string {
	if c.idempotencyKey != "" {
		return c.idempotencyKey
	}
	k := "cli_" + rand.Text()
	fmt.Fprintf(c.stderr, "idempotency key %s (retry this command with --idempotency-key %s)\n", k, k)
	return k
}

// print writes v as JSON (-o json) or with table.
func (c *cli) print(v any, table func(io.Writer)) error {
	switch c.output {
	case "json":
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "table":
		table(c.stdout)
		return nil
	}
	return usagef("--output must be table or json, not %q", c.output)
}

// progress tells the terminal how a long operation goes; nothing when
// stderr is not one.
func (c *cli) progress(format string, args ...any) {
	if c.terminal {
		fmt.Fprintf(c.stderr, "\r"+format, args...)
	}
}

// parseLifetime reads 30d, 12h, 90m: a Go duration or whole days.
func parseLifetime(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return 0, usagef("%q is not a number of days such as 30d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, usagef("%q is not a duration such as 30d, 12h or 90m", s)
	}
	return d, nil
}
