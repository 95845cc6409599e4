package stack_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigateway"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyward/keyward/infra/stack"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/jobs"
	"github.com/keyward/keyward/pkg/localstack/gateway"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/store/dynamo"
)

func TestMain(m *testing.M) {
	code := m.Run()
	stack.Cleanup()
	if fixtureBase != "" {
		os.RemoveAll(fixtureBase)
	}
	jsii.Close()
	os.Exit(code)
}

// methods is how many methods the API has: every route, again on the
// browser endpoint with a preflight per resource there, and the no-route
// mocks.
func methods(s stack.Settings) int {
	browser := config.BrowserRoutes(s.Routes)
	return len(s.Routes.Routes) + len(browser.Routes) + len(stack.PreflightMethods(browser)) +
		len(config.AdminRoutes().Routes) + len(config.ConsoleRoutes().Routes) +
		len(stack.NoRoutePaths(s.Routes, browser, config.AdminRoutes(), config.ConsoleRoutes()))
}

func TestResourceCounts(t *testing.T) {
	f := get(t)
	routes := methods(f.devS)
	for typ, n := range map[string]int{
		"AWS::DynamoDB::Table":             1,
		"AWS::KMS::Key":                    2,
		"AWS::KMS::Alias":                  1,
		"AWS::Lambda::Function":            6, // the five, and the first-pepper custom resource's handler
		"AWS::Lambda::EventSourceMapping":  1,
		"AWS::IAM::Role":                   8, // five functions, the first-pepper handler, API Gateway's logging role, the operators
		"AWS::Logs::LogGroup":              7, // five functions, access logs, the first-pepper handler
		"AWS::Logs::SubscriptionFilter":    2, // the access log's and the authorizer's, to the usage function
		"AWS::ApiGateway::RestApi":         1,
		"AWS::ApiGateway::Stage":           1,
		"AWS::ApiGateway::Authorizer":      2, // the server endpoint's and the browser endpoint's
		"AWS::ApiGateway::Method":          routes,
		"AWS::ApiGateway::GatewayResponse": len(config.GatewayResponseTypes),
		"AWS::ApiGateway::UsagePlan":       len(f.devS.Gateway.RateLimitTiers),
		"AWS::ApiGateway::Account":         1,
		"AWS::ApiGateway::DomainName":      0,
		"AWS::Events::EventBus":            1,
		"AWS::Events::Rule":                len(jobs.Schedules) + 1, // and the alerts
		"AWS::SQS::Queue":                  1,
		"AWS::SNS::Topic":                  2, // alarms, key alerts
		"AWS::SNS::Subscription":           0,
		"AWS::CloudWatch::Alarm":           9,
		"AWS::CloudWatch::Dashboard":       1,
		"Custom::AWS":                      1,
		"AWS::Lambda::LayerVersion":        0,
		"AWS::Cognito::UserPool":           1,
		"AWS::Cognito::UserPoolClient":     1,
		"AWS::Cognito::UserPoolDomain":     1,
		"AWS::SecretsManager::Secret":      1,
	} {
		if got := len(f.dev.ofType(typ)); got != n {
			t.Errorf("%s: %d, want %d", typ, got, n)
		}
	}
	// The assertions library agrees on one of them.
	f.dev.raw.ResourceCountIs(jsii.String("AWS::ApiGateway::Method"), jsii.Number(routes))
	for typ, n := range map[string]int{
		"AWS::ApiGateway::Account":         0,
		"AWS::IAM::Role":                   7,
		"AWS::ApiGateway::DomainName":      1,
		"AWS::ApiGateway::BasePathMapping": 1,
		"AWS::SNS::Subscription":           1,
		"AWS::Lambda::LayerVersion":        1,
		"AWS::ApiGateway::Method":          methods(f.prodS),
		"AWS::Cognito::UserPool":           1,
		"AWS::SecretsManager::Secret":      1,
	} {
		if got := len(f.prod.ofType(typ)); got != n {
			t.Errorf("prod %s: %d, want %d", typ, got, n)
		}
	}
	// With an OIDC provider of the deployer's: no user pool, no secret, no
	// other function or role.
	for typ, n := range map[string]int{
		"AWS::Cognito::UserPool":       0,
		"AWS::Cognito::UserPoolClient": 0,
		"AWS::Cognito::UserPoolDomain": 0,
		"AWS::SecretsManager::Secret":  0,
		"AWS::Lambda::Function":        6,
		"AWS::IAM::Role":               8,
	} {
		if got := len(f.oidc.ofType(typ)); got != n {
			t.Errorf("oidc %s: %d, want %d", typ, got, n)
		}
	}
}

func TestTable(t *testing.T) {
	f := get(t)
	for _, c := range f.devAndProd() {
		x := c.m.ids(t, c.s)
		r := c.m.res[x.table]
		p := props(r)
		want := map[string]any{
			"BillingMode":                      "PAY_PER_REQUEST",
			"PointInTimeRecoverySpecification": map[string]any{"PointInTimeRecoveryEnabled": true},
			"DeletionProtectionEnabled":        c.s.Production,
			"TimeToLiveSpecification":          map[string]any{"AttributeName": dynamo.AttrTTL, "Enabled": true},
			"StreamSpecification":              map[string]any{"StreamViewType": "NEW_IMAGE"},
			"KeySchema": []any{
				map[string]any{"AttributeName": dynamo.AttrPK, "KeyType": "HASH"},
				map[string]any{"AttributeName": dynamo.AttrSK, "KeyType": "RANGE"},
			},
		}
		for key, v := range want {
			if !reflect.DeepEqual(p[key], v) {
				t.Errorf("%s table %s = %s, want %s", c.name, key, jsonOf(t, p[key]), jsonOf(t, v))
			}
		}
		sse := p["SSESpecification"].(map[string]any)
		if sse["SSEEnabled"] != true || sse["SSEType"] != "KMS" || flat(sse["KMSMasterKeyId"]) != arn(x.tableKey) {
			t.Errorf("%s table SSE = %s, want KMS with the table key", c.name, jsonOf(t, sse))
		}
		attrs := map[string]string{}
		for _, a := range p["AttributeDefinitions"].([]any) {
			m := a.(map[string]any)
			attrs[m["AttributeName"].(string)] = m["AttributeType"].(string)
		}
		wantAttrs := map[string]string{dynamo.AttrPK: "S", dynamo.AttrSK: "S", dynamo.AttrGSI1PK: "S", dynamo.AttrGSI1SK: "S",
			dynamo.AttrGSI2PK: "S", dynamo.AttrGSI2SK: "S", dynamo.AttrGSI3PK: "S", dynamo.AttrGSI3SK: "S"}
		if !reflect.DeepEqual(attrs, wantAttrs) {
			t.Errorf("%s attributes %v, want %v", c.name, attrs, wantAttrs)
		}
		gsis := map[string]string{}
		for _, g := range p["GlobalSecondaryIndexes"].([]any) {
			m := g.(map[string]any)
			gsis[m["IndexName"].(string)] = flat(m["KeySchema"]) + " " + flat(m["Projection"])
		}
		key := func(pk, sk string) string {
			return flat([]any{map[string]any{"AttributeName": pk, "KeyType": "HASH"}, map[string]any{"AttributeName": sk, "KeyType": "RANGE"}}) + ` {"ProjectionType":"KEYS_ONLY"}`
		}
		wantGSIs := map[string]string{dynamo.IndexGSI1: key(dynamo.AttrGSI1PK, dynamo.AttrGSI1SK), dynamo.IndexGSI2: key(dynamo.AttrGSI2PK, dynamo.AttrGSI2SK),
			dynamo.IndexGSI3: key(dynamo.AttrGSI3PK, dynamo.AttrGSI3SK)}
		if !reflect.DeepEqual(gsis, wantGSIs) {
			t.Errorf("%s GSIs %v, want %v", c.name, gsis, wantGSIs)
		}
		policy := "Delete"
		if c.s.Production {
			policy = "Retain"
		}
		for _, id := range []string{x.table, x.tableKey, x.pepperKey, x.logs[stack.FnAuthorizer]} {
			if c.m.res[id]["DeletionPolicy"] != policy || c.m.res[id]["UpdateReplacePolicy"] != policy {
				t.Errorf("%s %s: deletion policy %v, want %s", c.name, id, c.m.res[id]["DeletionPolicy"], policy)
			}
		}
	}
	if !f.prodS.Production || f.devS.Production {
		t.Fatal("fixture: prod must be a production stage and dev not")
	}
}

