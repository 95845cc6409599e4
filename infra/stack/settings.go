// Package stack is keyward's AWS CDK stack: the DynamoDB table, the KMS
// keys, the four Lambda functions, the REST API with its authorizer and
// usage plans, the event bus and schedules, and the alarms and dashboard.
//
// Everything the functions and the local stack also read comes from the
// main module, never from a copy: the route tables and gateway settings
// from package config (with the integration headers), the table layout
// from package dynamo, the job schedules from jobs.Schedules, the metric
// names from package authorizer.
package stack

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/route"
)

// Context keys the app reads (cdk.json "context", or -c key=value).
const (
	CtxPrefix                = "prefix"
	CtxStage                 = "stage"
	CtxProduction            = "production"
	CtxUpstreamURL           = "upstreamUrl"
	CtxRoutesFile            = "routesFile"
	CtxAuthorizerCacheTTL    = "authorizerCacheTtl"
	CtxUsageIdentity         = "usageIdentity"
	CtxRateLimitTiers        = "rateLimitTiers"
	CtxAlarmEmail            = "alarmEmail"
	CtxAlertEmail            = "alertEmail"
	CtxAlertEvents           = "alertEvents"
	CtxDomainName            = "domainName"
	CtxCertificateARN        = "certificateArn"
	CtxDistDir               = "distDir"
	CtxTracing               = "tracing"
	CtxAPIGatewayAccountRole = "apiGatewayCloudWatchRole"
	CtxLeakPolicy            = "leakPolicy"
	CtxPepperRotationDays    = "pepperRotationDays"
	CtxCognitoDomainPrefix   = "cognitoDomainPrefix"
	CtxOIDCIssuer            = "oidcIssuer"
	CtxOIDCClientID          = "oidcClientId"
	CtxOIDCClientSecretARN   = "oidcClientSecretArn"
	CtxOIDCTenantClaim       = "oidcTenantClaim"
	CtxOIDCRoleClaim         = "oidcRoleClaim"
	CtxOIDCMemberClaim       = "oidcMemberClaim"
)

// ContextKeys lists every key (docs/deploy.md documents each).
var ContextKeys = []string{
	CtxPrefix, CtxStage, CtxProduction, CtxUpstreamURL, CtxRoutesFile, CtxAuthorizerCacheTTL,
	CtxUsageIdentity, CtxRateLimitTiers, CtxAlarmEmail, CtxAlertEmail, CtxAlertEvents, CtxDomainName, CtxCertificateARN,
	CtxDistDir, CtxTracing, CtxAPIGatewayAccountRole, CtxLeakPolicy, CtxPepperRotationDays,
	CtxCognitoDomainPrefix, CtxOIDCIssuer, CtxOIDCClientID, CtxOIDCClientSecretARN,
	CtxOIDCTenantClaim, CtxOIDCRoleClaim, CtxOIDCMemberClaim,
}

// Defaults that do not come from package config.
const (
	DefaultStage = "dev"
	// PlaceholderUpstream deploys, but answers nothing useful: set
	// upstreamUrl to the protected API's own base URL.
	PlaceholderUpstream = "https://example.com"
	// PlaceholderWarning is the stack's warning while upstreamUrl is the
	// placeholder (the CDK CLI prints it; make synth too).
	PlaceholderWarning = "upstreamUrl is the placeholder " + PlaceholderUpstream + ": the protected routes forward there; deploy with -c upstreamUrl=https://your-api"
)

// productionStages turn on deletion protection and RETAIN when the
// production key is not set.
var productionStages = []string{"prod", "production"}

// Functions are the Lambda functions, each built by `make build` as
// <distDir>/<name>/bootstrap.
var Functions = config.Functions

// Function names, as in functions/<name>.
const (
	FnAuthorizer = config.FnAuthorizer
	FnAdmin      = config.FnAdmin
	FnJobs       = config.FnJobs
	FnPublisher  = config.FnPublisher
	FnUsage      = config.FnUsage
)

