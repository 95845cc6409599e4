package stack_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyward/keyward/infra/stack"
)

// The stacks under test, synthesized once for every test: dev with the
// defaults, prod with every option set, and one without binaries.
type fixture struct {
	base                        string
	dev, prod, tiers            *tmpl // tiers: a stack with customTiers
	oidc                        *tmpl // a stack with an OIDC provider of its own
	devS, prodS, oidcS          stack.Settings
	devStack, prodStack, nodist awscdk.Stack
	oidcStack                   awscdk.Stack
	prodRoutesFile              string
}

// fixtureBase holds the fixture's files, removed by TestMain.
var fixtureBase string

// The oidc fixture's provider and the secret of its client.
const (
	oidcIssuer    = "https://login.example.org/tenant/"
	oidcSecretARN = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:keyward-console-AbCdEf"
)

// customTiers are rate-limit tiers other than the shipped ones.
const customTiers = `[{"name":"default","requests_per_minute":120,"burst":20},{"name":"bulk","requests_per_minute":60000,"burst":5000}]`

var fixtureOnce = sync.OnceValues(func() (*fixture, error) {
	base, err := os.MkdirTemp("", "keyward-infra-test-")
	if err != nil {
		return nil, err
	}
	fixtureBase = base
	// Synthesis needs a bootstrap per function, not a real one.
	dist := filepath.Join(base, "dist")
	for _, fn := range stack.Functions {
		if err := os.MkdirAll(filepath.Join(dist, fn), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dist, fn, "bootstrap"), []byte("test "+fn), 0o755); err != nil {
			return nil, err
		}
	}
	routesFile := filepath.Join(base, "routes.json")
	if err := os.WriteFile(routesFile, []byte(`{"routes":[
		{"method":"GET","path":"/files/{path+}","scope":"files:read"},
		{"method":"POST","path":"/orders/{order_id}/items","scope":"orders:write"},
		{"method":"GET","path":"/status","scope":"status:read"}
	]}`), 0o644); err != nil {
		return nil, err
	}
	f := &fixture{base: base, prodRoutesFile: routesFile}
	if f.devS, err = stack.FromContext(contextOf(map[string]any{"distDir": dist}), repoRoot); err != nil {
		return nil, err
	}
	if f.prodS, err = stack.FromContext(contextOf(map[string]any{
		"stage": "prod", "upstreamUrl": "https://api.example.org/base", "routesFile": routesFile,
		"authorizerCacheTtl": "60", "usageIdentity": "tenant", "alarmEmail": "ops@example.org",
		"domainName": "api.example.org", "certificateArn": "arn:aws:acm:eu-west-1:111122223333:certificate/abc",
		"distDir": dist, "tracing": "true", "apiGatewayCloudWatchRole": "false", "leakPolicy": "flag",
		"cognitoDomainPrefix": "acme-keys",
	}), repoRoot); err != nil {
		return nil, err
	}
	if f.oidcS, err = stack.FromContext(contextOf(map[string]any{
		"stage": "oidc", "distDir": dist, "oidcIssuer": oidcIssuer, "oidcClientId": "keyward-console",
		"oidcClientSecretArn": oidcSecretARN, "oidcTenantClaim": "https://example.org/tenant",
		"oidcRoleClaim": "https://example.org/role", "oidcMemberClaim": "email",
	}), repoRoot); err != nil {
		return nil, err
	}
	tiersS, err := stack.FromContext(contextOf(map[string]any{"stage": "tiers", "distDir": dist, "rateLimitTiers": customTiers, "pepperRotationDays": "30"}), repoRoot)
	if err != nil {
		return nil, err
	}
	nodistS, err := stack.FromContext(contextOf(map[string]any{"stage": "nodist", "distDir": filepath.Join(base, "missing")}), repoRoot)
	if err != nil {
		return nil, err
	}
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(filepath.Join(base, "cdk.out"))})
	f.devStack = stack.New(app, f.devS)
	f.prodStack = stack.New(app, f.prodS)
	f.nodist = stack.New(app, nodistS)
	f.oidcStack = stack.New(app, f.oidcS)
	tiers := stack.New(app, tiersS)
	// Every stack exists before the first template: that synthesizes.
	f.tiers = newTmpl(assertions.Template_FromStack(tiers, nil))
	f.oidc = newTmpl(assertions.Template_FromStack(f.oidcStack, nil))
	f.dev = newTmpl(assertions.Template_FromStack(f.devStack, nil))
	f.prod = newTmpl(assertions.Template_FromStack(f.prodStack, nil))
	return f, nil
})