func TestKeys(t *testing.T) {
	f := get(t)
	x := f.dev.ids(t, f.devS)
	if x.tableKey == "" || x.pepperKey == "" || x.tableKey == x.pepperKey {
		t.Fatalf("table key %q, pepper key %q: want two keys", x.tableKey, x.pepperKey)
	}
	for _, id := range []string{x.tableKey, x.pepperKey} {
		if props(f.dev.res[id])["EnableKeyRotation"] != true {
			t.Errorf("key %s: rotation off", id)
		}
	}
	root := "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"
	cond := flat(map[string]any{"StringEquals": map[string]any{"kms:EncryptionContext:purpose": pepper.Purpose}})
	got := statements(t, props(f.dev.res[x.pepperKey])["KeyPolicy"])
	want := map[string]statement{
		"KeyAdministration": {Actions: sorted(stack.PepperKeyAdminActions...), Resources: []string{"*"}, Principals: []string{root}},
		"UnwrapPeppers":     {Actions: []string{"kms:Decrypt"}, Resources: []string{"*"}, Principals: sorted(arn(x.role[stack.FnAuthorizer]), arn(x.role[stack.FnAdmin])), Condition: cond},
		"CreatePeppers":     {Actions: []string{"kms:GenerateDataKeyWithoutPlaintext"}, Resources: []string{"*"}, Principals: []string{arn(x.role[stack.FnJobs])}, Condition: cond},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pepper key policy:\n got %v\nwant %v", got, want)
	}
	// The account administers the key but cannot use it, nor grant use.
	for _, a := range got["KeyAdministration"].Actions {
		for _, bad := range []string{"kms:*", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncrypt", "kms:CreateGrant"} {
			if strings.HasPrefix(a, bad) || strings.HasSuffix(a, "*") {
				t.Errorf("the account's statement on the pepper key allows %s", a)
			}
		}
	}
	// Nobody else: no identity policy names the pepper key.
	for _, m := range []*tmpl{f.dev, f.prod} {
		for id, r := range m.ofType("AWS::IAM::Policy") {
			if strings.Contains(flat(props(r)["PolicyDocument"]), x.pepperKey) {
				t.Errorf("policy %s names the pepper key", id)
			}
		}
	}
	if flat(props(f.dev.res[x.fn[stack.FnAuthorizer]])["Environment"]) == "" {
		t.Fatal("no environment")
	}
	_, alias := f.dev.only(t, "AWS::KMS::Alias")
	if alias["AliasName"] != "alias/keyward-dev-pepper" || flat(alias["TargetKeyId"]) != arn(x.pepperKey) {
		t.Errorf("alias %v", alias)
	}
}

func TestFunctions(t *testing.T) {
	f := get(t)
	gw, err := config.LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		m    *tmpl
		s    stack.Settings
		ttl  string
		uid  string
	}{
		{"dev", f.dev, f.devS, strconv.Itoa(gw.Authorizer.CacheTTLSeconds), gw.UsageIdentity},
		{"prod", f.prod, f.prodS, "60", "tenant"},
	} {
		x := c.m.ids(t, c.s)
		var pairs []string
		for _, tier := range gw.RateLimitTiers {
			pairs = append(pairs, tier.Name+"="+ref(x.plans[tier.Name]))
		}
		plans := strings.Join(pairs, ",")
		common := map[string]string{
			config.EnvTable: ref(x.table), config.EnvPepperKeyID: arn(x.pepperKey), config.EnvTokenPrefix: "keyward",
			config.EnvCacheTTL: c.ttl, config.EnvUsageIdentity: c.uid,
		}
		with := func(extra map[string]string) map[string]string {
			m := map[string]string{}
			for k, v := range common {
				m[k] = v
			}
			for k, v := range extra {
				m[k] = v
			}
			return m
		}
		authzEnv := with(nil)
		adminEnv := with(map[string]string{config.EnvRestAPIID: ref(x.api), config.EnvStage: c.s.Stage, config.EnvUsagePlans: plans,
			config.EnvOperatorRoleARN: att(x.operator, "Arn")})
		for k, v := range signInEnv(t, c.m, c.s) {
			adminEnv[k] = v
		}
		if c.s.RoutesFile != "" { // prod
			authzEnv = with(map[string]string{config.EnvRoutesFile: "/opt/keyward/routes.json"})
			adminEnv[config.EnvLeakPolicy] = "flag"
		}
		want := map[string]struct {
			memory, timeout, reserved float64
			env                       map[string]string
		}{
			stack.FnAuthorizer: {256, 5, 0, authzEnv},
			stack.FnAdmin:      {256, 25, 0, adminEnv},
			stack.FnJobs: {256, 300, float64(len(jobs.Names)), with(map[string]string{config.EnvUsagePlans: plans,
				config.EnvRestAPIID: ref(x.api), config.EnvStage: c.s.Stage})},
			stack.FnPublisher: {256, 30, 5, map[string]string{config.EnvEventBus: ref(x.bus)}},
			stack.FnUsage:     {256, 60, 4, map[string]string{config.EnvTable: ref(x.table)}},
		}
		for _, fn := range stack.Functions {
			p := props(c.m.res[x.fn[fn]])
			w := want[fn]
			if p["Runtime"] != "provided.al2023" || flat(p["Architectures"]) != `["arm64"]` || p["Handler"] != "bootstrap" {
				t.Errorf("%s %s: runtime %v %v %v", c.name, fn, p["Runtime"], p["Architectures"], p["Handler"])
			}
			if p["MemorySize"] != w.memory || p["Timeout"] != w.timeout {
				t.Errorf("%s %s: memory %v timeout %v, want %v %v", c.name, fn, p["MemorySize"], p["Timeout"], w.memory, w.timeout)
			}

			reserved, _ := p["ReservedConcurrentExecutions"].(float64)
			if reserved != w.reserved {
				t.Errorf("%s %s: reserved concurrency %v, want %v", c.name, fn, reserved, w.reserved)
			}
			env := map[string]string{}
			for k, v := range p["Environment"].(map[string]any)["Variables"].(map[string]any) {
				env[k] = flat(v)
			}
			if !reflect.DeepEqual(env, w.env) {
				t.Errorf("%s %s environment:\n got %v\nwant %v", c.name, fn, env, w.env)
			}
			logging := map[string]any{"LogGroup": map[string]any{"Ref": x.logs[fn]}}
			if fn == stack.FnAuthorizer {
				// Its platform lines are not written (cost per decision); its
				// decision lines are JSON at INFO, passed through.
				logging["LogFormat"], logging["SystemLogLevel"], logging["ApplicationLogLevel"] = "JSON", "WARN", "INFO"
			}
			if flat(p["LoggingConfig"]) != flat(logging) {
				t.Errorf("%s %s logs to %s, want %s", c.name, fn, flat(p["LoggingConfig"]), flat(logging))
			}
			if lg := props(c.m.res[x.logs[fn]]); lg["RetentionInDays"] != 30.0 {
				t.Errorf("%s %s log retention %v", c.name, fn, lg["RetentionInDays"])
			}
			// The bundle is <distDir>/<fn>: the staged asset holds that
			// function's (test) bootstrap.
			key := strings.TrimSuffix(flat(mapOf(p["Code"])["S3Key"]), ".zip")
			staged, err := os.ReadFile(filepath.Join(f.base, "cdk.out", "asset."+key, "bootstrap"))
			if err != nil || string(staged) != "test "+fn {
				t.Errorf("%s %s: asset %s holds %q (%v), want the test bootstrap", c.name, fn, key, staged, err)
			}
			layers := flat(p["Layers"])
			if (fn == stack.FnAuthorizer && c.s.RoutesFile != "") != (layers != "") {
				t.Errorf("%s %s layers %s", c.name, fn, layers)
			}
		}
	}
}

// placeholder stands for a CloudFormation reference (${Id} or
// ${Id.Attr}, as flat renders them) in a function's environment.
var placeholder = regexp.MustCompile(`\$\{([A-Za-z0-9]+)(\.[A-Za-z]+)?\}`)

// pseudoParameters are values CloudFormation's pseudo parameters could
// have.
var pseudoParameters = strings.NewReplacer("${AWS::Region}", "eu-west-1", "${AWS::URLSuffix}", "amazonaws.com",
	"${AWS::Partition}", "aws", "${AWS::AccountId}", "111122223333")

// deployed is a value of the template as CloudFormation could resolve it:
// a secret's reference is its ARN, any other reference a placeholder.
func deployed(m *tmpl, v string) string {
	v = pseudoParameters.Replace(v)
	return placeholder.ReplaceAllStringFunc(v, func(r string) string {
		id := placeholder.FindStringSubmatch(r)[1]
		if m.res[id]["Type"] == "AWS::SecretsManager::Secret" {
			return "arn:aws:secretsmanager:eu-west-1:111122223333:secret:" + id + "-AbCdEf"
		}
		return "placeholder-" + id
	})
}