// Settings is the stack's configuration.
type Settings struct {
	Prefix string // token prefix (config.EnvTokenPrefix)
	Stage  string // API stage, and part of every name
	// Production turns on the table's deletion protection and RETAIN on
	// the table, the keys and the log groups.
	Production  bool
	UpstreamURL string // the protected API's base URL, without a trailing slash
	// Routes is the protected API's route table; RoutesFile the file it
	// came from ("" for the shipped table, which the functions embed).
	Routes     config.RouteTable
	RoutesFile string
	// Gateway is pkg/config/gateway.json with the deployed overrides.
	Gateway    config.Gateway
	AlarmEmail string
	// AlertEmail, if set, is subscribed to the alerts topic, which gets
	// the key events of AlertEvents (default DefaultAlertEvents).
	AlertEmail     string
	AlertEvents    []string
	DomainName     string // optional custom domain, with CertificateARN
	CertificateARN string
	// DistDir holds <function>/bootstrap. When a bootstrap is missing the
	// stack still synthesizes, with a placeholder, and carries an error
	// annotation, so that `cdk deploy` refuses it.
	DistDir string
	Tracing bool // X-Ray tracing on the API stage
	// APIGatewayAccountRole creates the account-wide role API Gateway
	// needs to write access logs (AWS::ApiGateway::Account). Turn it off
	// when the account already has one.
	APIGatewayAccountRole bool
	// LeakPolicy is what a leaked live key reported by GitHub's secret
	// scanning gets (config.EnvLeakPolicy); "" leaves the admin
	// function's default, revoke.
	LeakPolicy config.LeakPolicy
	// PepperRotationDays is how old the newest pepper gets before the
	// rotation job makes another (config.EnvPepperRotationDays); 0 leaves
	// the job's default, 90.
	PepperRotationDays int

	// The members' sign-in to the console. With OIDCIssuer empty (the
	// default) the stack creates an Amazon Cognito user pool, its hosted
	// sign-in domain (CognitoDomainPrefix, "" for one derived from the
	// stack's name) and the console's app client. Otherwise the console
	// signs members in with that issuer, as the client OIDCClientID whose
	// secret is in the Secrets Manager secret OIDCClientSecretARN.
	CognitoDomainPrefix string
	OIDCIssuer          string
	OIDCClientID        string
	OIDCClientSecretARN string
	// The ID token's claims that name a member's tenant, role and
	// identity (config.EnvOIDCTenantClaim …): by default the user pool's.
	TenantClaim string
	RoleClaim   string
	MemberClaim string
}

// Cognito reports whether the stack creates the members' user pool, rather
// than using an OIDC provider of the deployer's.
func (s Settings) Cognito() bool { return s.OIDCIssuer == "" }

// StackName is the CloudFormation stack's name, and the prefix of the
// functions' names.
func (s Settings) StackName() string { return "keyward-" + s.Stage }

// stageName: API Gateway allows [A-Za-z0-9_-]; this also keeps function
// names ("keyward-<stage>-authorizer") within 64 characters.
var stageName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)

