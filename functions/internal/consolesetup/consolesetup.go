// Package consolesetup starts the members' console beside the admin API
// in the admin function: its sign-in settings from the deployment, its
// client secret from Secrets Manager. Apart from package wiring, so that
// no other function links the console, OpenID Connect or Secrets Manager.
package consolesetup

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/keyward/keyward/functions/internal/wiring"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/console"
)

// The console's settings are the Deployment's OIDC fields and ConsoleURL
// (wiring.Runtime.Config): the provider's issuer, the client ID, the
// claims, the console's URL (ConsoleCallbackURL is its redirect URI). The
// client's secret is not in the environment but in Secrets Manager, read
// once at start.

// configured reports whether the deployment configures the console
// (config.Deployment.Validate has checked that its settings go together).
func configured(rt *wiring.Runtime) bool { return rt.Config.OIDCIssuer != "" }

// clientSecret reads the console client's secret from the Secrets
// Manager secret KEYWARD_OIDC_CLIENT_SECRET_ARN names, or exits.
func clientSecret(ctx context.Context, rt *wiring.Runtime) string {
	secret, err := ClientSecret(ctx, secretsmanager.NewFromConfig(rt.AWS), rt.Config.OIDCClientSecretARN)
	if err != nil {
		wiring.Fatal(rt.Log, "console client secret", err)
	}
	return secret
}

// SecretGetter is the Secrets Manager call ClientSecret makes
// (*secretsmanager.Client).
type SecretGetter interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// ClientSecret reads an OpenID Connect client secret kept as the string
// value of the secret arn (its current version), without surrounding
// white space.
func ClientSecret(ctx context.Context, sm SecretGetter, arn string) (string, error) {
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", arn, err)
	}
	secret := strings.TrimSpace(aws.ToString(out.SecretString))
	if secret == "" {
		return "", errors.New(arn + " holds no string: store the client secret as the secret's plain text value")
	}
	return secret, nil
}

// Beside is the admin function's handler: the console beside the admin
// API when the deployment configures one. cfg brings the console's domain
// parts (lifecycle, store, peppers, rate limits, flusher); the sign-in
// settings come from the deployment. A console that cannot be built (a
// console URL it refuses) is left out and logged, and the admin API is
// served alone.
func Beside(ctx context.Context, rt *wiring.Runtime, api http.Handler, cfg console.Config) http.Handler {
	if !configured(rt) {
		return api
	}
	d := rt.Config
	cfg.BaseURL = strings.TrimSuffix(d.ConsoleURL, console.Prefix)
	cfg.Issuer, cfg.ClientID, cfg.ClientSecret = d.OIDCIssuer, d.OIDCClientID, clientSecret(ctx, rt)
	cfg.RedirectURL = d.ConsoleCallbackURL()
	cfg.TenantClaim, cfg.RoleClaim, cfg.MemberClaim = d.OIDCTenantClaim, d.OIDCRoleClaim, d.OIDCMemberClaim
	cfg.ExtraScopes = []string{"email", "profile"}
	cfg.Gateway, cfg.Logger = rt.Gateway, rt.Log
	if rt, err := config.Routes(d.RoutesFile); err == nil {
		cfg.Resources = console.Resources(rt)
	}
	c, err := console.New(cfg)
	if err != nil {
		rt.Log.Error("the console is not served", "error", err)
		return api
	}
	return c.Beside(api)
}
