package stack_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyward/keyward/infra/stack"
	"github.com/keyward/keyward/pkg/config"
)

func userPool(t *testing.T, m *tmpl) string {
	t.Helper()
	id, _ := m.only(t, "AWS::Cognito::UserPool")
	return id
}

func consoleClient(t *testing.T, m *tmpl) string {
	t.Helper()
	id, _ := m.only(t, "AWS::Cognito::UserPoolClient")
	return id
}

func signInDomain(t *testing.T, m *tmpl) string {
	t.Helper()
	id, _ := m.only(t, "AWS::Cognito::UserPoolDomain")
	return id
}

func consoleSecret(t *testing.T, m *tmpl) string {
	t.Helper()
	id, _ := m.only(t, "AWS::SecretsManager::Secret")
	return id
}

// apiBase is the API's base URL as the template has it: the custom
// domain, or the stage's URL with the stage's name.
func apiBase(t *testing.T, m *tmpl, s stack.Settings) string {
	t.Helper()
	if s.DomainName != "" {
		return "https://" + s.DomainName
	}
	api, _ := m.only(t, "AWS::ApiGateway::RestApi")
	return "https://" + ref(api) + ".execute-api.${AWS::Region}.${AWS::URLSuffix}/" + s.Stage
}

// signInEnv is the admin function's console settings, as flat renders
// them: the stack's user pool, client and secret, or the OIDC provider the
// context names.
func signInEnv(t *testing.T, m *tmpl, s stack.Settings) map[string]string {
	t.Helper()
	env := map[string]string{
		config.EnvOIDCTenantClaim: s.TenantClaim, config.EnvOIDCRoleClaim: s.RoleClaim, config.EnvOIDCMemberClaim: s.MemberClaim,
		config.EnvConsoleURL: apiBase(t, m, s) + "/console",
	}
	if s.Cognito() {
		env[config.EnvOIDCIssuer] = "https://cognito-idp.${AWS::Region}.${AWS::URLSuffix}/" + ref(userPool(t, m))
		env[config.EnvOIDCClientID] = ref(consoleClient(t, m))
		env[config.EnvOIDCClientSecretARN] = ref(consoleSecret(t, m))
	} else {
		env[config.EnvOIDCIssuer] = s.OIDCIssuer
		env[config.EnvOIDCClientID] = s.OIDCClientID
		env[config.EnvOIDCClientSecretARN] = s.OIDCClientSecretARN
	}
	return env
}

// TestUserPool: members are invited, never sign themselves up; the pool
// has the tenant and the role as custom attributes, which an ID token
// carries as custom:tenant_id and custom:role.
func TestUserPool(t *testing.T) {
	f := get(t)
	f.dev.raw.HasResourceProperties(jsii.String("AWS::Cognito::UserPool"), assertions.Match_ObjectLike(&map[string]any{
		"UserPoolName":          "keyward-dev-members",
		"AdminCreateUserConfig": map[string]any{"AllowAdminCreateUserOnly": true},
		"UsernameAttributes":    []any{"email"},
		"Schema": assertions.Match_ArrayWith(&[]any{
			assertions.Match_ObjectLike(&map[string]any{"Name": stack.AttrRole, "AttributeDataType": "String", "Mutable": true}),
			assertions.Match_ObjectLike(&map[string]any{"Name": stack.AttrTenantID, "AttributeDataType": "String", "Mutable": true}),
		}),
	}))
	if "custom:"+stack.AttrTenantID != config.DefaultTenantClaim || "custom:"+stack.AttrRole != config.DefaultRoleClaim {
		t.Errorf("the pool's attributes %s, %s are not the default claims %s, %s", stack.AttrTenantID, stack.AttrRole, config.DefaultTenantClaim, config.DefaultRoleClaim)
	}
	for _, c := range []struct {
		name       string
		m          *tmpl
		protection string
		policy     string
	}{{"dev", f.dev, "INACTIVE", "Delete"}, {"prod", f.prod, "ACTIVE", "Retain"}} {
		id := userPool(t, c.m)
		p := props(c.m.res[id])
		if p["DeletionProtection"] != c.protection || c.m.res[id]["DeletionPolicy"] != c.policy {
			t.Errorf("%s user pool: deletion protection %v, policy %v", c.name, p["DeletionProtection"], c.m.res[id]["DeletionPolicy"])
		}
		if flat(p["AdminCreateUserConfig"]) != `{"AllowAdminCreateUserOnly":true}` {
			t.Errorf("%s user pool: self sign-up %s", c.name, flat(p["AdminCreateUserConfig"]))
		}
	}
}