// FromContext reads the settings. get returns a context value (nil when
// unset): a string from -c key=value, or any JSON value from cdk.json.
// root is the repository root, against which relative paths resolve.
func FromContext(get func(key string) any, root string) (Settings, error) {
	gw, err := config.LoadGateway()
	if err != nil {
		return Settings{}, err
	}
	s := Settings{
		Prefix:                apikey.DefaultPrefix,
		Stage:                 DefaultStage,
		UpstreamURL:           PlaceholderUpstream,
		Gateway:               gw,
		DistDir:               filepath.Join(root, "dist"),
		APIGatewayAccountRole: true,
		TenantClaim:           config.DefaultTenantClaim,
		RoleClaim:             config.DefaultRoleClaim,
		MemberClaim:           config.DefaultMemberClaim,
	}
	c := contextReader{get: get, root: root}
	c.str(CtxPrefix, &s.Prefix)
	c.str(CtxStage, &s.Stage)
	s.Production = slices.Contains(productionStages, s.Stage)
	c.boolean(CtxProduction, &s.Production)
	c.str(CtxUpstreamURL, &s.UpstreamURL)
	c.path(CtxRoutesFile, &s.RoutesFile)
	c.whole(CtxAuthorizerCacheTTL, &s.Gateway.Authorizer.CacheTTLSeconds)
	c.whole(CtxPepperRotationDays, &s.PepperRotationDays)
	c.str(CtxUsageIdentity, &s.Gateway.UsageIdentity)
	c.tiers(CtxRateLimitTiers, &s.Gateway.RateLimitTiers)
	c.str(CtxAlarmEmail, &s.AlarmEmail)
	c.str(CtxAlertEmail, &s.AlertEmail)
	var events string
	c.str(CtxAlertEvents, &events)
	if events != "" {
		s.AlertEvents = strings.Split(events, ",")
	}
	c.str(CtxDomainName, &s.DomainName)
	c.str(CtxCertificateARN, &s.CertificateARN)
	c.path(CtxDistDir, &s.DistDir)
	c.boolean(CtxTracing, &s.Tracing)
	c.boolean(CtxAPIGatewayAccountRole, &s.APIGatewayAccountRole)
	c.str(CtxCognitoDomainPrefix, &s.CognitoDomainPrefix)
	c.str(CtxOIDCIssuer, &s.OIDCIssuer)
	c.str(CtxOIDCClientID, &s.OIDCClientID)
	c.str(CtxOIDCClientSecretARN, &s.OIDCClientSecretARN)
	c.str(CtxOIDCTenantClaim, &s.TenantClaim)
	c.str(CtxOIDCRoleClaim, &s.RoleClaim)
	c.str(CtxOIDCMemberClaim, &s.MemberClaim)
	var policy string
	c.str(CtxLeakPolicy, &policy)
	s.LeakPolicy = config.LeakPolicy(policy)
	if c.err != nil {
		return Settings{}, c.err
	}
	if s.Routes, err = config.Routes(s.RoutesFile); err != nil {
		return Settings{}, err
	}
	return s, s.Validate()
}

// contextReader reads context values into settings, each only if set,
// and remembers the first value of the wrong kind.
type contextReader struct {
	get  func(string) any
	root string
	err  error
}

func (c *contextReader) fail(key, format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("context %s: "+format, append([]any{key}, args...)...)
	}
}

// str reads a string.
func (c *contextReader) str(key string, dst *string) {
	switch v := c.get(key).(type) {
	case nil:
	case string:
		*dst = strings.TrimSpace(v)
	default:
		c.fail(key, "want a string, got %T", v)
	}
}

// path reads a file or directory, relative to the repository root; an
// empty one leaves the default.
func (c *contextReader) path(key string, dst *string) {
	var p string
	c.str(key, &p)
	switch {
	case p == "":
	case filepath.IsAbs(p):
		*dst = p
	default:
		*dst = filepath.Join(c.root, p)
	}
}

// boolean reads true or false, as JSON or (with -c) a string.
func (c *contextReader) boolean(key string, dst *bool) {
	switch v := c.get(key).(type) {
	case nil:
	case bool:
		*dst = v
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			c.fail(key, "%q is not true or false", v)
			return
		}
		*dst = b
	default:
		c.fail(key, "want true or false, got %T", v)
	}
}

// whole reads a whole number, as a JSON number or (with -c) a string.
func (c *contextReader) whole(key string, dst *int) {
	switch v := c.get(key).(type) {
	case nil:
	case float64:
		if v != float64(int(v)) {
			c.fail(key, "%v is not a whole number", v)
			return
		}
		*dst = int(v)
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			c.fail(key, "%q is not a whole number", v)
			return
		}
		*dst = n
	default:
		c.fail(key, "want a whole number, got %T", v)
	}
}

// tiers reads a JSON array of config.Tier, as a string (-c) or as JSON in
// cdk.json.
func (c *contextReader) tiers(key string, dst *[]config.Tier) {
	raw := c.get(key)
	if raw == nil {
		return
	}
	data, ok := raw.(string)
	if !ok {
		b, err := json.Marshal(raw)
		if err != nil {
			c.fail(key, "%v", err)
			return
		}
		data = string(b)
	}
	var tiers []config.Tier
	if err := json.Unmarshal([]byte(data), &tiers); err != nil {
		c.fail(key, "want a JSON array of {\"name\",\"requests_per_minute\",\"burst\"}: %v", err)
		return
	}
	*dst = tiers
}

