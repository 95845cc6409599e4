package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/keyward/keyward/pkg/apikey"
)

// The environment variables the CDK stack sets on the Lambda functions,
// each named only here. docs/deploy.md ("Environment variables") has one
// row for each, from Variables.
const (
	EnvTable              = "KEYWARD_TABLE"
	EnvPepperKeyID        = "KEYWARD_PEPPER_KEY_ID"
	EnvTokenPrefix        = "KEYWARD_TOKEN_PREFIX"
	EnvRoutesFile         = "KEYWARD_ROUTES_FILE"
	EnvCacheTTL           = "KEYWARD_CACHE_TTL"
	EnvUsageIdentity      = "KEYWARD_USAGE_IDENTITY"
	EnvRateLimitTiers     = "KEYWARD_RATE_LIMIT_TIERS"
	EnvRestAPIID          = "KEYWARD_REST_API_ID"
	EnvStage              = "KEYWARD_STAGE"
	EnvUsagePlans         = "KEYWARD_USAGE_PLANS"
	EnvOperatorRoleARN    = "KEYWARD_OPERATOR_ROLE_ARN"
	EnvLeakPolicy         = "KEYWARD_LEAK_POLICY"
	EnvPepperRotationDays = "KEYWARD_PEPPER_ROTATION_DAYS"
	EnvEventBus           = "KEYWARD_EVENT_BUS"

	EnvOIDCIssuer          = "KEYWARD_OIDC_ISSUER"
	EnvOIDCClientID        = "KEYWARD_OIDC_CLIENT_ID"
	EnvOIDCClientSecretARN = "KEYWARD_OIDC_CLIENT_SECRET_ARN"
	EnvOIDCTenantClaim     = "KEYWARD_OIDC_TENANT_CLAIM"
	EnvOIDCRoleClaim       = "KEYWARD_OIDC_ROLE_CLAIM"
	EnvOIDCMemberClaim     = "KEYWARD_OIDC_MEMBER_CLAIM"
	EnvConsoleURL          = "KEYWARD_CONSOLE_URL"
)

// The Lambda functions, as in functions/<name>: each reads its own subset
// of the variables.
const (
	FnAuthorizer = "authorizer"
	FnAdmin      = "admin"
	FnJobs       = "jobs"
	FnPublisher  = "publisher"
	FnUsage      = "usage"
)

// Functions are the Lambda functions.
var Functions = []string{FnAuthorizer, FnAdmin, FnJobs, FnPublisher, FnUsage}

// LeakPolicy is what happens to a live key that GitHub's secret scanning
// reports exposed (package leaks applies it).
type LeakPolicy string

const (
	// LeakRevoke ends exposed keys at once, as Stripe may on its users'
	// behalf; the default.
	LeakRevoke LeakPolicy = "revoke"
	// LeakFlag only records the exposure (a key.leaked event) for the owner.
	LeakFlag LeakPolicy = "flag"
)

// MaxPepperRotationDays bounds KEYWARD_PEPPER_ROTATION_DAYS (ten years).
const MaxPepperRotationDays = 3650

// ConsolePath is where the admin function serves the members' web console
// (package console): every GET and POST at or below it (ConsoleRoutes).
const ConsolePath = "/console"

// The ID token claims the console reads by default, as the CDK stack's
// Amazon Cognito user pool issues them: its custom attributes tenant_id and
// role, and the user's subject.
const (
	DefaultTenantClaim = "custom:tenant_id"
	DefaultRoleClaim   = "custom:role"
	DefaultMemberClaim = "sub"
)

// ConsoleRoutes are the console's routes, served by the admin function
// beside the admin API: GET and POST on ConsolePath and on every path
// below it. They are public at the gateway (auth "none"): the console
// signs members in with OpenID Connect and keeps its own session. They
// are not in admin-routes.json, the JSON admin API that docs/openapi.yaml
// documents route by route, so a gateway that serves the console compiles
// them beside it (APIRoutes).
func ConsoleRoutes() RouteTable {
	var t RouteTable
	for _, path := range []string{ConsolePath, ConsolePath + "/{proxy+}"} {
		for _, method := range []string{"GET", "POST"} {
			t.Routes = append(t.Routes, Route{Method: method, Path: path, Auth: AuthNone})
		}
	}
	return t
}

