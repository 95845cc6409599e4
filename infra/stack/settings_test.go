package stack_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/keyward/keyward/infra/stack"
	"github.com/keyward/keyward/pkg/config"
)

// repoRoot is the main module's root, from infra/stack.
var repoRoot = filepath.Join("..", "..")

func contextOf(m map[string]any) func(string) any {
	return func(key string) any { return m[key] }
}

func TestSettingsDefaultsComeFromConfig(t *testing.T) {
	s, err := stack.FromContext(contextOf(nil), repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := config.Routes("")
	if err != nil {
		t.Fatal(err)
	}
	gw, err := config.LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Routes, routes) || s.RoutesFile != "" {
		t.Errorf("routes = %+v from %q, want config.Routes(\"\")", s.Routes, s.RoutesFile)
	}
	if !reflect.DeepEqual(s.Gateway, gw) {
		t.Errorf("gateway = %+v, want config.LoadGateway()", s.Gateway)
	}
	want := stack.Settings{
		Prefix: "keyward", Stage: "dev", UpstreamURL: "https://example.com", Routes: routes, Gateway: gw,
		DistDir: filepath.Join(repoRoot, "dist"), APIGatewayAccountRole: true,
		TenantClaim: config.DefaultTenantClaim, RoleClaim: config.DefaultRoleClaim, MemberClaim: config.DefaultMemberClaim,
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("defaults = %+v, want %+v", s, want)
	}
	if s.StackName() != "keyward-dev" {
		t.Errorf("stack name %q", s.StackName())
	}
	if !s.Cognito() {
		t.Error("the default is not the Cognito user pool")
	}
}