// TestConsoleClient: the console is a confidential client of the
// authorization code grant only, on the hosted pages, sent back to the
// console's callback; it reads the tenant and the role and cannot write
// them.
func TestConsoleClient(t *testing.T) {
	f := get(t)
	for _, c := range []struct {
		name string
		m    *tmpl
		s    stack.Settings
		base string
	}{{"dev", f.dev, f.devS, ""}, {"prod", f.prod, f.prodS, "https://api.example.org"}} {
		p := props(c.m.res[consoleClient(t, c.m)])
		base := apiBase(t, c.m, c.s)
		if c.base != "" && base != c.base {
			t.Fatalf("%s base %s", c.name, base)
		}
		want := map[string]string{
			"UserPoolId":                      ref(userPool(t, c.m)),
			"GenerateSecret":                  "true",
			"AllowedOAuthFlows":               `["code"]`,
			"AllowedOAuthFlowsUserPoolClient": "true",
			"AllowedOAuthScopes":              `["openid","email","profile"]`,
			"SupportedIdentityProviders":      `["COGNITO"]`,
			"CallbackURLs":                    `["` + base + `/console/callback"]`,
			"LogoutURLs":                      `["` + base + `/console/signedout"]`,
			"IdTokenValidity":                 "60",
			"AccessTokenValidity":             "60",
			"RefreshTokenValidity":            "60",
			"TokenValidityUnits":              `{"AccessToken":"minutes","IdToken":"minutes","RefreshToken":"minutes"}`,
			"AuthSessionValidity":             "5",
			"ExplicitAuthFlows":               `["ALLOW_USER_SRP_AUTH","ALLOW_REFRESH_TOKEN_AUTH"]`,
			"PreventUserExistenceErrors":      "ENABLED",
			"EnableTokenRevocation":           "true",
		}
		for key, w := range want {
			if got := flat(p[key]); got != w {
				t.Errorf("%s client %s = %s, want %s", c.name, key, got, w)
			}
		}
		read, write := flats(p["ReadAttributes"]), flats(p["WriteAttributes"])
		for _, claim := range []string{config.DefaultTenantClaim, config.DefaultRoleClaim, "email"} {
			if !slices.Contains(read, claim) {
				t.Errorf("%s client does not read %s: %v", c.name, claim, read)
			}
		}
		if len(write) == 0 {
			t.Errorf("%s client: no write attributes, which lets it write every attribute", c.name)
		}
		for _, a := range write {
			if strings.HasPrefix(a, "custom:") {
				t.Errorf("%s client may write %s", c.name, a)
			}
		}
		// The URLs the client allows are the console's, as the admin
		// function gets it.
		console := signInEnv(t, c.m, c.s)[config.EnvConsoleURL]
		d := config.Deployment{ConsoleURL: console}
		if want["CallbackURLs"] != `["`+d.ConsoleCallbackURL()+`"]` || want["LogoutURLs"] != `["`+d.ConsoleLogoutURL()+`"]` {
			t.Errorf("%s: the client's URLs are not the console's (%s)", c.name, console)
		}
	}
}