// Deployment is the configuration of the deployed functions: what the CDK
// stack sets in their environment (Environ) and what they read from it
// (DeploymentFromEnv), with one validation for both (Check, Validate).
// The zero value of an optional field is the function's default.
type Deployment struct {
	Table       string // the DynamoDB table's name
	PepperKeyID string // the KMS key wrapping the peppers
	TokenPrefix string // "" for apikey.DefaultPrefix
	// RoutesFile is the protected API's route table in the authorizer's
	// bundle; "" for the shipped one.
	RoutesFile string
	// Gateway is gateway.json with the overrides the environment carries:
	// the authorizer cache TTL, the usage identity and the rate-limit
	// tiers (the tiers only when they are not gateway.json's).
	Gateway Gateway
	// RestAPIID and Stage name the stage whose authorizer cache the admin
	// and jobs functions flush.
	RestAPIID string
	Stage     string
	// UsagePlans maps each rate-limit tier to its API Gateway usage plan.
	UsagePlans map[string]string
	// OperatorRoleARN is the role whose sessions the admin function takes
	// as the platform's operators.
	OperatorRoleARN string
	LeakPolicy      LeakPolicy // "" for LeakRevoke
	// PepperRotationDays is how old the newest pepper gets before the
	// rotation job makes another; 0 for the job's default.
	PepperRotationDays int
	EventBus           string // the EventBridge bus the publisher puts events on

	// The console's sign-in, read by the admin function: the OpenID
	// Connect provider's issuer URL, the console's client at that
	// provider, and the Secrets Manager secret (its ARN) that holds the
	// client's secret. Set together with ConsoleURL, or all unset (no
	// console).
	OIDCIssuer          string
	OIDCClientID        string
	OIDCClientSecretARN string
	// The ID token claims that name a member's tenant, role and identity;
	// "" for DefaultTenantClaim, DefaultRoleClaim and DefaultMemberClaim.
	OIDCTenantClaim string
	OIDCRoleClaim   string
	OIDCMemberClaim string
	// ConsoleURL is the console's base URL, ending in ConsolePath
	// (https://api.example.com/console): the provider sends members back
	// to ConsoleCallbackURL and, on sign-out, to ConsoleLogoutURL.
	ConsoleURL string
}

// ConsoleCallbackURL is where the OpenID Connect provider sends a member
// back after sign-in (the client's redirect URI).
func (d Deployment) ConsoleCallbackURL() string { return d.ConsoleURL + "/callback" }

// ConsoleLogoutURL is where the provider sends a member after sign-out.
func (d Deployment) ConsoleLogoutURL() string { return d.ConsoleURL + "/signedout" }

// consoleVariables are the variables the console needs together.
var consoleVariables = []string{EnvOIDCIssuer, EnvOIDCClientID, EnvOIDCClientSecretARN, EnvConsoleURL}

// Variable is one environment variable: which functions it is set for,
// and whether they refuse to start without it.
type Variable struct {
	Name      string
	Functions []string
	Required  bool

	get func(Deployment) string
	set func(*Deployment, string) error
}

// Reads reports whether fn reads the variable.
func (v Variable) Reads(fn string) bool { return slices.Contains(v.Functions, fn) }

var (
	keyed    = []string{FnAuthorizer, FnAdmin, FnJobs} // the functions that use the table
	flushing = []string{FnAdmin, FnJobs}               // the functions that flush and provision
)