// TestFunctionEnvironmentsParse: the environment the stack sets for each
// function, with its references replaced by placeholders, is one the
// function's own parser accepts with that function's requirements, and
// carries the settings as synthesis read them.
func TestFunctionEnvironmentsParse(t *testing.T) {
	f := get(t)
	tiersS, err := stack.FromContext(contextOf(map[string]any{"stage": "tiers", "rateLimitTiers": customTiers, "pepperRotationDays": "30"}), repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		m    *tmpl
		s    stack.Settings
	}{{"dev", f.dev, f.devS}, {"prod", f.prod, f.prodS}, {"tiers", f.tiers, tiersS}, {"oidc", f.oidc, f.oidcS}} {
		parsed := 0
		for _, r := range c.m.ofType("AWS::Lambda::Function") {
			p := props(r)
			fn := strings.TrimPrefix(flat(p["FunctionName"]), c.s.StackName()+"-")
			if !slices.Contains(stack.Functions, fn) {
				continue // the first-pepper custom resource's handler
			}
			env := map[string]string{}
			for k, v := range p["Environment"].(map[string]any)["Variables"].(map[string]any) {
				env[k] = deployed(c.m, flat(v))
			}
			d, err := config.DeploymentFromEnv(func(name string) string { return env[name] })
			if err == nil {
				err = d.Validate(fn)
			}
			if err != nil {
				t.Errorf("%s %s refuses its environment: %v\n%v", c.name, fn, err, env)
				continue
			}
			parsed++
			if fn == stack.FnUsage && d.Gateway.AlertRules() != c.s.Gateway.AlertRules() {
				t.Errorf("%s usage reads the alert rules %+v, want %+v", c.name, d.Gateway.AlertRules(), c.s.Gateway.AlertRules())
			}
			if fn == stack.FnPublisher || fn == stack.FnUsage {
				continue // neither reads the authorizer's settings
			}
			if d.TokenPrefix != c.s.Prefix || !reflect.DeepEqual(d.Gateway, c.s.Gateway) {
				t.Errorf("%s %s reads prefix %q and gateway %+v, want %q and %+v", c.name, fn, d.TokenPrefix, d.Gateway, c.s.Prefix, c.s.Gateway)
			}
			if fn == stack.FnAdmin && d.LeakPolicy != cmp.Or(c.s.LeakPolicy, config.LeakRevoke) {
				t.Errorf("%s admin reads leak policy %q", c.name, d.LeakPolicy)
			}
			if fn == stack.FnAdmin && (d.OIDCIssuer == "" || d.OIDCTenantClaim != c.s.TenantClaim || d.OIDCRoleClaim != c.s.RoleClaim || d.OIDCMemberClaim != c.s.MemberClaim) {
				t.Errorf("%s admin reads the console's settings %+v", c.name, d)
			}
			if fn == stack.FnJobs && d.PepperRotationDays != c.s.PepperRotationDays {
				t.Errorf("%s jobs reads %d rotation days, want %d", c.name, d.PepperRotationDays, c.s.PepperRotationDays)
			}
		}
		if parsed != len(stack.Functions) {
			t.Errorf("%s: %d functions' environments parsed, want %d", c.name, parsed, len(stack.Functions))
		}
	}
}

func TestAuthorizer(t *testing.T) {
	f := get(t)
	gw, err := config.LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		m    *tmpl
		s    stack.Settings
		ttl  float64
	}{{"dev", f.dev, f.devS, float64(gw.Authorizer.CacheTTLSeconds)}, {"prod", f.prod, f.prodS, 60}} {
		x := c.m.ids(t, c.s)
		p := props(c.m.res[x.authorizer])
		if p["Type"] != "REQUEST" || p["AuthorizerResultTtlInSeconds"] != c.ttl {
			t.Errorf("%s authorizer %v", c.name, p)
		}
		if got, want := p["IdentitySource"], strings.Join(gw.Authorizer.IdentitySources, ","); got != want {
			t.Errorf("%s identity sources %v, want gateway.json's %v", c.name, got, want)
		}
		if !strings.Contains(flat(p["AuthorizerUri"]), arn(x.fn[stack.FnAuthorizer])) {
			t.Errorf("%s authorizer URI %s", c.name, flat(p["AuthorizerUri"]))
		}
	}
	// gateway.json's identity sources are what CDK's helpers produce.
	helpers := []string{
		*awsapigateway.IdentitySource_Header(jsii.String("Authorization")),
		*awsapigateway.IdentitySource_Context(jsii.String("identity.sourceIp")),
	}
	if !reflect.DeepEqual(gw.Authorizer.IdentitySources, helpers) {
		t.Errorf("gateway.json identity sources %v; CDK spells them %v", gw.Authorizer.IdentitySources, helpers)
	}
}

// deployedRoute is a method as the template has it.
type deployedRoute struct {
	Method, Path, Auth string
	Authorizer         string // a CUSTOM method's, as ${Id}
	APIKey             bool
	Integration        map[string]any
	MethodParams       map[string]any
}

// routesOf rebuilds the API's route table from its resources and methods.
func routesOf(t *testing.T, m *tmpl) map[string]deployedRoute {
	t.Helper()
	authorizers := map[string]bool{}
	for id := range m.ofType("AWS::ApiGateway::Authorizer") {
		authorizers[ref(id)] = true
	}
	out := map[string]deployedRoute{}
	for id, r := range m.ofType("AWS::ApiGateway::Method") {
		p := props(r)
		d := deployedRoute{Method: p["HttpMethod"].(string), Path: m.path(t, flat(p["ResourceId"]))}
		switch p["AuthorizationType"] {
		case "CUSTOM":
			if d.Authorizer = flat(p["AuthorizerId"]); !authorizers[d.Authorizer] {
				t.Errorf("method %s: authorizer %s", id, d.Authorizer)
			}
			d.Auth = config.AuthKey
		case "AWS_IAM":
			d.Auth = config.AuthIAM
		case "NONE":
			d.Auth = config.AuthNone
		default:
			t.Errorf("method %s: authorization %v", id, p["AuthorizationType"])
		}
		d.APIKey, _ = p["ApiKeyRequired"].(bool)
		d.Integration, _ = p["Integration"].(map[string]any)
		if d.Integration["Type"] == "MOCK" {
			continue // noRoutes' and the preflights, checked by TestNoRoutes and TestBrowserPreflights
		}
		d.MethodParams, _ = p["RequestParameters"].(map[string]any)
		key := d.Method + " " + d.Path
		if _, dup := out[key]; dup {
			t.Errorf("%s twice", key)
		}
		out[key] = d
	}
	return out
}