func TestSettingsOverrides(t *testing.T) {
	dir := t.TempDir()
	routesFile := filepath.Join(dir, "routes.json")
	if err := os.WriteFile(routesFile, []byte(`{"routes":[{"method":"GET","path":"/things/{id}","scope":"things:read"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// As -c key=value passes them: strings.
	s, err := stack.FromContext(contextOf(map[string]any{
		"prefix": "acme", "stage": "prod", "upstreamUrl": "https://api.example.org/v2",
		"routesFile": routesFile, "authorizerCacheTtl": "60", "usageIdentity": "tenant",
		"rateLimitTiers": `[{"name":"default","requests_per_minute":60,"burst":10},{"name":"standard","requests_per_minute":600,"burst":100},{"name":"high","requests_per_minute":6000,"burst":1000}]`,
		"alarmEmail":     "ops@example.org", "domainName": "api.example.org", "certificateArn": "arn:aws:acm:eu-west-1:111122223333:certificate/x",
		"distDir": "build/out", "tracing": "true", "apiGatewayCloudWatchRole": "false", "leakPolicy": "flag",
	}), repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	if s.Prefix != "acme" || s.Stage != "prod" || !s.Production || s.UpstreamURL != "https://api.example.org/v2" ||
		s.RoutesFile != routesFile || len(s.Routes.Routes) != 1 || s.Gateway.Authorizer.CacheTTLSeconds != 60 ||
		s.Gateway.UsageIdentity != "tenant" || s.AlarmEmail != "ops@example.org" || s.DomainName != "api.example.org" ||
		s.DistDir != filepath.Join(repoRoot, "build/out") || !s.Tracing || s.APIGatewayAccountRole || s.LeakPolicy != "flag" {
		t.Errorf("settings = %+v", s)
	}
	// As cdk.json holds them: JSON values.
	s, err = stack.FromContext(contextOf(map[string]any{
		"stage": "production", "production": false, "authorizerCacheTtl": float64(0), "tracing": true,
	}), repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	if s.Production || s.Gateway.Authorizer.CacheTTLSeconds != 0 || !s.Tracing {
		t.Errorf("settings = %+v", s)
	}
}

func TestSettingsRefused(t *testing.T) {
	dir := t.TempDir()
	adminRoute := filepath.Join(dir, "routes.json")
	if err := os.WriteFile(adminRoute, []byte(`{"routes":[{"method":"GET","path":"/v1/things","scope":"things:read"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	consoleRoute := filepath.Join(dir, "console.json")
	if err := os.WriteFile(consoleRoute, []byte(`{"routes":[{"method":"GET","path":"/console/{id}","scope":"things:read"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	badScope := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(badScope, []byte(`{"routes":[{"method":"GET","path":"/things","scope":"*"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, ctx := range map[string]map[string]any{
		"prefix":                {"prefix": "SK"},
		"prefix type":           {"prefix": true},
		"stage":                 {"stage": "Prod_1"},
		"long stage":            {"stage": "a-stage-name-that-is-too-long"},
		"upstream scheme":       {"upstreamUrl": "ftp://example.com"},
		"upstream slash":        {"upstreamUrl": "https://example.com/"},
		"upstream query":        {"upstreamUrl": "https://example.com?a=b"},
		"ttl":                   {"authorizerCacheTtl": "3601"},
		"ttl fraction":          {"authorizerCacheTtl": 1.5},
		"usage identity":        {"usageIdentity": "member"},
		"tiers not json":        {"rateLimitTiers": "fast"},
		"domain without cert":   {"domainName": "api.example.org"},
		"cert without domain":   {"certificateArn": "arn:aws:acm:eu-west-1:111122223333:certificate/x"},
		"domain not a host":     {"domainName": "https://api.example.org", "certificateArn": "arn:aws:acm:eu-west-1:111122223333:certificate/x"},
		"alarm email":           {"alarmEmail": "ops"},
		"routes under /v1":      {"routesFile": adminRoute},
		"routes under /console": {"routesFile": consoleRoute},
		"routes compile":        {"routesFile": badScope},
		"routes missing":        {"routesFile": filepath.Join(dir, "none.json")},
		"production not bool":   {"production": "yes please"},
		"tracing not bool":      {"tracing": 3.0},
		"account role not bool": {"apiGatewayCloudWatchRole": "maybe"},
		"leak policy":           {"leakPolicy": "ignore"},
		"rotation days":         {"pepperRotationDays": "-1"},
		"rotation days type":    {"pepperRotationDays": true},
	} {
		if _, err := stack.FromContext(contextOf(ctx), repoRoot); err == nil {
			t.Errorf("%s: %v accepted", name, ctx)
		}
	}
}

// TestSignInRefused: an OIDC provider's settings that the admin function
// would refuse, or that do not go together, and a Cognito domain prefix
// Cognito would refuse, fail synthesis naming the context key.
func TestSignInRefused(t *testing.T) {
	issuer, client, secret := "https://login.example.org", "keyward-console", "arn:aws:secretsmanager:eu-west-1:111122223333:secret:console-AbCdEf"
	oidc := func(extra map[string]any) map[string]any {
		m := map[string]any{stack.CtxOIDCIssuer: issuer, stack.CtxOIDCClientID: client, stack.CtxOIDCClientSecretARN: secret}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for name, c := range map[string]struct {
		ctx  map[string]any
		want string
	}{
		"issuer alone":           {map[string]any{stack.CtxOIDCIssuer: issuer}, "oidcClientId, oidcClientSecretArn missing"},
		"no secret":              {oidc(map[string]any{stack.CtxOIDCClientSecretARN: ""}), "oidcClientSecretArn missing"},
		"secret alone":           {map[string]any{stack.CtxOIDCClientSecretARN: secret}, "oidcIssuer, oidcClientId missing"},
		"issuer http":            {oidc(map[string]any{stack.CtxOIDCIssuer: "http://login.example.org"}), "context oidcIssuer"},
		"issuer http localhost":  {oidc(map[string]any{stack.CtxOIDCIssuer: "http://localhost:8081"}), "context oidcIssuer"},
		"issuer relative":        {oidc(map[string]any{stack.CtxOIDCIssuer: "login.example.org"}), "context oidcIssuer"},
		"secret not an arn":      {oidc(map[string]any{stack.CtxOIDCClientSecretARN: "console-secret"}), "context oidcClientSecretArn"},
		"secret parameter":       {oidc(map[string]any{stack.CtxOIDCClientSecretARN: "arn:aws:ssm:eu-west-1:111122223333:parameter/x"}), "context oidcClientSecretArn"},
		"client id spaces":       {oidc(map[string]any{stack.CtxOIDCClientID: "my client"}), "context oidcClientId"},
		"claim twice":            {oidc(map[string]any{stack.CtxOIDCRoleClaim: "custom:tenant_id"}), "context oidcRoleClaim"},
		"claim spaces":           {map[string]any{stack.CtxOIDCMemberClaim: "user id"}, "context oidcMemberClaim"},
		"domain prefix and oidc": {oidc(map[string]any{stack.CtxCognitoDomainPrefix: "acme"}), "context cognitoDomainPrefix"},
		"domain prefix case":     {map[string]any{stack.CtxCognitoDomainPrefix: "Acme"}, "context cognitoDomainPrefix"},
		"domain prefix hyphen":   {map[string]any{stack.CtxCognitoDomainPrefix: "acme-"}, "context cognitoDomainPrefix"},
		"domain prefix reserved": {map[string]any{stack.CtxCognitoDomainPrefix: "acme-cognito"}, "context cognitoDomainPrefix"},
		"stage reserved":         {map[string]any{stack.CtxStage: "laws"}, "set cognitoDomainPrefix"},
		"issuer type":            {map[string]any{stack.CtxOIDCIssuer: 42.0}, "context oidcIssuer"},
	} {
		_, err := stack.FromContext(contextOf(c.ctx), repoRoot)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
	// An OIDC provider of one's own, and a stage with a reserved word and
	// a prefix of its own, are fine.
	for _, ctx := range []map[string]any{oidc(nil), oidc(map[string]any{stack.CtxStage: "laws"}), {stack.CtxStage: "laws", stack.CtxCognitoDomainPrefix: "acme-keys"}} {
		if _, err := stack.FromContext(contextOf(ctx), repoRoot); err != nil {
			t.Errorf("%v: %v", ctx, err)
		}
	}
}

// TestDeployDocCoversContext: every context key is documented.
func TestDeployDocCoversContext(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range stack.ContextKeys {
		if !strings.Contains(string(doc), "`"+key+"`") {
			t.Errorf("docs/deploy.md does not document context key %s", key)
		}
	}
}

// TestSettingsRefusedAsTheFunctionsWould: a literal setting a function
// would refuse at start fails synthesis with the function's own message
// (config.Deployment's), behind the context key it came from.
func TestSettingsRefusedAsTheFunctionsWould(t *testing.T) {
	for name, c := range map[string]struct {
		key, value, env string
	}{
		"prefix":             {stack.CtxPrefix, "SK", config.EnvTokenPrefix},
		"ttl":                {stack.CtxAuthorizerCacheTTL, "3601", config.EnvCacheTTL},
		"usage identity":     {stack.CtxUsageIdentity, "member", config.EnvUsageIdentity},
		"tiers":              {stack.CtxRateLimitTiers, `[{"name":"x"}]`, config.EnvRateLimitTiers},
		"no tiers":           {stack.CtxRateLimitTiers, `[]`, config.EnvRateLimitTiers},
		"leak policy":        {stack.CtxLeakPolicy, "ignore", config.EnvLeakPolicy},
		"rotation days":      {stack.CtxPepperRotationDays, "-1", config.EnvPepperRotationDays},
		"long rotation days": {stack.CtxPepperRotationDays, "3651", config.EnvPepperRotationDays},
		"oidc issuer":        {stack.CtxOIDCIssuer, "http://login.example.org", config.EnvOIDCIssuer},
		"oidc client":        {stack.CtxOIDCClientID, "a client", config.EnvOIDCClientID},
		"oidc secret":        {stack.CtxOIDCClientSecretARN, "console-secret", config.EnvOIDCClientSecretARN},
		"tenant claim":       {stack.CtxOIDCTenantClaim, "the tenant", config.EnvOIDCTenantClaim},
		"role claim":         {stack.CtxOIDCRoleClaim, "the role", config.EnvOIDCRoleClaim},
		"member claim":       {stack.CtxOIDCMemberClaim, "the member", config.EnvOIDCMemberClaim},
	} {
		_, synth := stack.FromContext(contextOf(map[string]any{c.key: c.value}), repoRoot)
		_, start := config.DeploymentFromEnv(func(name string) string {
			if name == c.env {
				return c.value
			}
			return ""
		})
		if synth == nil || start == nil || !strings.Contains(synth.Error(), start.Error()) || !strings.Contains(synth.Error(), c.key) {
			t.Errorf("%s: synthesis says %v, the function %v", name, synth, start)
		}
	}
}
