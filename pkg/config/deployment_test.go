package config

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/apikey"
)

func envOf(m map[string]string) func(string) string {
	return func(name string) string { return m[name] }
}

// deployed is a deployment with every setting changed from its default.
func deployed(t *testing.T) Deployment {
	t.Helper()
	gw, err := LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	gw.Authorizer.CacheTTLSeconds = 0
	gw.UsageIdentity = UsagePerTenant
	gw.RateLimitTiers = []Tier{{Name: "default", RequestsPerMinute: 120, Burst: 20}, {Name: "bulk", RequestsPerMinute: 60000, Burst: 5000}}
	return Deployment{
		Table: "keyward-dev", PepperKeyID: "arn:aws:kms:eu-west-1:111122223333:key/k", TokenPrefix: "acme",
		RoutesFile: "/opt/keyward/routes.json", Gateway: gw, RestAPIID: "abc123", Stage: "dev",
		UsagePlans:      map[string]string{"default": "p1", "bulk": "p2"},
		OperatorRoleARN: "arn:aws:iam::111122223333:role/keyward-dev-operator", LeakPolicy: LeakFlag,
		PepperRotationDays: 30, EventBus: "keyward-dev",
		OIDCIssuer: "https://login.example.com/tenant-1/", OIDCClientID: "console-client",
		OIDCClientSecretARN: "arn:aws:secretsmanager:eu-west-1:111122223333:secret:keyward-console-AbCdEf",
		OIDCTenantClaim:     "https://example.com/tenant", OIDCRoleClaim: "roles", OIDCMemberClaim: "email",
		ConsoleURL: "https://api.example.com/console",
	}
}

// TestDeploymentRoundTrip: what Environ sets for each function is what
// that function reads back, and passes its validation.
func TestDeploymentRoundTrip(t *testing.T) {
	d := deployed(t)
	all := map[string]string{}
	for _, fn := range Functions {
		env := d.Environ(fn)
		got, err := DeploymentFromEnv(envOf(env))
		if err == nil {
			err = got.Validate(fn)
		}
		if err != nil {
			t.Fatalf("%s: %v (environment %v)", fn, err, env)
		}
		for _, v := range Variables {
			if v.Reads(fn) && v.get(got) != v.get(d) {
				t.Errorf("%s %s: read %q, set %q", fn, v.Name, v.get(got), v.get(d))
			}
			if !v.Reads(fn) && env[v.Name] != "" {
				t.Errorf("%s gets %s, which it does not read", fn, v.Name)
			}
		}
		for k, v := range env {
			all[k] = v
		}
	}
	// Between them the functions get every variable.
	for _, v := range Variables {
		if all[v.Name] == "" {
			t.Errorf("no function gets %s", v.Name)
		}
	}
	if got, _ := DeploymentFromEnv(envOf(all)); !reflect.DeepEqual(got, d) {
		t.Errorf("read back\n %+v\nwant\n %+v", got, d)
	}
	if plans := d.Environ(FnAdmin)[EnvUsagePlans]; plans != "default=p1,bulk=p2" {
		t.Errorf("%s = %q, want the tiers' order", EnvUsagePlans, plans)
	}
}