func TestRouteTableIsConfigs(t *testing.T) {
	f := get(t)
	for _, c := range []struct {
		name string
		m    *tmpl
		s    stack.Settings
		file string
	}{{"dev", f.dev, f.devS, ""}, {"prod", f.prod, f.prodS, f.prodRoutesFile}} {
		protected, err := config.Routes(c.file)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{}
		for _, r := range slices.Concat(protected.Routes, config.BrowserRoutes(protected).Routes, config.AdminRoutes().Routes, config.ConsoleRoutes().Routes) {
			want[r.Method+" "+r.Path] = r.Auth
		}
		x := c.m.ids(t, c.s)
		got := map[string]string{}
		deployed := routesOf(t, c.m)
		for key, d := range deployed {
			got[key] = d.Auth
			if d.APIKey != (d.Auth == config.AuthKey) {
				t.Errorf("%s %s: api key required %v with auth %q", c.name, key, d.APIKey, d.Auth)
			}
			authorizer := ref(x.authorizer)
			if config.OnBrowserEndpoint(d.Path) {
				authorizer = ref(x.browserAuthorizer)
			}
			if d.Auth == config.AuthKey && d.Authorizer != authorizer {
				t.Errorf("%s %s: authorizer %s, want %s", c.name, key, d.Authorizer, authorizer)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s routes (method path → auth):\n got %v\nwant %v", c.name, got, want)
		}

		headers := map[string]any{}
		for header, source := range config.IntegrationHeaders {
			headers["integration.request.header."+header] = source
		}
		for _, r := range protected.Routes {
			d := deployed[r.Method+" "+r.Path]
			in := d.Integration
			wantParams := map[string]any{}
			wantMethodParams := map[string]any{}
			if r.Auth == config.AuthKey {
				for k, v := range headers {
					wantParams[k] = v
				}
			}
			uri := c.s.UpstreamURL + r.Path
			for _, seg := range strings.Split(r.Path, "/") {
				if strings.HasPrefix(seg, "{") {
					name := strings.TrimSuffix(strings.Trim(seg, "{}"), "+")
					wantParams["integration.request.path."+name] = "method.request.path." + name
					wantMethodParams["method.request.path."+name] = true
					uri = strings.Replace(uri, seg, "{"+name+"}", 1)
				}
			}
			if in["Type"] != "HTTP_PROXY" || in["IntegrationHttpMethod"] != r.Method || flat(in["Uri"]) != uri {
				t.Errorf("%s %s %s: integration %s %v %s, want HTTP_PROXY %s %s", c.name, r.Method, r.Path, in["Type"], in["IntegrationHttpMethod"], flat(in["Uri"]), r.Method, uri)
			}
			gotParams, _ := in["RequestParameters"].(map[string]any)
			if gotParams == nil {
				gotParams = map[string]any{}
			}
			if !reflect.DeepEqual(gotParams, wantParams) {
				t.Errorf("%s %s %s: integration parameters\n got %v\nwant %v", c.name, r.Method, r.Path, gotParams, wantParams)
			}
			gotMethodParams := d.MethodParams
			if gotMethodParams == nil {
				gotMethodParams = map[string]any{}
			}
			if !reflect.DeepEqual(gotMethodParams, wantMethodParams) {
				t.Errorf("%s %s %s: method parameters %v, want %v", c.name, r.Method, r.Path, gotMethodParams, wantMethodParams)
			}
		}
		adminURI := "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:" + c.s.StackName() + "-admin/invocations"
		for _, r := range slices.Concat(config.AdminRoutes().Routes, config.ConsoleRoutes().Routes) {
			in := deployed[r.Method+" "+r.Path].Integration
			if in["Type"] != "AWS_PROXY" || in["IntegrationHttpMethod"] != "POST" || flat(in["Uri"]) != adminURI {
				t.Errorf("%s %s %s: integration %v", c.name, r.Method, r.Path, in)
			}
		}
		// The admin function's name in the URI is the function's.
		if props(c.m.res[x.fn[stack.FnAdmin]])["FunctionName"] != c.s.StackName()+"-admin" {
			t.Errorf("%s admin function name", c.name)
		}
	}
	// The prod fixture exercises a greedy parameter and a public route.
	if d := routesOf(t, f.prod)["GET /files/{path+}"]; flat(d.Integration["Uri"]) != "https://api.example.org/base/files/{path}" {
		t.Errorf("greedy route integration %v", d.Integration)
	}
}

// TestIntegrationHeaders: the upstream gets the authorizer's context and,
// in place of the client's Authorization header (the secret key), a
// static value, exactly as the local gateway applies them.
func TestIntegrationHeaders(t *testing.T) {
	want := map[string]string{
		"integration.request.header.X-Keyward-Tenant-Id":   "context.authorizer.tenant_id",
		"integration.request.header.X-Keyward-Key-Id":      "context.authorizer.key_id",
		"integration.request.header.X-Keyward-Environment": "context.authorizer.environment",
		"integration.request.header.X-Keyward-Scopes":      "context.authorizer.scopes",
		"integration.request.header.Authorization":         "'" + config.RedactedAuthorization + "'",
	}
	if got := stack.IntegrationHeaders(); !reflect.DeepEqual(got, want) {
		t.Errorf("integration headers %v, want %v", got, want)
	}
}

func TestLambdaPermissions(t *testing.T) {
	f := get(t)
	x := f.dev.ids(t, f.devS)
	var admin, authorizers []string
	for _, r := range f.dev.ofType("AWS::Lambda::Permission") {
		p := props(r)
		if p["Action"] != "lambda:InvokeFunction" {
			t.Errorf("permission %v", p)
		}
		switch fn := flat(p["FunctionName"]); fn {
		case arn(x.fn[stack.FnAdmin]):
			if p["Principal"] != "apigateway.amazonaws.com" {
				t.Errorf("admin permission %v", p)
			}
			admin = append(admin, flat(p["SourceArn"]))
		case arn(x.fn[stack.FnAuthorizer]):
			src := flat(p["SourceArn"])
			if p["Principal"] != "apigateway.amazonaws.com" || !strings.Contains(src, ref(x.api)+"/authorizers/") {
				t.Errorf("authorizer permission %v", src)
			}
			authorizers = append(authorizers, src[strings.LastIndex(src, "/")+1:])
		case arn(x.fn[stack.FnJobs]):
			if p["Principal"] != "events.amazonaws.com" || !strings.HasSuffix(flat(p["SourceArn"]), ".Arn}") {
				t.Errorf("rotation permission %v", p)
			}
		case arn(x.fn[stack.FnUsage]):
			if p["Principal"] != "logs.amazonaws.com" || !strings.HasSuffix(flat(p["SourceArn"]), ".Arn}") {
				t.Errorf("usage permission %v", p) // TestUsage checks which log groups
			}
		default:
			t.Errorf("permission on %s", fn)
		}
	}
	var want []string
	for _, r := range slices.Concat(config.AdminRoutes().Routes, config.ConsoleRoutes().Routes) {
		path := r.Path
		for _, seg := range strings.Split(r.Path, "/") {
			if strings.HasPrefix(seg, "{") {
				path = strings.Replace(path, seg, "*", 1)
			}
		}
		want = append(want, "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"+ref(x.api)+"/dev/"+r.Method+path)
	}
	sort.Strings(admin)
	sort.Strings(want)
	if !reflect.DeepEqual(admin, want) {
		t.Errorf("admin permissions:\n got %v\nwant %v", admin, want)
	}
	// One for each attachment of the authorizer, from that one only.
	sort.Strings(authorizers)
	if w := sorted(ref(x.authorizer), ref(x.browserAuthorizer)); !reflect.DeepEqual(authorizers, w) {
		t.Errorf("authorizer permissions for %v, want %v", authorizers, w)
	}
}

func TestGatewayResponsesAreConfigs(t *testing.T) {
	f := get(t)
	gw, err := config.LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	x := f.dev.ids(t, f.devS)
	cors := gw.Browser.CORSHeaders()
	deployed := config.Gateway{GatewayResponses: map[string]config.GatewayResponse{}}
	for id, r := range f.dev.ofType("AWS::ApiGateway::GatewayResponse") {
		p := props(r)
		if flat(p["RestApiId"]) != ref(x.api) {
			t.Errorf("%s on %v", id, p["RestApiId"])
		}
		rt := p["ResponseType"].(string)
		var d config.GatewayResponse
		if s, ok := p["StatusCode"]; ok {
			if d.Status, err = strconv.Atoi(s.(string)); err != nil {
				t.Fatal(err)
			}
		}
		for name, v := range mapOf(p["ResponseParameters"]) {
			h, ok := strings.CutPrefix(name, "gatewayresponse.header.")
			value := v.(string)
			if _, isCORS := cors[h]; ok && isCORS {
				continue // TestBrowserGatewayResponses
			}
			if !ok || len(value) < 2 || value[0] != '\'' || value[len(value)-1] != '\'' {
				t.Errorf("%s: parameter %s = %s is not a static header", rt, name, value)
				continue
			}
			if d.Headers == nil {
				d.Headers = map[string]string{}
			}
			d.Headers[h] = value[1 : len(value)-1]
		}
		templates := mapOf(p["ResponseTemplates"])
		if len(templates) != 1 {
			t.Errorf("%s: templates %v", rt, templates)
		}
		d.Template, _ = templates["application/json"].(string)
		if _, dup := deployed.GatewayResponses[rt]; dup {
			t.Errorf("%s twice", rt)
		}
		deployed.GatewayResponses[rt] = d
	}
	// Exactly config's: every type, status, header and template.
	if !reflect.DeepEqual(deployed.GatewayResponses, gw.GatewayResponses) {
		t.Errorf("gateway responses:\n got %+v\nwant %+v", deployed.GatewayResponses, gw.GatewayResponses)
	}
	// And so they render as the local stack renders them.
	vars := map[string]string{
		"context.requestId": "req-123", "context.authorizer.error_code": "insufficient_scope",
		"context.authorizer.error_message": "This key lacks invoices:read.", "context.error.message": "Missing Authentication Token",
	}
	deployed.Authorizer, deployed.RateLimitTiers, deployed.UsageIdentity, deployed.Browser = gw.Authorizer, gw.RateLimitTiers, gw.UsageIdentity, gw.Browser
	for _, rt := range config.GatewayResponseTypes {
		s1, h1, b1 := gateway.Render(deployed, rt, vars)
		s2, h2, b2 := gateway.Render(gw, rt, vars)
		if s1 != s2 || !reflect.DeepEqual(h1, h2) || string(b1) != string(b2) {
			t.Errorf("%s renders %d %v %s, config %d %v %s", rt, s1, h1, b1, s2, h2, b2)
		}
		if !json.Valid(b1) {
			t.Errorf("%s renders invalid JSON %s", rt, b1)
		}
	}
	if s, h, _ := gateway.Render(deployed, "UNAUTHORIZED", nil); s != http.StatusUnauthorized || h.Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("UNAUTHORIZED renders %d %v", s, h)
	}
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func TestUsagePlans(t *testing.T) {
	f := get(t)
	gw, err := config.LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	x := f.dev.ids(t, f.devS)
	stageID, stage := f.dev.only(t, "AWS::ApiGateway::Stage")
	if stage["StageName"] != "dev" {
		t.Errorf("stage %v", stage["StageName"])
	}
	for _, tier := range gw.RateLimitTiers {
		p := props(f.dev.res[x.plans[tier.Name]])
		throttle := mapOf(p["Throttle"])
		if throttle["RateLimit"] != float64(tier.RequestsPerMinute)/60 || throttle["BurstLimit"] != float64(tier.Burst) {
			t.Errorf("plan %s throttle %v, want %v/s burst %d", tier.Name, throttle, float64(tier.RequestsPerMinute)/60, tier.Burst)
		}
		stages := p["ApiStages"].([]any)
		if len(stages) != 1 || flat(mapOf(stages[0])["ApiId"]) != ref(x.api) || flat(mapOf(stages[0])["Stage"]) != ref(stageID) {
			t.Errorf("plan %s stages %s", tier.Name, flat(stages))
		}
		if _, ok := p["Quota"]; ok {
			t.Errorf("plan %s has a quota", tier.Name)
		}
	}
	_, api := f.dev.only(t, "AWS::ApiGateway::RestApi")
	if api["ApiKeySourceType"] != "AUTHORIZER" || flat(api["EndpointConfiguration"]) != `{"Types":["REGIONAL"]}` {
		t.Errorf("api %v", api)
	}
}

func TestStage(t *testing.T) {
	f := get(t)
	for _, c := range []struct {
		name    string
		m       *tmpl
		tracing bool
	}{{"dev", f.dev, false}, {"prod", f.prod, true}} {
		_, p := c.m.only(t, "AWS::ApiGateway::Stage")
		logs := mapOf(p["AccessLogSetting"])
		format, _ := logs["Format"].(string)
		if format != stack.AccessLogFormat() {
			t.Errorf("%s access log format %s", c.name, format)
		}
		var fields map[string]string
		if err := json.Unmarshal([]byte(format), &fields); err != nil {
			t.Errorf("%s access log format is not JSON: %v", c.name, err)
		}
		for _, want := range []string{"requestId", "ip", "httpMethod", "resourcePath", "status", "responseLength", "principalId", "authorizerError", "integrationLatency"} {
			if fields[want] == "" {
				t.Errorf("%s access log lacks %s", c.name, want)
			}
		}
		for _, v := range fields {
			lower := strings.ToLower(v)
			if strings.Contains(lower, "authorization") || strings.Contains(lower, "apikey") || strings.Contains(lower, "$input") || strings.Contains(lower, "header") {
				t.Errorf("%s access log field %s may log a credential", c.name, v)
			}
		}
		lg, _ := c.m.find(t, "AWS::Logs::LogGroup", "LogGroupName", "/aws/apigateway/keyward-"+c.name+"/access")
		if flat(logs["DestinationArn"]) != arn(lg) {
			t.Errorf("%s access logs go to %s", c.name, flat(logs["DestinationArn"]))
		}
		if p["TracingEnabled"] != c.tracing {
			t.Errorf("%s tracing %v", c.name, p["TracingEnabled"])
		}
		want := []any{map[string]any{"DataTraceEnabled": false, "HttpMethod": "*", "ResourcePath": "/*",
			"ThrottlingBurstLimit": float64(stack.StageBurstLimit), "ThrottlingRateLimit": float64(stack.StageRateLimit)}}
		if !reflect.DeepEqual(p["MethodSettings"], want) {
			t.Errorf("%s method settings %s, want %s", c.name, jsonOf(t, p["MethodSettings"]), jsonOf(t, want))
		}
	}
}

func TestCustomDomain(t *testing.T) {
	f := get(t)
	x := f.prod.ids(t, f.prodS)
	_, d := f.prod.only(t, "AWS::ApiGateway::DomainName")
	if d["DomainName"] != "api.example.org" || d["SecurityPolicy"] != "TLS_1_2" || d["RegionalCertificateArn"] != f.prodS.CertificateARN ||
		flat(d["EndpointConfiguration"]) != `{"Types":["REGIONAL"]}` {
		t.Errorf("domain %v", d)
	}
	_, m := f.prod.only(t, "AWS::ApiGateway::BasePathMapping")
	if flat(m["RestApiId"]) != ref(x.api) || m["BasePath"] != nil {
		t.Errorf("base path mapping %v", m)
	}
	if _, ok := mapOf(f.prod.t["Outputs"])[stack.OutputDomainTarget]; !ok {
		t.Error("no domain target output")
	}
}

func TestSchedules(t *testing.T) {
	f := get(t)
	x := f.dev.ids(t, f.devS)
	rate := func(d time.Duration) string {
		unit, n := "minute", d/time.Minute
		if d%(24*time.Hour) == 0 {
			unit, n = "day", d/(24*time.Hour)
		} else if d%time.Hour == 0 {
			unit, n = "hour", d/time.Hour
		}
		if n != 1 {
			unit += "s"
		}
		return fmt.Sprintf("rate(%d %s)", n, unit)
	}
	want := map[string]string{}
	for job, d := range jobs.Schedules {
		want[job] = rate(d)
	}
	// The schedules the design promises: the expiry sweep, which ends
	// expired keys' cached decisions, as often as EventBridge allows.
	if !reflect.DeepEqual(want, map[string]string{
		"expiry-sweep": "rate(1 minute)", "expiry-warnings": "rate(1 hour)", "unused-keys": "rate(1 day)", "pepper-rotation": "rate(1 day)",
	}) {
		t.Errorf("jobs.Schedules are %v", want)
	}
	got := map[string]string{}
	for id, r := range f.dev.ofType("AWS::Events::Rule") {
		p := props(r)
		if flat(p["Name"]) == f.devS.StackName()+"-alerts" {
			continue // TestUsage
		}
		targets := p["Targets"].([]any)
		if len(targets) != 1 || flat(mapOf(targets[0])["Arn"]) != arn(x.fn[stack.FnJobs]) {
			t.Errorf("rule %s targets %s", id, flat(targets))
			continue
		}
		var in struct {
			Job string `json:"job"`
		}
		raw, _ := mapOf(targets[0])["Input"].(string)
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			t.Errorf("rule %s input %q: %v", id, raw, err)
		}
		if _, dup := got[in.Job]; dup {
			t.Errorf("job %s twice", in.Job)
		}
		got[in.Job] = p["ScheduleExpression"].(string)
		if p["State"] != "ENABLED" {
			t.Errorf("rule %s state %v", id, p["State"])
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("schedules %v, want %v", got, want)
	}
}

func TestPublisherStream(t *testing.T) {
	f := get(t)
	x := f.dev.ids(t, f.devS)
	id, p := f.dev.only(t, "AWS::Lambda::EventSourceMapping")
	want := map[string]any{
		"FunctionName": ref(x.fn[stack.FnPublisher]), "EventSourceArn": att(x.table, "StreamArn"),
		"StartingPosition": "TRIM_HORIZON", "BatchSize": "100", "MaximumBatchingWindowInSeconds": "1",
		"FunctionResponseTypes": `["ReportBatchItemFailures"]`, "BisectBatchOnFunctionError": "true",
		"MaximumRetryAttempts": "10", "MaximumRecordAgeInSeconds": "21600", "ParallelizationFactor": "1",
		"DestinationConfig": flat(map[string]any{"OnFailure": map[string]any{"Destination": map[string]any{"Fn::GetAtt": []any{x.dlq, "Arn"}}}}),
		"FilterCriteria":    flat(map[string]any{"Filters": []any{map[string]any{"Pattern": `{"eventName":["INSERT"],"dynamodb":{"NewImage":{"pk":{"S":[{"prefix":"AUDIT#"}]}}}}`}}}),
	}
	got := map[string]any{}
	for k, v := range p {
		got[k] = flat(v)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("event source mapping\n got %v\nwant %v", got, want)
	}
	if deps := flat(f.dev.res[id]["DependsOn"]); !strings.Contains(deps, x.role[stack.FnPublisher]) {
		t.Errorf("mapping depends on %s, not the publisher's role", deps)
	}
	q := props(f.dev.res[x.dlq])
	if q["SqsManagedSseEnabled"] != true || q["MessageRetentionPeriod"] != 1209600.0 {
		t.Errorf("dead-letter queue %v", q)
	}
	_, bus := f.dev.only(t, "AWS::Events::EventBus")
	if bus["Name"] != "keyward-dev" {
		t.Errorf("bus %v", bus)
	}
}

func TestFirstPepper(t *testing.T) {
	f := get(t)
	x := f.dev.ids(t, f.devS)
	id, p := f.dev.only(t, "Custom::AWS")
	for _, phase := range []string{"Create", "Update"} {
		var call struct {
			Service, Action string
			Parameters      map[string]string
		}
		if err := json.Unmarshal([]byte(flat(p[phase])), &call); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"FunctionName": ref(x.fn[stack.FnJobs]), "InvocationType": "Event", "Payload": `{"job":"pepper-rotation"}`}
		if call.Service != "Lambda" || call.Action != "invoke" || !reflect.DeepEqual(call.Parameters, want) {
			t.Errorf("%s call %+v", phase, call)
		}
	}
	deps := flat(f.dev.res[id]["DependsOn"])
	for _, dep := range []string{x.fn[stack.FnJobs], x.pepperKey, x.role[stack.FnJobs], x.table} {
		if !strings.Contains(deps, dep) {
			t.Errorf("first pepper does not wait for %s: %s", dep, deps)
		}
	}
	handler := strings.TrimSuffix(strings.TrimPrefix(flat(p["ServiceToken"]), "${"), ".Arn}")
	hp := props(f.dev.res[handler])
	role := strings.TrimSuffix(strings.TrimPrefix(flat(hp["Role"]), "${"), ".Arn}")
	logs := strings.TrimSuffix(strings.TrimPrefix(flat(mapOf(hp["LoggingConfig"])["LogGroup"]), "${"), "}")
	got := f.dev.rolePolicy(t, role)
	want := map[string]statement{
		"Logs":       {Actions: []string{"logs:CreateLogStream", "logs:PutLogEvents"}, Resources: []string{arn(logs)}},
		"InvokeJobs": {Actions: []string{"lambda:InvokeFunction"}, Resources: []string{arn(x.fn[stack.FnJobs])}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("first pepper role:\n got %v\nwant %v", got, want)
	}
}

func TestLeastPrivilege(t *testing.T) {
	f := get(t)
	x := f.dev.ids(t, f.devS)
	logs := func(fn string) statement {
		return statement{Actions: []string{"logs:CreateLogStream", "logs:PutLogEvents"}, Resources: []string{arn(x.logs[fn])}}
	}
	tableKey := statement{Actions: []string{"kms:Decrypt"}, Resources: []string{arn(x.tableKey)},
		Condition: flat(map[string]any{"StringEquals": map[string]any{"kms:ViaService": "dynamodb.${AWS::Region}.${AWS::URLSuffix}"}})}
	table := arn(x.table)
	apigw := func(path string) string { return "arn:${AWS::Partition}:apigateway:${AWS::Region}::" + path }
	var planKeys, planKey []string
	for _, tier := range f.devS.Gateway.RateLimitTiers {
		planKeys = append(planKeys, apigw("/usageplans/"+ref(x.plans[tier.Name])+"/keys"))
		planKey = append(planKey, apigw("/usageplans/"+ref(x.plans[tier.Name])+"/keys/*"))
	}
	if len(planKeys) == 0 {
		t.Fatal("no tiers")
	}
	want := map[string]map[string]statement{
		stack.FnAuthorizer: {
			"Logs":                    logs(stack.FnAuthorizer),
			"Table":                   {Actions: []string{"dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"}, Resources: []string{table}},
			"TableKeyThroughDynamoDB": tableKey,
		},
		stack.FnAdmin: {
			"Logs":                    logs(stack.FnAdmin),
			"Table":                   {Actions: []string{"dynamodb:BatchGetItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"}, Resources: []string{table}},
			"Indexes":                 {Actions: []string{"dynamodb:Query"}, Resources: []string{table + "/index/gsi1", table + "/index/gsi3"}},
			"TableKeyThroughDynamoDB": tableKey,
			"ApiKeys":                 {Actions: []string{"apigateway:GET", "apigateway:POST"}, Resources: []string{apigw("/apikeys")}},
			"ApiKey":                  {Actions: []string{"apigateway:DELETE", "apigateway:PATCH"}, Resources: []string{apigw("/apikeys/*")}},
			"UsagePlanKeys":           {Actions: []string{"apigateway:GET", "apigateway:POST"}, Resources: sorted(planKeys...)},
			"UsagePlanKey":            {Actions: []string{"apigateway:DELETE"}, Resources: sorted(planKey...)},
			"FlushAuthorizerCache":    {Actions: []string{"apigateway:DELETE"}, Resources: []string{apigw("/restapis/" + ref(x.api) + "/stages/dev/cache/authorizers")}},
			"ConsoleClientSecret":     {Actions: []string{"secretsmanager:GetSecretValue"}, Resources: []string{ref(consoleSecret(t, f.dev))}},
		},
		stack.FnJobs: {
			"Logs":                    logs(stack.FnJobs),
			"Table":                   {Actions: []string{"dynamodb:BatchGetItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:UpdateItem"}, Resources: []string{table}},
			"ExpiryIndex":             {Actions: []string{"dynamodb:Query"}, Resources: []string{table + "/index/gsi2"}},
			"TableKeyThroughDynamoDB": tableKey,
			"ApiKeys":                 {Actions: []string{"apigateway:GET"}, Resources: []string{apigw("/apikeys")}},
			"ApiKey":                  {Actions: []string{"apigateway:DELETE"}, Resources: []string{apigw("/apikeys/*")}},
			"FlushAuthorizerCache":    {Actions: []string{"apigateway:DELETE"}, Resources: []string{apigw("/restapis/" + ref(x.api) + "/stages/dev/cache/authorizers")}},
		},
		stack.FnUsage: {
			"Logs":                    logs(stack.FnUsage),
			"Table":                   {Actions: []string{"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"}, Resources: []string{table}},
			"TableKeyThroughDynamoDB": tableKey,
		},
		stack.FnPublisher: {
			"Logs":                    logs(stack.FnPublisher),
			"Stream":                  {Actions: []string{"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"}, Resources: []string{att(x.table, "StreamArn")}},
			"ListStreams":             {Actions: []string{"dynamodb:ListStreams"}, Resources: []string{table + "/stream/*"}},
			"TableKeyThroughDynamoDB": tableKey,
			"PutEvents":               {Actions: []string{"events:PutEvents"}, Resources: []string{arn(x.bus)}, Condition: `{"StringEquals":{"events:source":"keyward"}}`},
			"DeadLetters":             {Actions: []string{"sqs:SendMessage"}, Resources: []string{arn(x.dlq)}},
		},
	}
	for _, fn := range stack.Functions {
		got := f.dev.rolePolicy(t, x.role[fn])
		for sid, w := range want[fn] {
			if !reflect.DeepEqual(got[sid], w) {
				t.Errorf("%s %s:\n got %v\nwant %v", fn, sid, got[sid], w)
			}
		}
		for sid := range got {
			if _, ok := want[fn][sid]; !ok {
				t.Errorf("%s has statement %s: %v", fn, sid, got[sid])
			}
		}
		role := props(f.dev.res[x.role[fn]])
		if role["ManagedPolicyArns"] != nil || role["Policies"] != nil {
			t.Errorf("%s role has managed or inline policies: %v", fn, role)
		}
	}
}

// TestNoWildcardResource scans every policy in both stacks. Key policies
// are left out: there "*" means the key itself (TestKeys checks them).
func TestNoWildcardResource(t *testing.T) {
	f := get(t)
	for name, m := range map[string]*tmpl{"dev": f.dev, "prod": f.prod} {
		var docs []any
		for id, r := range m.res {
			p := props(r)
			switch r["Type"] {
			case "AWS::IAM::Policy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy", "AWS::IAM::ManagedPolicy":
				docs = append(docs, p["PolicyDocument"])
			case "AWS::IAM::Role":
				for _, ip := range sliceOf(p["Policies"]) {
					docs = append(docs, mapOf(ip)["PolicyDocument"])
				}
				for _, mp := range sliceOf(p["ManagedPolicyArns"]) {
					// Only API Gateway's account-wide logging role, which
					// AWS's own policy for that purpose serves.
					if !strings.HasSuffix(flat(mp), ":iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs") {
						t.Errorf("%s role %s has managed policy %s", name, id, flat(mp))
					}
				}
			case "AWS::KMS::Key":
				continue
			}
		}
		if len(docs) < 6 {
			t.Fatalf("%s: only %d policy documents", name, len(docs))
		}
		for _, doc := range docs {
			for _, raw := range sliceOf(mapOf(doc)["Statement"]) {
				st := mapOf(raw)
				for _, r := range flats(st["Resource"]) {
					if r == "*" {
						t.Errorf("%s: statement with resource *: %s", name, flat(st))
					}
				}
				for _, a := range flats(st["Action"]) {
					if st["Effect"] == "Allow" && (a == "*" || strings.HasSuffix(a, ":*")) {
						t.Errorf("%s: statement allows %s", name, a)
					}
				}
			}
		}
	}
}

func sliceOf(v any) []any {
	s, _ := v.([]any)
	return s
}

func TestAlarms(t *testing.T) {
	f := get(t)
	x := f.dev.ids(t, f.devS)
	alarms := map[string]map[string]any{}
	for _, r := range f.dev.ofType("AWS::CloudWatch::Alarm") {
		p := props(r)
		alarms[p["AlarmName"].(string)] = p
		if flat(p["AlarmActions"]) != flat([]any{map[string]any{"Ref": x.topic}}) {
			t.Errorf("alarm %v notifies %s", p["AlarmName"], flat(p["AlarmActions"]))
		}
	}
	metric := func(name string) string {
		p := alarms["keyward-dev-"+name]
		if p == nil {
			t.Errorf("no alarm %s", name)
			return ""
		}
		return fmt.Sprintf("%v %v %s %v %v", p["Namespace"], p["MetricName"], flat(p["Dimensions"]), p["Statistic"], p["Threshold"])
	}
	dims := func(kv ...string) string {
		var d []any
		for i := 0; i < len(kv); i += 2 {
			d = append(d, map[string]any{"Name": kv[i], "Value": map[string]any{"Ref": kv[i+1]}})
		}
		return flat(d)
	}
	for name, want := range map[string]string{
		stack.AlarmAuthorizerFailures:  `Keyward decisions [{"Name":"outcome","Value":"error"}] Sum 1`,
		stack.AlarmAuthorizerThrottles: "AWS/Lambda Throttles " + dims("FunctionName", x.fn[stack.FnAuthorizer]) + " Sum 1",
		stack.AlarmJobErrors:           "AWS/Lambda Errors " + dims("FunctionName", x.fn[stack.FnJobs]) + " Sum 1",
		stack.AlarmPublisherErrors:     "AWS/Lambda Errors " + dims("FunctionName", x.fn[stack.FnPublisher]) + " Sum 1",
		stack.AlarmPublisherLag:        "AWS/Lambda IteratorAge " + dims("FunctionName", x.fn[stack.FnPublisher]) + " Maximum 300000",
		stack.AlarmUsageErrors:         "AWS/Lambda Errors " + dims("FunctionName", x.fn[stack.FnUsage]) + " Sum 1",
	} {
		if got := metric(name); got != want {
			t.Errorf("alarm %s: %s, want %s", name, got, want)
		}
	}
	if got := metric(stack.AlarmAPI5xx); !strings.HasPrefix(got, "AWS/ApiGateway 5XXError") || !strings.HasSuffix(got, "Average 0.01") || !strings.Contains(got, `"Name":"Stage"`) {
		t.Errorf("api 5xx alarm %s", got)
	}
	if got := metric(stack.AlarmPublisherDLQ); !strings.HasPrefix(got, "AWS/SQS ApproximateNumberOfMessagesVisible") {
		t.Errorf("dead-letter alarm %s", got)
	}
	throttles := flat(alarms["keyward-dev-"+stack.AlarmTableThrottles]["Metrics"])
	for _, want := range []string{`"Expression":"r + w"`, `"MetricName":"ReadThrottleEvents"`, `"MetricName":"WriteThrottleEvents"`, `"Namespace":"AWS/DynamoDB"`, `"Value":"${` + x.table + `}"`} {
		if !strings.Contains(throttles, want) {
			t.Errorf("table throttle alarm lacks %s: %s", want, throttles)
		}
	}
	if len(alarms) != 9 {
		t.Errorf("%d alarms", len(alarms))
	}
	_, sub := f.prod.only(t, "AWS::SNS::Subscription")
	if sub["Protocol"] != "email" || sub["Endpoint"] != "ops@example.org" {
		t.Errorf("subscription %v", sub)
	}
}

func TestDashboard(t *testing.T) {
	f := get(t)
	_, p := f.dev.only(t, "AWS::CloudWatch::Dashboard")
	body := flat(p["DashboardBody"])
	for _, o := range stack.Outcomes {
		for _, want := range []string{`["Keyward","decisions","outcome","` + o + `"`, `["Keyward","latency_ms","outcome","` + o + `"`} {
			if !strings.Contains(body, want) {
				t.Errorf("dashboard lacks %s", want)
			}
		}
	}
	for _, want := range []string{`"stat":"p50"`, `"stat":"p99"`, `"AWS/ApiGateway","Count"`, `"AWS/ApiGateway","4XXError"`, `"AWS/ApiGateway","5XXError"`, `"AWS/ApiGateway","Latency"`} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard lacks %s", want)
		}
	}
	if p["DashboardName"] != "keyward-dev" {
		t.Errorf("dashboard name %v", p["DashboardName"])
	}
}