// TestSignInDomain: the hosted pages' Cognito domain prefix is the stack's
// name and the first part of its id, or cognitoDomainPrefix.
func TestSignInDomain(t *testing.T) {
	f := get(t)
	dev := props(f.dev.res[signInDomain(t, f.dev)])
	domain := flat(dev["Domain"])
	stackGUID := `{"Fn::Select":[0,{"Fn::Split":["-",{"Fn::Select":[2,{"Fn::Split":["/","${AWS::StackId}"]}]}]}]}`
	if domain != "keyward-dev-"+stackGUID || flat(dev["UserPoolId"]) != ref(userPool(t, f.dev)) {
		t.Errorf("dev domain %s", flat(dev))
	}
	if prod := props(f.prod.res[signInDomain(t, f.prod)]); prod["Domain"] != "acme-keys" {
		t.Errorf("prod domain %s, want the context's prefix", flat(prod["Domain"]))
	}
}

// TestConsoleClientSecret: the client's secret goes from CloudFormation's
// attribute (no custom resource) to a secret of its own, which the admin
// function, and only it, may read.
func TestConsoleClientSecret(t *testing.T) {
	f := get(t)
	for _, c := range f.devAndProd() {
		secret := consoleSecret(t, c.m)
		if got, want := flat(props(c.m.res[secret])["SecretString"]), att(consoleClient(t, c.m), "ClientSecret"); got != want {
			t.Errorf("%s secret string %s, want %s", c.name, got, want)
		}
		if n := len(c.m.ofType("Custom::DescribeCognitoUserPoolClient")); n != 0 {
			t.Errorf("%s: %d custom resources read the client", c.name, n)
		}
		x := c.m.ids(t, c.s)
		env := props(c.m.res[x.fn[stack.FnAdmin]])["Environment"].(map[string]any)["Variables"].(map[string]any)
		if flat(env[config.EnvOIDCClientSecretARN]) != ref(secret) {
			t.Errorf("%s admin reads the secret %s", c.name, flat(env[config.EnvOIDCClientSecretARN]))
		}
		// Only the admin function's role names the secret.
		for id, r := range c.m.ofType("AWS::IAM::Policy") {
			doc := flat(props(r)["PolicyDocument"])
			if (strings.Contains(doc, "secretsmanager:") || strings.Contains(doc, secret)) && !slices.Contains(flats(props(r)["Roles"]), ref(x.role[stack.FnAdmin])) {
				t.Errorf("%s policy %s reads secrets: %s", c.name, id, doc)
			}
		}
		got := c.m.rolePolicy(t, x.role[stack.FnAdmin])["ConsoleClientSecret"]
		if want := (statement{Actions: []string{"secretsmanager:GetSecretValue"}, Resources: []string{ref(secret)}}); !reflect.DeepEqual(got, want) {
			t.Errorf("%s admin secret statement %v, want %v", c.name, got, want)
		}
	}
}