func TestDeploymentDefaults(t *testing.T) {
	d, err := DeploymentFromEnv(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := LoadGateway()
	if d.TokenPrefix != apikey.DefaultPrefix || d.LeakPolicy != LeakRevoke || d.PepperRotationDays != 0 || !reflect.DeepEqual(d.Gateway, gw) {
		t.Errorf("defaults %+v", d)
	}
	// The claims of the CDK stack's Cognito user pool; no console.
	if d.OIDCTenantClaim != "custom:tenant_id" || d.OIDCRoleClaim != "custom:role" || d.OIDCMemberClaim != "sub" ||
		d.OIDCIssuer != "" || d.ConsoleURL != "" {
		t.Errorf("console defaults %+v", d)
	}
	for _, fn := range Functions {
		if err := d.Validate(fn); err == nil || !strings.Contains(err.Error(), "needs") {
			t.Errorf("%s starts with nothing set: %v", fn, err)
		}
	}
	// The shipped tiers are not passed.
	d.Table, d.PepperKeyID = "t", "k"
	if _, ok := d.Environ(FnAuthorizer)[EnvRateLimitTiers]; ok {
		t.Errorf("the shipped tiers are set: %v", d.Environ(FnAuthorizer))
	}
	if err := d.Validate("rotation"); err == nil {
		t.Error("an unknown function validated")
	}
}

// TestDeploymentRefused: every bad value is refused, naming its variable.
func TestDeploymentRefused(t *testing.T) {
	for name, c := range map[string]struct{ name, value string }{
		"prefix":             {EnvTokenPrefix, "SK"},
		"long prefix":        {EnvTokenPrefix, "abcdefghij"},
		"ttl not a number":   {EnvCacheTTL, "soon"},
		"ttl too long":       {EnvCacheTTL, "7200"},
		"ttl negative":       {EnvCacheTTL, "-1"},
		"usage identity":     {EnvUsageIdentity, "member"},
		"tiers not json":     {EnvRateLimitTiers, "nope"},
		"tiers empty":        {EnvRateLimitTiers, "[]"},
		"tier without rate":  {EnvRateLimitTiers, `[{"name":"x"}]`},
		"tier unknown field": {EnvRateLimitTiers, `[{"name":"x","requests_per_minute":1,"burst":1,"rpm":2}]`},
		"plans not pairs":    {EnvUsagePlans, "default"},
		"plans empty id":     {EnvUsagePlans, "default="},
		"plans twice":        {EnvUsagePlans, "default=a,default=b"},
		"leak policy":        {EnvLeakPolicy, "ignore"},
		"rotation days":      {EnvPepperRotationDays, "0"},
		"rotation days long": {EnvPepperRotationDays, "3651"},
		"rotation days word": {EnvPepperRotationDays, "monthly"},
		"issuer http":        {EnvOIDCIssuer, "http://login.example.com"},
		"issuer relative":    {EnvOIDCIssuer, "login.example.com"},
		"issuer query":       {EnvOIDCIssuer, "https://login.example.com/?tenant=1"},
		"client id space":    {EnvOIDCClientID, "my client"},
		"secret not an arn":  {EnvOIDCClientSecretARN, "keyward-console"},
		"secret of ssm":      {EnvOIDCClientSecretARN, "arn:aws:ssm:eu-west-1:111122223333:parameter/x"},
		"secret no name":     {EnvOIDCClientSecretARN, "arn:aws:secretsmanager:eu-west-1:111122223333:secret:"},
		"tenant claim space": {EnvOIDCTenantClaim, "tenant id"},
		"role is tenant":     {EnvOIDCRoleClaim, "custom:tenant_id"},
		"member is role":     {EnvOIDCMemberClaim, "custom:role"},
		"console http":       {EnvConsoleURL, "http://api.example.com/console"},
		"console path":       {EnvConsoleURL, "https://api.example.com/admin"},
		"console slash":      {EnvConsoleURL, "https://api.example.com/console/"},
		"console query":      {EnvConsoleURL, "https://api.example.com/console?x=1"},
	} {
		_, err := DeploymentFromEnv(envOf(map[string]string{c.name: c.value}))
		if err == nil {
			t.Errorf("%s: %s=%s accepted", name, c.name, c.value)
			continue
		}
		var ve *VariableError
		if !strings.Contains(err.Error(), c.name) && !(errors.As(err, &ve) && ve.Name == c.name) {
			t.Errorf("%s: %v does not name %s", name, err, c.name)
		}
	}
}

// TestCheckIsTheParsersCheck: a setting known before deployment (as the
// CDK stack knows it) is refused by Check with the message the parser
// gives the same value, so synthesis refuses what a function would.
func TestCheckIsTheParsersCheck(t *testing.T) {
	for name, c := range map[string]struct {
		set   func(*Deployment)
		name  string
		value string
	}{
		"prefix":         {func(d *Deployment) { d.TokenPrefix = "SK" }, EnvTokenPrefix, "SK"},
		"ttl":            {func(d *Deployment) { d.Gateway.Authorizer.CacheTTLSeconds = 7200 }, EnvCacheTTL, "7200"},
		"usage identity": {func(d *Deployment) { d.Gateway.UsageIdentity = "member" }, EnvUsageIdentity, "member"},
		"tiers":          {func(d *Deployment) { d.Gateway.RateLimitTiers = []Tier{{Name: "x"}} }, EnvRateLimitTiers, `[{"name":"x","requests_per_minute":0,"burst":0}]`},
		"leak policy":    {func(d *Deployment) { d.LeakPolicy = "ignore" }, EnvLeakPolicy, "ignore"},
		"rotation days":  {func(d *Deployment) { d.PepperRotationDays = -1 }, EnvPepperRotationDays, "-1"},
		"long rotation":  {func(d *Deployment) { d.PepperRotationDays = 4000 }, EnvPepperRotationDays, "4000"},
		"issuer":         {func(d *Deployment) { d.OIDCIssuer = "http://login.example.com" }, EnvOIDCIssuer, "http://login.example.com"},
		"secret":         {func(d *Deployment) { d.OIDCClientSecretARN = "nope" }, EnvOIDCClientSecretARN, "nope"},
		"claim":          {func(d *Deployment) { d.OIDCRoleClaim = "the role" }, EnvOIDCRoleClaim, "the role"},
		"console url":    {func(d *Deployment) { d.ConsoleURL = "https://x.example.com/app" }, EnvConsoleURL, "https://x.example.com/app"},
	} {
		d := deployed(t)
		c.set(&d)
		checked := d.Check()
		_, parsed := DeploymentFromEnv(envOf(map[string]string{c.name: c.value}))
		if checked == nil || parsed == nil || checked.Error() != parsed.Error() {
			t.Errorf("%s: Check says %v, the parser %v", name, checked, parsed)
		}
	}
}

// TestConsoleSettings: the console's provider, client, secret and URL go
// together; the loopback interface may use http (a local provider); the
// provider's URLs come from the console's.
func TestConsoleSettings(t *testing.T) {
	d := deployed(t)
	env := d.Environ(FnAdmin)
	for _, name := range consoleVariables {
		less := maps.Clone(env)
		delete(less, name)
		got, err := DeploymentFromEnv(envOf(less))
		if err == nil {
			err = got.Validate(FnAdmin)
		}
		if err == nil || !strings.Contains(err.Error(), name+" not") {
			t.Errorf("without %s: %v", name, err)
		}
	}
	// None of them: the admin function starts, without a console.
	less := maps.Clone(env)
	for _, name := range consoleVariables {
		delete(less, name)
	}
	if got, err := DeploymentFromEnv(envOf(less)); err != nil || got.Validate(FnAdmin) != nil {
		t.Errorf("without a console: %v", err)
	}
	local := map[string]string{EnvOIDCIssuer: "http://127.0.0.1:8081", EnvConsoleURL: "http://localhost:8080/console"}
	if _, err := DeploymentFromEnv(envOf(local)); err != nil {
		t.Errorf("local provider: %v", err)
	}
	if got, want := d.ConsoleCallbackURL(), "https://api.example.com/console/callback"; got != want {
		t.Errorf("callback %q, want %q", got, want)
	}
	if got, want := d.ConsoleLogoutURL(), "https://api.example.com/console/signedout"; got != want {
		t.Errorf("logout %q, want %q", got, want)
	}
}

// TestConsoleRoutes: GET and POST on /console and below, public, and
// they compile beside the admin routes.
func TestConsoleRoutes(t *testing.T) {
	var got []string
	for _, r := range ConsoleRoutes().Routes {
		if r.Auth != AuthNone || r.Scope != "" {
			t.Errorf("%s %s: auth %q scope %q", r.Method, r.Path, r.Auth, r.Scope)
		}
		got = append(got, r.Method+" "+r.Path)
	}
	want := []string{"GET /console", "POST /console", "GET /console/{proxy+}", "POST /console/{proxy+}"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("console routes %v, want %v", got, want)
	}
	for _, r := range AdminRoutes().Routes {
		if r.Path == ConsolePath || strings.HasPrefix(r.Path, ConsolePath+"/") {
			t.Errorf("admin route %s %s is the console's", r.Method, r.Path)
		}
	}
}

// TestEveryVariableIsDocumented: docs/deploy.md's table has a row for
// each variable, naming the functions that read it.
func TestEveryVariableIsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(doc), "\n") {
		if cells := strings.Split(line, "|"); len(cells) > 3 && strings.HasPrefix(strings.TrimSpace(cells[1]), "`KEYWARD_") {
			rows[strings.Trim(strings.TrimSpace(cells[1]), "`")] = cells[2]
		}
	}
	for _, v := range Variables {
		row, ok := rows[v.Name]
		if !ok {
			t.Errorf("docs/deploy.md has no row for %s", v.Name)
			continue
		}
		for _, fn := range Functions {
			if strings.Contains(row, fn) != v.Reads(fn) {
				t.Errorf("docs/deploy.md: %s: functions %q, want %v", v.Name, strings.TrimSpace(row), v.Functions)
			}
		}
		delete(rows, v.Name)
	}
	for name := range rows {
		t.Errorf("docs/deploy.md documents %s, which no function reads", name)
	}
}