// synthesized is one synthesized stack with the settings it came from.
type synthesized struct {
	name string
	m    *tmpl
	s    stack.Settings
}

// devAndProd are the dev and prod stacks, which most checks hold for alike.
func (f *fixture) devAndProd() []synthesized {
	return []synthesized{{"dev", f.dev, f.devS}, {"prod", f.prod, f.prodS}}
}

func get(t *testing.T) *fixture {
	t.Helper()
	f, err := fixtureOnce()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// tmpl is a synthesized template as plain JSON values.
type tmpl struct {
	raw assertions.Template
	t   map[string]any
	res map[string]map[string]any
}

func newTmpl(raw assertions.Template) *tmpl {
	t := *raw.ToJSON()
	res := map[string]map[string]any{}
	for id, r := range t["Resources"].(map[string]any) {
		res[id] = r.(map[string]any)
	}
	return &tmpl{raw: raw, t: t, res: res}
}

// ofType returns the resources of one type by logical id.
func (m *tmpl) ofType(typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range m.res {
		if r["Type"] == typ {
			out[id] = r
		}
	}
	return out
}

// path is the path of an API resource, given as flat renders a reference
// to it (a method's ResourceId).
func (m *tmpl) path(t *testing.T, resource string) string {
	t.Helper()
	apiID, _ := m.only(t, "AWS::ApiGateway::RestApi")
	var up func(r string) string
	up = func(r string) string {
		if r == att(apiID, "RootResourceId") {
			return ""
		}
		p := props(m.res[strings.TrimSuffix(strings.TrimPrefix(r, "${"), "}")])
		return up(flat(p["ParentId"])) + "/" + p["PathPart"].(string)
	}
	return cmp.Or(up(resource), "/")
}

// props returns a resource's properties.
func props(r map[string]any) map[string]any {
	p, _ := r["Properties"].(map[string]any)
	return p
}

// only returns the one resource of a type.
func (m *tmpl) only(t *testing.T, typ string) (string, map[string]any) {
	t.Helper()
	rs := m.ofType(typ)
	if len(rs) != 1 {
		t.Fatalf("%d resources of type %s, want 1", len(rs), typ)
	}
	for id, r := range rs {
		return id, props(r)
	}
	panic("unreachable")
}

// find returns the one resource of a type whose property key flattens to
// value.
func (m *tmpl) find(t *testing.T, typ, key, value string) (string, map[string]any) {
	t.Helper()
	var ids []string
	for id, r := range m.ofType(typ) {
		if flat(props(r)[key]) == value {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("%d resources of type %s with %s = %s, want 1", len(ids), typ, key, value)
	}
	return ids[0], props(m.res[ids[0]])
}

// flat renders a CloudFormation value as one string: a Ref as ${Id}, a
// GetAtt as ${Id.Attr}, a Join joined, anything else as JSON.
func flat(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		b, _ := json.Marshal(normalize(x))
		return string(b)
	case map[string]any:
		if r, ok := x["Ref"]; ok && len(x) == 1 {
			return "${" + r.(string) + "}"
		}
		if g, ok := x["Fn::GetAtt"]; ok && len(x) == 1 {
			a := g.([]any)
			return "${" + a[0].(string) + "." + a[1].(string) + "}"
		}
		if j, ok := x["Fn::Join"]; ok && len(x) == 1 {
			a := j.([]any)
			var parts []string
			for _, p := range a[1].([]any) {
				parts = append(parts, flat(p))
			}
			return strings.Join(parts, a[0].(string))
		}
	}
	b, _ := json.Marshal(normalize(v))
	return string(b)
}

// normalize replaces the intrinsics flat knows inside a value by their
// strings.
func normalize(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case map[string]any:
		if len(x) == 1 {
			for k := range x {
				if k == "Ref" || k == "Fn::GetAtt" || k == "Fn::Join" {
					return flat(x)
				}
			}
		}
		out := map[string]any{}
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	}
	return v
}

// flats renders a value that is one item or a list as sorted strings.
func flats(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			out = append(out, flat(x))
		}
	} else if v != nil {
		out = append(out, flat(v))
	}
	sort.Strings(out)
	return out
}

// statement is a policy statement reduced to what the tests compare.
type statement struct {
	Actions    []string
	Resources  []string
	Principals []string
	Condition  string
}