// Variables are every variable, in the order docs/deploy.md lists them.
var Variables = []Variable{
	{Name: EnvTable, Functions: append(slices.Clone(keyed), FnUsage), Required: true,
		get: func(d Deployment) string { return d.Table }, set: func(d *Deployment, v string) error { d.Table = v; return nil }},
	{Name: EnvPepperKeyID, Functions: keyed, Required: true,
		get: func(d Deployment) string { return d.PepperKeyID }, set: func(d *Deployment, v string) error { d.PepperKeyID = v; return nil }},
	{Name: EnvTokenPrefix, Functions: keyed,
		get: func(d Deployment) string { return d.TokenPrefix }, set: func(d *Deployment, v string) error { d.TokenPrefix = v; return nil }},
	{Name: EnvRoutesFile, Functions: []string{FnAuthorizer},
		get: func(d Deployment) string { return d.RoutesFile }, set: func(d *Deployment, v string) error { d.RoutesFile = v; return nil }},
	{Name: EnvCacheTTL, Functions: keyed,
		get: func(d Deployment) string { return strconv.Itoa(d.Gateway.Authorizer.CacheTTLSeconds) },
		set: func(d *Deployment, v string) (err error) {
			d.Gateway.Authorizer.CacheTTLSeconds, err = ParseCacheTTL(v)
			return err
		}},
	{Name: EnvUsageIdentity, Functions: keyed,
		get: func(d Deployment) string { return d.Gateway.UsageIdentity },
		set: func(d *Deployment, v string) error { d.Gateway.UsageIdentity = v; return nil }},
	{Name: EnvRateLimitTiers, Functions: keyed,
		get: func(d Deployment) string { return formatTiers(d.Gateway.RateLimitTiers) },
		set: func(d *Deployment, v string) (err error) {
			d.Gateway.RateLimitTiers, err = ParseRateLimitTiers(v)
			return err
		}},
	{Name: EnvRestAPIID, Functions: flushing, Required: true,
		get: func(d Deployment) string { return d.RestAPIID }, set: func(d *Deployment, v string) error { d.RestAPIID = v; return nil }},
	{Name: EnvStage, Functions: flushing, Required: true,
		get: func(d Deployment) string { return d.Stage }, set: func(d *Deployment, v string) error { d.Stage = v; return nil }},
	{Name: EnvUsagePlans, Functions: flushing, Required: true,
		get: func(d Deployment) string { return formatPlans(d.UsagePlans, d.Gateway.RateLimitTiers) },
		set: func(d *Deployment, v string) (err error) {
			d.UsagePlans, err = ParseUsagePlans(v)
			return err
		}},
	{Name: EnvOperatorRoleARN, Functions: []string{FnAdmin}, Required: true,
		get: func(d Deployment) string { return d.OperatorRoleARN }, set: func(d *Deployment, v string) error { d.OperatorRoleARN = v; return nil }},
	{Name: EnvLeakPolicy, Functions: []string{FnAdmin},
		get: func(d Deployment) string { return string(d.LeakPolicy) },
		set: func(d *Deployment, v string) error { d.LeakPolicy = LeakPolicy(v); return nil }},
	{Name: EnvPepperRotationDays, Functions: []string{FnJobs},
		get: func(d Deployment) string {
			if d.PepperRotationDays == 0 {
				return ""
			}
			return strconv.Itoa(d.PepperRotationDays)
		},
		set: func(d *Deployment, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("%q is not a whole number of days", v)
			}
			if n < 1 {
				return badDays(n)
			}
			d.PepperRotationDays = n
			return nil
		}},
	{Name: EnvEventBus, Functions: []string{FnPublisher}, Required: true,
		get: func(d Deployment) string { return d.EventBus }, set: func(d *Deployment, v string) error { d.EventBus = v; return nil }},
	{Name: EnvOIDCIssuer, Functions: []string{FnAdmin},
		get: func(d Deployment) string { return d.OIDCIssuer }, set: func(d *Deployment, v string) error { d.OIDCIssuer = v; return nil }},
	{Name: EnvOIDCClientID, Functions: []string{FnAdmin},
		get: func(d Deployment) string { return d.OIDCClientID }, set: func(d *Deployment, v string) error { d.OIDCClientID = v; return nil }},
	{Name: EnvOIDCClientSecretARN, Functions: []string{FnAdmin},
		get: func(d Deployment) string { return d.OIDCClientSecretARN }, set: func(d *Deployment, v string) error { d.OIDCClientSecretARN = v; return nil }},
	{Name: EnvOIDCTenantClaim, Functions: []string{FnAdmin},
		get: func(d Deployment) string { return d.OIDCTenantClaim }, set: func(d *Deployment, v string) error { d.OIDCTenantClaim = v; return nil }},
	{Name: EnvOIDCRoleClaim, Functions: []string{FnAdmin},
		get: func(d Deployment) string { return d.OIDCRoleClaim }, set: func(d *Deployment, v string) error { d.OIDCRoleClaim = v; return nil }},
	{Name: EnvOIDCMemberClaim, Functions: []string{FnAdmin},
		get: func(d Deployment) string { return d.OIDCMemberClaim }, set: func(d *Deployment, v string) error { d.OIDCMemberClaim = v; return nil }},
	{Name: EnvConsoleURL, Functions: []string{FnAdmin},
		get: func(d Deployment) string { return d.ConsoleURL }, set: func(d *Deployment, v string) error { d.ConsoleURL = v; return nil }},
}

