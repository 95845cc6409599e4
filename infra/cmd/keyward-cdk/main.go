// Command keyward-cdk is keyward's CDK app. Run by the CDK CLI through
// cdk.json ("cd infra && go run ./cmd/keyward-cdk"), or directly by
// `make synth`, which writes the cloud assembly to cdk.out/ at the
// repository root with no AWS account.
//
// Its configuration is CDK context (docs/deploy.md): the "context" of the
// repository's cdk.json, overridden by -c key=value on the CDK command
// line.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyward/keyward/infra/stack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "keyward-cdk:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	ctx, err := cdkJSONContext(root)
	if err != nil {
		return err
	}
	// The CLI runs this app in infra/ (cdk.json's "cd infra") but passes
	// paths (CDK_OUTDIR=cdk.out) relative to its own working directory,
	// the repository root. The jsii runtime captures the environment
	// early, so rather than rewriting the paths, work from the root: the
	// Node.js process that synthesizes starts here, and resolves them as
	// the CLI meant.
	if err := os.Chdir(root); err != nil {
		return err
	}
	props := &awscdk.AppProps{Context: &ctx}
	if os.Getenv("CDK_OUTDIR") == "" {
		props.Outdir = jsii.String(filepath.Join(root, "cdk.out"))
	}
	app := awscdk.NewApp(props)
	defer jsii.Close()

	s, err := stack.FromContext(func(key string) any { return app.Node().TryGetContext(jsii.String(key)) }, root)
	if err != nil {
		return err
	}
	if missing := s.MissingBootstraps(); len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "keyward-cdk: no bootstrap for %s in %s: synthesizing placeholders, which `cdk deploy` refuses; run make build first to deploy\n",
			strings.Join(missing, ", "), s.DistDir)
	}
	if s.UpstreamURL == stack.PlaceholderUpstream {
		// The CDK CLI shows the stack's warnings; run directly, say it.
		fmt.Fprintln(os.Stderr, "keyward-cdk: warning:", stack.PlaceholderWarning)
	}
	stack.New(app, s)
	app.Synth(nil)
	stack.Cleanup()
	if props.Outdir != nil {
		fmt.Fprintf(os.Stderr, "keyward-cdk: stack %s synthesized to %s\n", s.StackName(), *props.Outdir)
	}
	return nil
}

// repoRoot is the nearest directory at or above the working directory
// that holds cdk.json.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "cdk.json")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no cdk.json in %s or above it", dir)
		}
	}
}

// cdkJSONContext is cdk.json's "context". The CLI passes it too (with
// -c on top, which wins); reading it here makes `go run` alone
// synthesize the same stack.
func cdkJSONContext(root string) (map[string]any, error) {
	data, err := os.ReadFile(filepath.Join(root, "cdk.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]any{}, nil
	}
	if err != nil {
		return nil, err
	}
	var f struct {
		Context map[string]any `json:"context"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("cdk.json: %w", err)
	}
	if f.Context == nil {
		f.Context = map[string]any{}
	}
	return f.Context, nil
}