// Validate checks the settings as far as synthesis can.
func (s Settings) Validate() error {
	if err := s.checkDeployment(); err != nil {
		return err
	}
	if !stageName.MatchString(s.Stage) {
		return fmt.Errorf("context %s: %q must be 1 to 20 lowercase letters, digits and hyphens, starting with a letter", CtxStage, s.Stage)
	}
	u, err := url.Parse(s.UpstreamURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("context %s: %q must be an http(s) base URL without query, fragment or credentials", CtxUpstreamURL, s.UpstreamURL)
	}
	if strings.HasSuffix(s.UpstreamURL, "/") {
		return fmt.Errorf("context %s: %q: drop the trailing slash (route paths start with one)", CtxUpstreamURL, s.UpstreamURL)
	}
	for _, rt := range config.GatewayResponseTypes {
		for name, v := range s.Gateway.GatewayResponses[rt].Headers {
			if strings.Contains(v, "'") {
				return fmt.Errorf("gateway response %s: header %s: a single quote cannot be a static API Gateway value", rt, name)
			}
		}
	}
	if (s.DomainName == "") != (s.CertificateARN == "") {
		return fmt.Errorf("context %s and %s go together", CtxDomainName, CtxCertificateARN)
	}
	if s.DomainName != "" && !hostName.MatchString(s.DomainName) {
		return fmt.Errorf("context %s: %q must be a host name, such as api.example.com", CtxDomainName, s.DomainName)
	}
	if s.AlarmEmail != "" && !strings.Contains(s.AlarmEmail, "@") {
		return fmt.Errorf("context %s: %q is not an email address", CtxAlarmEmail, s.AlarmEmail)
	}
	if s.AlertEmail != "" && !strings.Contains(s.AlertEmail, "@") {
		return fmt.Errorf("context %s: %q is not an email address", CtxAlertEmail, s.AlertEmail)
	}
	for _, e := range s.AlertEvents {
		if !slices.Contains(AlertableEvents, e) {
			return fmt.Errorf("context %s: %q is not one of %s", CtxAlertEvents, e, strings.Join(AlertableEvents, ", "))
		}
	}
	// What the authorizer compiles at start, compiled now: a table it
	// would refuse fails synthesis instead of every cold start.
	table := cmp.Or(s.RoutesFile, "pkg/config/routes.json")
	if _, err := route.Compile(config.APIRoutes(s.Routes)...); err != nil {
		return fmt.Errorf("route table %s: %w", table, err)
	}
	// The console owns every path below its own: API Gateway allows one
	// variable child per resource, and the console's is {proxy+}.
	for _, r := range s.Routes.Routes {
		if r.Path == config.ConsolePath || strings.HasPrefix(r.Path, config.ConsolePath+"/") {
			return fmt.Errorf("route table %s: %s %s: %s belongs to keyward's console", table, r.Method, r.Path, config.ConsolePath)
		}
	}
	return s.validateSignIn()
}

// hostName is a DNS name in lowercase.
var hostName = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// cognitoDomainPrefix: Cognito's rule for a prefix of its own domain.
var cognitoDomainPrefix = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)

// cognitoReserved are words a Cognito domain prefix may not contain.
var cognitoReserved = []string{"aws", "amazon", "cognito"}