// VariableError is a variable with a value the functions refuse.
type VariableError struct {
	Name string // the variable, one of the Env constants
	Err  error
}

func (e *VariableError) Error() string { return "config: " + e.Name + ": " + e.Err.Error() }
func (e *VariableError) Unwrap() error { return e.Err }

func badDays(n int) error {
	return fmt.Errorf("%d days is outside 1..%d", n, MaxPepperRotationDays)
}

func refuse(name, format string, args ...any) error {
	return &VariableError{Name: name, Err: fmt.Errorf(format, args...)}
}

// DeploymentFromEnv reads the variables with getenv (os.Getenv) and checks
// every value that is set; Validate then checks that a function has what
// it needs. An unset optional variable leaves the default: gateway.json's
// settings, apikey.DefaultPrefix, LeakRevoke, the default claims.
func DeploymentFromEnv(getenv func(string) string) (Deployment, error) {
	gw, err := LoadGateway()
	if err != nil {
		return Deployment{}, err
	}
	d := Deployment{Gateway: gw}
	for _, v := range Variables {
		if value := getenv(v.Name); value != "" {
			if err := v.set(&d, value); err != nil {
				return Deployment{}, &VariableError{Name: v.Name, Err: err}
			}
		}
	}
	if d.TokenPrefix == "" {
		d.TokenPrefix = apikey.DefaultPrefix
	}
	if d.LeakPolicy == "" {
		d.LeakPolicy = LeakRevoke
	}
	for _, c := range []struct {
		claim *string
		def   string
	}{
		{&d.OIDCTenantClaim, DefaultTenantClaim}, {&d.OIDCRoleClaim, DefaultRoleClaim}, {&d.OIDCMemberClaim, DefaultMemberClaim},
	} {
		if *c.claim == "" {
			*c.claim = c.def
		}
	}
	return d, d.Check()
}

// Check validates the settings that have values of their own, whatever
// the function: those the CDK stack knows at synthesis, so that it
// refuses what a function would refuse at start.
func (d Deployment) Check() error {
	if d.TokenPrefix != "" {
		if _, err := apikey.NewFormat(d.TokenPrefix); err != nil {
			return &VariableError{Name: EnvTokenPrefix, Err: err}
		}
	}
	if err := d.Gateway.Validate(); err != nil {
		return fmt.Errorf("%w, in gateway.json with %s, %s and %s", err, EnvCacheTTL, EnvUsageIdentity, EnvRateLimitTiers)
	}
	if d.LeakPolicy != "" && d.LeakPolicy != LeakRevoke && d.LeakPolicy != LeakFlag {
		return refuse(EnvLeakPolicy, "%q must be %s or %s", d.LeakPolicy, LeakRevoke, LeakFlag)
	}
	if d.PepperRotationDays < 0 || d.PepperRotationDays > MaxPepperRotationDays {
		return &VariableError{Name: EnvPepperRotationDays, Err: badDays(d.PepperRotationDays)}
	}
	for tier, id := range d.UsagePlans {
		if tier == "" || id == "" || strings.ContainsAny(tier+id, ",=") {
			return refuse(EnvUsagePlans, "tier %q, plan %q: want a name and an id without commas or equals signs", tier, id)
		}
	}
	return d.checkConsole()
}