func TestOutputs(t *testing.T) {
	f := get(t)
	x := f.dev.ids(t, f.devS)
	out := map[string]string{}
	for name, o := range mapOf(f.dev.t["Outputs"]) {
		if strings.HasPrefix(name, "ApiEndpoint") { // RestApi's own
			continue
		}
		out[name] = flat(mapOf(o)["Value"])
	}
	stageID, _ := f.dev.only(t, "AWS::ApiGateway::Stage")
	api := "https://" + ref(x.api) + ".execute-api.${AWS::Region}.${AWS::URLSuffix}/" + ref(stageID) + "/"
	want := map[string]string{
		stack.OutputAPIURL:                api,
		stack.OutputAdminAPIURL:           api + "v1",
		stack.OutputBrowserURL:            "https://" + ref(x.api) + ".execute-api.${AWS::Region}.${AWS::URLSuffix}/dev/browser",
		stack.OutputAuthorizerFunctionARN: arn(x.fn[stack.FnAuthorizer]),
		stack.OutputEventBusName:          ref(x.bus),
		stack.OutputTableName:             ref(x.table),
		stack.OutputPepperKeyARN:          arn(x.pepperKey),
		stack.OutputAlarmTopicARN:         ref(x.topic),
		stack.OutputAlertsTopicARN:        ref(x.alerts),
		stack.OutputJobsFunctionName:      ref(x.fn[stack.FnJobs]),
		stack.OutputOperatorRoleARN:       arn(x.operator),
		stack.OutputConsoleURL:            "https://" + ref(x.api) + ".execute-api.${AWS::Region}.${AWS::URLSuffix}/dev/console",
		stack.OutputUserPoolID:            ref(userPool(t, f.dev)),
		stack.OutputSignInDomain:          "https://" + ref(signInDomain(t, f.dev)) + ".auth.${AWS::Region}.amazoncognito.com",
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("outputs\n got %v\nwant %v", out, want)
	}
}