// TestConsoleRoutes: /console and everything below it reach the admin
// function through a Lambda proxy integration without an authorizer (the
// console signs members in itself), and the answer passes through as the
// function gives it (HTML, cookies).
func TestConsoleRoutes(t *testing.T) {
	f := get(t)
	for _, c := range []struct {
		name string
		m    *tmpl
		s    stack.Settings
	}{{"dev", f.dev, f.devS}, {"prod", f.prod, f.prodS}, {"oidc", f.oidc, f.oidcS}} {
		api, _ := c.m.only(t, "AWS::ApiGateway::RestApi")
		child := func(parent, part string) string {
			var ids []string
			for id, r := range c.m.ofType("AWS::ApiGateway::Resource") {
				if p := props(r); flat(p["ParentId"]) == parent && p["PathPart"] == part {
					ids = append(ids, id)
				}
			}
			if len(ids) != 1 {
				t.Fatalf("%s: resources %s below %s: %v", c.name, part, parent, ids)
			}
			return ids[0]
		}
		console := child(att(api, "RootResourceId"), "console")
		proxy := child(ref(console), "{proxy+}")
		adminURI := "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:" + c.s.StackName() + "-admin/invocations"
		for _, r := range config.ConsoleRoutes().Routes {
			resource := console
			if r.Path != config.ConsolePath {
				resource = proxy
			}
			c.m.raw.HasResourceProperties(jsii.String("AWS::ApiGateway::Method"), assertions.Match_ObjectLike(&map[string]any{
				"HttpMethod":        r.Method,
				"ResourceId":        map[string]any{"Ref": resource},
				"AuthorizationType": "NONE",
				"Integration":       assertions.Match_ObjectLike(&map[string]any{"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST"}),
			}))
			var method map[string]any
			for _, m := range c.m.ofType("AWS::ApiGateway::Method") {
				if p := props(m); p["HttpMethod"] == r.Method && flat(p["ResourceId"]) == ref(resource) {
					method = p
				}
			}
			in := mapOf(method["Integration"])
			if flat(in["Uri"]) != adminURI || method["AuthorizerId"] != nil || method["ApiKeyRequired"] == true {
				t.Errorf("%s %s %s: %s", c.name, r.Method, r.Path, flat(method))
			}
			for _, key := range []string{"RequestTemplates", "IntegrationResponses", "ContentHandling", "PassthroughBehavior"} {
				if in[key] != nil {
					t.Errorf("%s %s %s: integration %s = %s changes the function's answer", c.name, r.Method, r.Path, key, flat(in[key]))
				}
			}
		}
		if b := props(c.m.res[api])["BinaryMediaTypes"]; b != nil {
			t.Errorf("%s: binary media types %s", c.name, flat(b))
		}
	}
}

// TestOIDCProvider: with oidcIssuer, oidcClientId and oidcClientSecretArn
// the stack creates no user pool; the admin function gets the provider,
// the claims and the secret's ARN, which is all it may read.
func TestOIDCProvider(t *testing.T) {
	f := get(t)
	x := f.oidc.ids(t, f.oidcS)
	env := map[string]string{}
	for k, v := range props(f.oidc.res[x.fn[stack.FnAdmin]])["Environment"].(map[string]any)["Variables"].(map[string]any) {
		env[k] = flat(v)
	}
	want := map[string]string{
		config.EnvOIDCIssuer: oidcIssuer, config.EnvOIDCClientID: "keyward-console", config.EnvOIDCClientSecretARN: oidcSecretARN,
		config.EnvOIDCTenantClaim: "https://example.org/tenant", config.EnvOIDCRoleClaim: "https://example.org/role", config.EnvOIDCMemberClaim: "email",
		config.EnvConsoleURL: "https://" + ref(x.api) + ".execute-api.${AWS::Region}.${AWS::URLSuffix}/oidc/console",
	}
	for k, w := range want {
		if env[k] != w {
			t.Errorf("admin %s = %q, want %q", k, env[k], w)
		}
	}
	if !reflect.DeepEqual(want, signInEnv(t, f.oidc, f.oidcS)) {
		t.Errorf("signInEnv %v", signInEnv(t, f.oidc, f.oidcS))
	}
	got := f.oidc.rolePolicy(t, x.role[stack.FnAdmin])["ConsoleClientSecret"]
	if w := (statement{Actions: []string{"secretsmanager:GetSecretValue"}, Resources: []string{oidcSecretARN}}); !reflect.DeepEqual(got, w) {
		t.Errorf("admin secret statement %v, want %v", got, w)
	}
	outputs := mapOf(f.oidc.t["Outputs"])
	if _, ok := outputs[stack.OutputConsoleURL]; !ok {
		t.Error("no console URL output")
	}
	for _, name := range []string{stack.OutputUserPoolID, stack.OutputSignInDomain} {
		if _, ok := outputs[name]; ok {
			t.Errorf("output %s without a user pool", name)
		}
	}
	// Nothing else reads the environment's new variables.
	for _, fn := range stack.Functions {
		if fn == stack.FnAdmin {
			continue
		}
		vars := props(f.oidc.res[x.fn[fn]])["Environment"].(map[string]any)["Variables"].(map[string]any)
		for k := range want {
			if _, ok := vars[k]; ok {
				t.Errorf("%s gets %s", fn, k)
			}
		}
	}
}