// checkConsole checks the console's settings that are set.
func (d Deployment) checkConsole() error {
	if d.OIDCIssuer != "" {
		if err := checkBaseURL(d.OIDCIssuer); err != nil {
			return refuse(EnvOIDCIssuer, "%q: %v", d.OIDCIssuer, err)
		}
	}
	if d.OIDCClientID != "" && !printable(d.OIDCClientID) {
		return refuse(EnvOIDCClientID, "%q has spaces or control characters", d.OIDCClientID)
	}
	if d.OIDCClientSecretARN != "" && !secretARN(d.OIDCClientSecretARN) {
		return refuse(EnvOIDCClientSecretARN, "%q is not a Secrets Manager secret's ARN (arn:<partition>:secretsmanager:<region>:<account>:secret:<name>)", d.OIDCClientSecretARN)
	}
	claims := map[string]string{}
	for _, c := range []struct{ name, claim, def string }{
		{EnvOIDCTenantClaim, d.OIDCTenantClaim, DefaultTenantClaim},
		{EnvOIDCRoleClaim, d.OIDCRoleClaim, DefaultRoleClaim},
		{EnvOIDCMemberClaim, d.OIDCMemberClaim, DefaultMemberClaim},
	} {
		claim := c.claim
		if claim == "" {
			claim = c.def
		} else if !printable(claim) {
			return refuse(c.name, "claim %q has spaces or control characters", claim)
		}
		if other, dup := claims[claim]; dup {
			return refuse(c.name, "claim %q is %s's too: the tenant, the role and the member are three claims", claim, other)
		}
		claims[claim] = c.name
	}
	if d.ConsoleURL != "" {
		err := checkBaseURL(d.ConsoleURL)
		if u, _ := url.Parse(d.ConsoleURL); err == nil && !strings.HasSuffix(u.Path, ConsolePath) {
			err = fmt.Errorf("the path must end in %s, where the console is served", ConsolePath)
		}
		if err == nil && strings.HasSuffix(d.ConsoleURL, "/") {
			err = fmt.Errorf("drop the trailing slash")
		}
		if err != nil {
			return refuse(EnvConsoleURL, "%q: %v", d.ConsoleURL, err)
		}
	}
	return nil
}

// checkBaseURL admits an https URL without query, fragment or
// credentials; http only on the loopback interface (a local provider).
func checkBaseURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("not an absolute URL")
	}
	loopback := u.Hostname() == "localhost" || u.Hostname() == "127.0.0.1" || u.Hostname() == "::1"
	if u.Scheme != "https" && !(u.Scheme == "http" && loopback) {
		return fmt.Errorf("must be https (http only for localhost)")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("must have no query, fragment or credentials")
	}
	return nil
}

// printable reports whether v has no spaces and no control characters.
func printable(v string) bool {
	return !strings.ContainsFunc(v, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) })
}

// secretARN reports whether v is a Secrets Manager secret's ARN.
func secretARN(v string) bool {
	parts := strings.SplitN(v, ":", 7)
	return len(parts) == 7 && parts[0] == "arn" && parts[1] != "" && parts[2] == "secretsmanager" &&
		parts[3] != "" && parts[4] != "" && parts[5] == "secret" && parts[6] != "" && printable(v)
}