func TestMissingBootstrapBlocksDeploy(t *testing.T) {
	f := get(t)
	assertions.Annotations_FromStack(f.nodist).HasError(jsii.String("/keyward-nodist"),
		assertions.Match_StringLikeRegexp(jsii.String("no bootstrap for authorizer, admin, jobs, publisher")))
	if errs := assertions.Annotations_FromStack(f.nodist).FindError(jsii.String("*"), assertions.Match_AnyValue()); len(*errs) != 1 {
		t.Errorf("%d errors on the stack without binaries", len(*errs))
	}
	for name, st := range map[string]awscdk.Stack{"dev": f.devStack, "prod": f.prodStack, "oidc": f.oidcStack} {
		if errs := assertions.Annotations_FromStack(st).FindError(jsii.String("*"), assertions.Match_AnyValue()); len(*errs) != 0 {
			t.Errorf("%s: errors %v", name, *errs)
		}
	}
	// The placeholder upstream is a warning, not an error.
	assertions.Annotations_FromStack(f.devStack).HasWarning(jsii.String("/keyward-dev"), assertions.Match_StringLikeRegexp(jsii.String("upstreamUrl is the placeholder")))
}

// TestCustomTiers: tiers other than gateway.json's get a usage plan each
// and reach every function that reads the gateway settings, so that the
// admin API accepts their rates and provisions into their plans.
func TestCustomTiers(t *testing.T) {
	f := get(t)
	plans := f.tiers.ofType("AWS::ApiGateway::UsagePlan")
	if len(plans) != 2 {
		t.Fatalf("%d usage plans for 2 tiers", len(plans))
	}
	for _, plan := range plans {
		props := plan["Properties"].(map[string]any)
		name := props["UsagePlanName"].(string)
		throttle := props["Throttle"].(map[string]any)
		if strings.HasSuffix(name, "-bulk") && (throttle["RateLimit"] != 1000.0 || throttle["BurstLimit"] != 5000.0) {
			t.Errorf("bulk plan throttle %v", throttle)
		}
	}
	seen := 0
	for _, fn := range f.tiers.ofType("AWS::Lambda::Function") {
		env, _ := fn["Properties"].(map[string]any)["Environment"].(map[string]any)
		vars, _ := env["Variables"].(map[string]any)
		if vars[config.EnvEventBus] != nil {
			continue // the publisher reads no gateway settings
		}
		if _, rotation := vars[config.EnvPepperRotationDays]; rotation && vars[config.EnvPepperRotationDays] != "30" {
			t.Errorf("%s %v", config.EnvPepperRotationDays, vars[config.EnvPepperRotationDays])
		}
		if v, _ := vars[config.EnvRateLimitTiers].(string); v != "" {
			var tiers []map[string]any
			if err := json.Unmarshal([]byte(v), &tiers); err != nil || len(tiers) != 2 || tiers[1]["name"] != "bulk" {
				t.Errorf("%s %q", config.EnvRateLimitTiers, v)
			}
			seen++
		}
	}
	if seen != 3 {
		t.Fatalf("%d functions got the tiers, want authorizer, admin and rotation", seen)
	}
	// With the shipped tiers the variable is left out.
	for _, fn := range f.dev.ofType("AWS::Lambda::Function") {
		env, _ := fn["Properties"].(map[string]any)["Environment"].(map[string]any)
		if vars, _ := env["Variables"].(map[string]any); vars[config.EnvRateLimitTiers] != nil {
			t.Fatal("the shipped tiers were passed as an override")
		}
	}
}