// validateSignIn checks the members' sign-in: the user pool's domain, or
// an OIDC provider of the deployer's (checkDeployment has checked each
// value as the admin function would).
func (s Settings) validateSignIn() error {
	external := map[string]string{CtxOIDCIssuer: s.OIDCIssuer, CtxOIDCClientID: s.OIDCClientID, CtxOIDCClientSecretARN: s.OIDCClientSecretARN}
	var missing []string
	for _, key := range []string{CtxOIDCIssuer, CtxOIDCClientID, CtxOIDCClientSecretARN} {
		if external[key] == "" {
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 && len(missing) < len(external) {
		return fmt.Errorf("context %s, %s and %s go together (an OIDC provider instead of the Cognito user pool): %s missing",
			CtxOIDCIssuer, CtxOIDCClientID, CtxOIDCClientSecretARN, strings.Join(missing, ", "))
	}
	if !s.Cognito() {
		if u, err := url.Parse(s.OIDCIssuer); err != nil || u.Scheme != "https" {
			return fmt.Errorf("context %s: %q must be an https URL", CtxOIDCIssuer, s.OIDCIssuer)
		}
		if s.CognitoDomainPrefix != "" {
			return fmt.Errorf("context %s is the Cognito user pool's, which the stack does not create with %s", CtxCognitoDomainPrefix, CtxOIDCIssuer)
		}
		return nil
	}
	prefix, key := s.CognitoDomainPrefix, CtxCognitoDomainPrefix
	if prefix == "" {
		// The default adds the stack's own id, known at deployment.
		prefix, key = s.StackName(), CtxStage
	}
	if !cognitoDomainPrefix.MatchString(prefix) {
		return fmt.Errorf("context %s: %q must be 1 to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen", key, prefix)
	}
	for _, w := range cognitoReserved {
		if strings.Contains(prefix, w) {
			return fmt.Errorf("context %s: the Cognito domain prefix %q must not contain %q (set %s)", key, prefix, w, CtxCognitoDomainPrefix)
		}
	}
	return nil
}

// contextOfVariable is the context key of each variable that
// config.Deployment's Check names in an error; the gateway settings'
// errors come from three keys.
var contextOfVariable = map[string]string{
	config.EnvTokenPrefix:         CtxPrefix,
	config.EnvLeakPolicy:          CtxLeakPolicy,
	config.EnvPepperRotationDays:  CtxPepperRotationDays,
	config.EnvOIDCIssuer:          CtxOIDCIssuer,
	config.EnvOIDCClientID:        CtxOIDCClientID,
	config.EnvOIDCClientSecretARN: CtxOIDCClientSecretARN,
	config.EnvOIDCTenantClaim:     CtxOIDCTenantClaim,
	config.EnvOIDCRoleClaim:       CtxOIDCRoleClaim,
	config.EnvOIDCMemberClaim:     CtxOIDCMemberClaim,
	config.EnvConsoleURL:          CtxDomainName,
}

// checkDeployment checks the functions' settings that synthesis knows
// (the rest are the resources' names, known at deployment) with the
// functions' own check, so that synthesis refuses what a function would
// refuse at start, with the same message.
func (s Settings) checkDeployment() error {
	d := config.Deployment{TokenPrefix: s.Prefix, Gateway: s.Gateway, Stage: s.Stage,
		LeakPolicy: s.LeakPolicy, PepperRotationDays: s.PepperRotationDays,
		OIDCIssuer: s.OIDCIssuer, OIDCClientID: s.OIDCClientID, OIDCClientSecretARN: s.OIDCClientSecretARN,
		OIDCTenantClaim: s.TenantClaim, OIDCRoleClaim: s.RoleClaim, OIDCMemberClaim: s.MemberClaim,
		ConsoleURL: s.consoleURLIfKnown()}
	err := d.Check()
	var ve *config.VariableError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ve) && contextOfVariable[ve.Name] != "":
		return fmt.Errorf("context %s: %w", contextOfVariable[ve.Name], err)
	default:
		return fmt.Errorf("context %s, %s or %s: %w", CtxAuthorizerCacheTTL, CtxUsageIdentity, CtxRateLimitTiers, err)
	}
}

// consoleURLIfKnown is the console's URL when synthesis knows it: on the
// custom domain. The stage's URL is known at deployment.
func (s Settings) consoleURLIfKnown() string {
	if s.DomainName == "" {
		return ""
	}
	return "https://" + s.DomainName + config.ConsolePath
}

// MissingBootstraps lists the functions whose <DistDir>/<fn>/bootstrap
// does not exist.
func (s Settings) MissingBootstraps() []string {
	var missing []string
	for _, fn := range Functions {
		if _, err := os.Stat(filepath.Join(s.DistDir, fn, "bootstrap")); err != nil {
			missing = append(missing, fn)
		}
	}
	return missing
}