// Validate checks d as fn needs it: Check, every variable fn requires,
// and a usage plan for every tier where fn provisions keys into them.
func (d Deployment) Validate(fn string) error {
	if !slices.Contains(Functions, fn) {
		return fmt.Errorf("config: no function %q (%s)", fn, strings.Join(Functions, ", "))
	}
	if err := d.Check(); err != nil {
		return err
	}
	var missing []string
	for _, v := range Variables {
		if v.Required && v.Reads(fn) && v.get(d) == "" {
			missing = append(missing, v.Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("config: the %s function needs %s", fn, strings.Join(missing, ", "))
	}
	// The console's settings: all or none.
	var set []string
	missing = nil
	for _, v := range Variables {
		if slices.Contains(consoleVariables, v.Name) && v.Reads(fn) {
			if v.get(d) == "" {
				missing = append(missing, v.Name)
			} else {
				set = append(set, v.Name)
			}
		}
	}
	if len(set) > 0 && len(missing) > 0 {
		return fmt.Errorf("config: the console needs %s together: %s set, %s not", strings.Join(consoleVariables, ", "),
			strings.Join(set, ", "), strings.Join(missing, ", "))
	}
	if slices.Contains(flushing, fn) {
		for _, t := range d.Gateway.RateLimitTiers {
			if d.UsagePlans[t.Name] == "" {
				return refuse(EnvUsagePlans, "no plan for tier %q", t.Name)
			}
		}
	}
	return nil
}

// Environ is the environment of fn: every variable it reads that has a
// value, the rate-limit tiers only when they are not gateway.json's.
func (d Deployment) Environ(fn string) map[string]string {
	env := map[string]string{}
	for _, v := range Variables {
		if value := v.get(d); v.Reads(fn) && value != "" {
			env[v.Name] = value
		}
	}
	return env
}

// ParseCacheTTL reads KEYWARD_CACHE_TTL, a number of seconds (its range
// is Gateway.Validate's).
func ParseCacheTTL(v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number of seconds", v)
	}
	return n, nil
}

// ParseRateLimitTiers reads KEYWARD_RATE_LIMIT_TIERS, a JSON array like
// gateway.json's rate_limit_tiers.
func ParseRateLimitTiers(v string) ([]Tier, error) {
	var tiers []Tier
	if err := decodeStrict([]byte(v), &tiers); err != nil {
		return nil, fmt.Errorf(`want a JSON array of {"name","requests_per_minute","burst"}: %w`, err)
	}
	return tiers, nil
}

// ParseUsagePlans reads KEYWARD_USAGE_PLANS: tier=plan-id pairs separated
// by commas.
func ParseUsagePlans(v string) (map[string]string, error) {
	plans := map[string]string{}
	for _, pair := range strings.Split(v, ",") {
		tier, id, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || tier == "" || id == "" {
			return nil, fmt.Errorf("entry %q is not tier=plan-id", pair)
		}
		if _, dup := plans[tier]; dup {
			return nil, fmt.Errorf("tier %q twice", tier)
		}
		plans[tier] = id
	}
	return plans, nil
}

// formatTiers is KEYWARD_RATE_LIMIT_TIERS, or "" for gateway.json's tiers.
func formatTiers(tiers []Tier) string {
	if len(tiers) == 0 {
		return ""
	}
	if shipped, err := LoadGateway(); err == nil && slices.Equal(tiers, shipped.RateLimitTiers) {
		return ""
	}
	data, _ := json.Marshal(tiers) // a slice of plain structs always encodes
	return string(data)
}

// formatPlans is KEYWARD_USAGE_PLANS: the tiers' plans in tier order,
// then any others by name.
func formatPlans(plans map[string]string, tiers []Tier) string {
	var pairs []string
	seen := map[string]bool{}
	for _, t := range tiers {
		if id, ok := plans[t.Name]; ok && !seen[t.Name] {
			pairs = append(pairs, t.Name+"="+id)
			seen[t.Name] = true
		}
	}
	for _, tier := range slices.Sorted(maps.Keys(plans)) {
		if !seen[tier] {
			pairs = append(pairs, tier+"="+plans[tier])
		}
	}
	return strings.Join(pairs, ",")
}