// TestNoRoutes: every method a route table lacks, on every resource and
// below each, gets the no-route mock (no authorizer, no Lambda, the
// envelope of gateway.json's no_route), so that API Gateway's
// MISSING_AUTHENTICATION_TOKEN only ever means an operator route without
// a signature.
func TestNoRoutes(t *testing.T) {
	f := get(t)
	for _, c := range f.devAndProd() {
		got := map[string]bool{}
		for _, r := range c.m.ofType("AWS::ApiGateway::Method") {
			p := props(r)
			in, _ := p["Integration"].(map[string]any)
			if in["Type"] != "MOCK" || p["HttpMethod"] == "OPTIONS" {
				continue // OPTIONS: the browser endpoint's preflights, TestBrowserPreflights
			}
			at := c.m.path(t, flat(p["ResourceId"]))
			got[at] = true
			resp := in["IntegrationResponses"].([]any)[0].(map[string]any)
			templates := mapOf(resp["ResponseTemplates"])
			_, body := splitOverrides(templates["application/json"].(string))
			if p["HttpMethod"] != "ANY" || p["AuthorizationType"] != "NONE" || resp["StatusCode"] != "404" ||
				len(templates) != 1 || body != c.s.Gateway.NoRoute.Template ||
				flat(in["RequestTemplates"]) != flat(map[string]any{"application/json": `{"statusCode": 404}`}) {
				t.Errorf("%s no-route method on %s: %s", c.name, at, flat(p))
			}
		}
		want := map[string]bool{}
		for _, p := range stack.NoRoutePaths(c.s.Routes, config.BrowserRoutes(c.s.Routes), config.AdminRoutes(), config.ConsoleRoutes()) {
			want[p] = true
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s no-route resources:\n got %v\nwant %v", c.name, got, want)
		}
		// Every resource a route has, and the root, answers ANY; a greedy
		// child is added only where no variable child is already.
		for _, p := range []string{"/", "/v1", "/v1/keys/{id}", "/v1/{proxy+}", "/v1/keys/{id}/rotate/{proxy+}", "/{proxy+}", "/console", "/console/{proxy+}", "/browser", "/browser/{proxy+}"} {
			if !want[p] {
				t.Errorf("%s: no no-route mock on %s", c.name, p)
			}
		}
		for _, p := range []string{"/v1/keys/{proxy+}", "/invoices/{proxy+}", "/browser/invoices/{proxy+}"} {
			if want[p] {
				t.Errorf("%s: a greedy child beside a variable one on %s", c.name, p)
			}
		}
	}
	if paths := stack.NoRoutePaths(f.prodS.Routes); slices.Contains(paths, "/files/{path+}/{proxy+}") {
		t.Errorf("a greedy child below a greedy resource: %v", paths)
	}
}