func (s statement) String() string {
	return fmt.Sprintf("%v on %v by %v if %s", s.Actions, s.Resources, s.Principals, s.Condition)
}

// statements reduces a policy document's statements, by Sid.
func statements(t *testing.T, doc any) map[string]statement {
	t.Helper()
	out := map[string]statement{}
	for _, raw := range doc.(map[string]any)["Statement"].([]any) {
		st := raw.(map[string]any)
		if st["Effect"] != "Allow" {
			continue
		}
		sid, _ := st["Sid"].(string)
		if _, dup := out[sid]; dup {
			t.Fatalf("two statements with Sid %q", sid)
		}
		s := statement{Actions: flats(st["Action"]), Resources: flats(st["Resource"])}
		if p, ok := st["Principal"].(map[string]any); ok {
			s.Principals = flats(p["AWS"])
		}
		if c, ok := st["Condition"]; ok {
			s.Condition = flat(c)
		}
		out[sid] = s
	}
	return out
}

// rolePolicy is every statement attached to a role, across its
// AWS::IAM::Policy resources.
func (m *tmpl) rolePolicy(t *testing.T, roleID string) map[string]statement {
	t.Helper()
	out := map[string]statement{}
	for id, r := range m.ofType("AWS::IAM::Policy") {
		p := props(r)
		attached := false
		for _, role := range flats(p["Roles"]) {
			attached = attached || role == "${"+roleID+"}"
		}
		if !attached {
			continue
		}
		for sid, s := range statements(t, p["PolicyDocument"]) {
			if _, dup := out[sid]; dup {
				t.Fatalf("policy %s: Sid %q twice on role %s", id, sid, roleID)
			}
			out[sid] = s
		}
	}
	return out
}

// ids are the logical ids the tests refer to, found by what they are.
type ids struct {
	table, tableKey, pepperKey, api, bus, dlq, topic, alerts, operator string
	authorizer, browserAuthorizer                                      string
	fn, role, logs                                                     map[string]string
	plans                                                              map[string]string
}

func (m *tmpl) ids(t *testing.T, s stack.Settings) ids {
	t.Helper()
	var x ids
	x.table, _ = m.only(t, "AWS::DynamoDB::Table")
	x.api, _ = m.only(t, "AWS::ApiGateway::RestApi")
	x.authorizer, _ = m.find(t, "AWS::ApiGateway::Authorizer", "Name", s.StackName())
	x.browserAuthorizer, _ = m.find(t, "AWS::ApiGateway::Authorizer", "Name", s.StackName()+"-browser")
	x.bus, _ = m.only(t, "AWS::Events::EventBus")
	x.dlq, _ = m.only(t, "AWS::SQS::Queue")
	x.topic, _ = m.find(t, "AWS::SNS::Topic", "DisplayName", "keyward "+s.Stage+" alarms")
	x.alerts, _ = m.find(t, "AWS::SNS::Topic", "DisplayName", "keyward "+s.Stage+" key alerts")
	for id, r := range m.ofType("AWS::KMS::Key") {
		if strings.Contains(flat(props(r)["Description"]), "pepper") {
			x.pepperKey = id
		} else {
			x.tableKey = id
		}
	}
	x.fn, x.role, x.logs, x.plans = map[string]string{}, map[string]string{}, map[string]string{}, map[string]string{}
	for _, fn := range stack.Functions {
		name := s.StackName() + "-" + fn
		id, p := m.find(t, "AWS::Lambda::Function", "FunctionName", name)
		x.fn[fn] = id
		x.role[fn] = strings.TrimSuffix(strings.TrimPrefix(flat(p["Role"]), "${"), ".Arn}")
		x.logs[fn], _ = m.find(t, "AWS::Logs::LogGroup", "LogGroupName", "/aws/lambda/"+name)
	}
	for _, tier := range s.Gateway.RateLimitTiers {
		x.plans[tier.Name], _ = m.find(t, "AWS::ApiGateway::UsagePlan", "UsagePlanName", s.StackName()+"-"+tier.Name)
	}
	x.operator, _ = m.find(t, "AWS::IAM::Role", "RoleName", s.StackName()+"-operator")
	return x
}

func ref(id string) string        { return "${" + id + "}" }
func att(id, attr string) string  { return "${" + id + "." + attr + "}" }
func arn(id string) string        { return att(id, "Arn") }
func sorted(s ...string) []string { sort.Strings(s); return s }
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