// TestOperatorRole: only sessions of the stack's operator role onboard
// and offboard tenants: the role may invoke exactly those routes, the
// admin function is told its ARN, and the API's resource policy lets every
// signed request of the account reach the function, which refuses other
// principals in the error envelope, and denies other accounts outright.
func TestOperatorRole(t *testing.T) {
	f := get(t)
	x := f.dev.ids(t, f.devS)
	role := props(f.dev.res[x.operator])
	trust := flat(role["AssumeRolePolicyDocument"])
	if !strings.Contains(trust, `"Principal":{"AWS":"arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}`) || role["MaxSessionDuration"] != 3600.0 {
		t.Errorf("operator role %s", flat(role))
	}
	var want []string
	for _, r := range config.AdminRoutes().Routes {
		if r.Auth == config.AuthIAM {
			path := strings.ReplaceAll(r.Path, "{id}", "*")
			want = append(want, "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"+ref(x.api)+"/dev/"+r.Method+path)
		}
	}
	got := f.dev.rolePolicy(t, x.operator)
	if w := (statement{Actions: []string{"execute-api:Invoke"}, Resources: sorted(want...)}); len(got) != 1 || !reflect.DeepEqual(got["InvokeOperatorRoutes"], w) {
		t.Errorf("operator role policy %v, want %v", got, w)
	}
	api := props(f.dev.res[x.api])
	policy := flat(api["Policy"])
	if !strings.Contains(policy, `"Action":"execute-api:Invoke","Effect":"Allow","Principal":{"AWS":"*"},"Resource":"execute-api:/*","Sid":"InvokeAnyRoute"`) {
		t.Errorf("API resource policy %s", policy)
	}
	var operatorRoutes []string
	for _, r := range config.AdminRoutes().Routes {
		if r.Auth == config.AuthIAM {
			operatorRoutes = append(operatorRoutes, strconv.Quote("execute-api:/*/"+r.Method+strings.ReplaceAll(r.Path, "{id}", "*")))
		}
	}
	deny := `{"Action":"execute-api:Invoke","Condition":{"StringNotEquals":{"aws:PrincipalAccount":"${AWS::AccountId}"}},"Effect":"Deny","Principal":{"AWS":"*"},"Resource":[` +
		strings.Join(operatorRoutes, ",") + `],"Sid":"DenyOperatorRoutesToOtherAccounts"}`
	if len(operatorRoutes) == 0 || !strings.Contains(policy, deny) {
		t.Errorf("API resource policy %s\nwants %s", policy, deny)
	}
}

// TestUsage: the usage function is fed by subscription filters on the
// stage's access log (requests with a key) and the authorizer's log
// group (wrong secrets), which CloudWatch Logs may invoke it for; the
// alerts topic gets the chosen key events from the bus, by detail type,
// with an email subscription when one is configured.
func TestUsage(t *testing.T) {
	f := get(t)
	x := f.dev.ids(t, f.devS)
	access, _ := f.dev.find(t, "AWS::Logs::LogGroup", "LogGroupName", "/aws/apigateway/"+f.devS.StackName()+"/access")
	filters := map[string]string{}
	for _, r := range f.dev.ofType("AWS::Logs::SubscriptionFilter") {
		p := props(r)
		if flat(p["DestinationArn"]) != arn(x.fn[stack.FnUsage]) {
			t.Errorf("a subscription filter to %v", p["DestinationArn"])
		}
		filters[flat(p["LogGroupName"])] = flat(p["FilterPattern"])
	}
	want := map[string]string{ref(access): stack.UsageAccessLogPattern, ref(x.logs[stack.FnAuthorizer]): `"wrong_secret"`}
	if !reflect.DeepEqual(filters, want) {
		t.Errorf("subscription filters %v, want %v", filters, want)
	}
	invoked := false
	for _, r := range f.dev.ofType("AWS::Lambda::Permission") {
		p := props(r)
		if flat(p["FunctionName"]) == arn(x.fn[stack.FnUsage]) && flat(p["Principal"]) == "logs.amazonaws.com" {
			invoked = true
		}
	}
	if !invoked {
		t.Error("CloudWatch Logs may not invoke the usage function")
	}
	rule, p := f.dev.find(t, "AWS::Events::Rule", "Name", f.devS.StackName()+"-alerts")
	if flat(p["EventBusName"]) != ref(x.bus) ||
		jsonOf(t, p["EventPattern"]) != jsonOf(t, map[string]any{"detail-type": stack.DefaultAlertEvents, "source": []string{"keyward"}}) ||
		flat(p["Targets"].([]any)[0].(map[string]any)["Arn"]) != ref(x.alerts) {
		t.Errorf("alerts rule %s: %v", rule, p)
	}
	for _, bad := range []map[string]any{{"alertEvents": "key.new_network,key.created"}, {"alertEmail": "ops"}} {
		if _, err := stack.FromContext(contextOf(bad), repoRoot); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
	s, err := stack.FromContext(contextOf(map[string]any{"alertEmail": "keys@example.com", "alertEvents": "key.spike,key.unused"}), repoRoot)
	if err != nil || s.AlertEmail != "keys@example.com" || !slices.Equal(s.AlertEvents, []string{"key.spike", "key.unused"}) {
		t.Errorf("settings %v: %+v", err, s)
	}
}
