package stack

import (
	"fmt"
	"maps"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigateway"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscertificatemanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyward/keyward/pkg/config"
)

// Stage-wide default method throttling: far above any one key's usage
// plan (the highest tier is what gateway.json says), below the account's
// default 10,000 requests per second, so that one runaway client mix
// cannot take the whole regional quota from other APIs in the account.
const (
	StageRateLimit  = 5000
	StageBurstLimit = 2500
)

// AccessLogFields are the stage's access log, one JSON object per
// request. Never the Authorization header, the API key value or a body.
var AccessLogFields = [][2]string{
	{"requestId", "$context.requestId"},
	{"extendedRequestId", "$context.extendedRequestId"},
	{"requestTime", "$context.requestTime"},
	{"requestTimeEpoch", "$context.requestTimeEpoch"}, // functions/usage's minute
	{"ip", "$context.identity.sourceIp"},
	{"userAgent", "$context.identity.userAgent"},
	{"userArn", "$context.identity.userArn"},
	{"httpMethod", "$context.httpMethod"},
	{"resourcePath", "$context.resourcePath"},
	{"path", "$context.path"},
	{"protocol", "$context.protocol"},
	{"status", "$context.status"},
	{"responseLength", "$context.responseLength"},
	{"responseLatency", "$context.responseLatency"},
	{"principalId", "$context.authorizer.principalId"},
	{"tenantId", "$context.authorizer.tenant_id"},
	{"authorizerStatus", "$context.authorizer.status"},
	{"authorizerLatency", "$context.authorizer.latency"},
	{"authorizerError", "$context.authorizer.error"},
	{"errorType", "$context.error.responseType"},
	{"integrationStatus", "$context.integration.status"},
	{"integrationLatency", "$context.integration.latency"},
	{"integrationError", "$context.integration.error"},
}

// AccessLogFormat renders AccessLogFields as API Gateway's format string.
func AccessLogFormat() string {
	parts := make([]string, len(AccessLogFields))
	for i, f := range AccessLogFields {
		parts[i] = strconv.Quote(f[0]) + ":" + strconv.Quote(f[1])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// apiResourcePolicy lets any route be invoked: the public route needs an
// explicit Allow once any resource policy exists, key routes are decided
// by the authorizer, and operator routes by the SigV4 signature and then
// by the admin function, which admits only sessions of the operator role
// (KEYWARD_OPERATOR_ROLE_ARN) and tells any other principal of the
// account so in the error envelope; an IAM denial of those would be API
// Gateway's ACCESS_DENIED, whose template cannot tell it from an
// authorizer's (gateway response templates are not VTL). Principals of
// other accounts are denied the operator routes here, though: with the
// Allow above, their own policies would otherwise be all a cross-account
// call needs (API Gateway's "IAM authentication and resource policy"
// flow), and the admin function's check should not be the only wall.
func (k *keyward) apiResourcePolicy() awsiam.PolicyDocument {
	var operatorRoutes []string
	for _, r := range config.AdminRoutes().Routes {
		if r.Auth == config.AuthIAM {
			operatorRoutes = append(operatorRoutes, "execute-api:/*/"+r.Method+arnPath(r.Path))
		}
	}
	return awsiam.NewPolicyDocument(&awsiam.PolicyDocumentProps{Statements: &[]awsiam.PolicyStatement{
		awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("InvokeAnyRoute"),
			Effect:     awsiam.Effect_ALLOW,
			Principals: &[]awsiam.IPrincipal{awsiam.NewAnyPrincipal()},
			Actions:    jsii.Strings("execute-api:Invoke"),
			Resources:  jsii.Strings("execute-api:/*"),
		}),
		awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("DenyOperatorRoutesToOtherAccounts"),
			Effect:     awsiam.Effect_DENY,
			Principals: &[]awsiam.IPrincipal{awsiam.NewAnyPrincipal()},
			Actions:    jsii.Strings("execute-api:Invoke"),
			Resources:  jsii.Strings(operatorRoutes...),
			Conditions: &map[string]any{"StringNotEquals": map[string]any{"aws:PrincipalAccount": awscdk.Aws_ACCOUNT_ID()}},
		}),
	}})
}

// pathParam matches {name} and the greedy {name+}.
var pathParam = regexp.MustCompile(`\{([A-Za-z0-9_]+)(\+?)\}`)

// restAPI builds the REST API: the protected routes, again on the
// browser endpoint, and the admin routes, the authorizers, the gateway
// responses, the usage plans, the stage and the optional custom domain.
func (k *keyward) restAPI() {
	k.accessLogs = awslogs.NewLogGroup(k.stack, jsii.String("AccessLogs"), &awslogs.LogGroupProps{
		LogGroupName:  jsii.String("/aws/apigateway/" + k.s.StackName() + "/access"),
		Retention:     LogRetention,
		RemovalPolicy: k.removal(),
	})
	k.api = awsapigateway.NewRestApi(k.stack, jsii.String("Api"), &awsapigateway.RestApiProps{
		RestApiName: jsii.String(k.s.StackName()),
		Description: jsii.String("keyward: the protected API and keyward's admin API (/v1)"),
		// Usage plans count requests against the authorizer's
		// usageIdentifierKey, not a client-sent x-api-key.
		ApiKeySourceType: awsapigateway.ApiKeySourceType_AUTHORIZER,
		EndpointTypes:    &[]awsapigateway.EndpointType{awsapigateway.EndpointType_REGIONAL},
		// API Gateway writes access logs with an account-wide role.
		CloudWatchRole: jsii.Bool(k.s.APIGatewayAccountRole),
		Policy:         k.apiResourcePolicy(),
		DeployOptions: &awsapigateway.StageOptions{
			StageName:            jsii.String(k.s.Stage),
			AccessLogDestination: awsapigateway.NewLogGroupLogDestination(k.accessLogs),
			AccessLogFormat:      awsapigateway.AccessLogFormat_Custom(jsii.String(AccessLogFormat())),
			TracingEnabled:       jsii.Bool(k.s.Tracing),
			ThrottlingRateLimit:  jsii.Number(StageRateLimit),
			ThrottlingBurstLimit: jsii.Number(StageBurstLimit),
		},
	})

	gw := k.s.Gateway
	k.authorizer = k.requestAuthorizer("Authorizer", k.s.StackName(), gw.Authorizer)

	for _, r := range k.s.Routes.Routes {
		k.protectedRoute(r, endpoint{k.authorizer, config.IntegrationHeaders})
	}
	k.browserEndpoint()
	for _, r := range adminFunctionRoutes() {
		k.adminRoute(r)
	}
	k.noRoutes()
	k.gatewayResponses()
	for _, t := range gw.RateLimitTiers {
		k.plans[t.Name] = k.api.AddUsagePlan(jsii.String("Plan"+title(t.Name)), &awsapigateway.UsagePlanProps{
			Name:        jsii.String(k.name(t.Name)),
			Description: jsii.String(fmt.Sprintf("keyward rate-limit tier %s: %d requests per minute, burst %d", t.Name, t.RequestsPerMinute, t.Burst)),
			Throttle: &awsapigateway.ThrottleSettings{
				RateLimit:  jsii.Number(RateLimit(t)),
				BurstLimit: jsii.Number(t.Burst),
			},
			ApiStages: &[]*awsapigateway.UsagePlanPerApiStage{{Api: k.api, Stage: k.api.DeploymentStage()}},
		})
	}
	if k.s.DomainName != "" {
		domain := k.api.AddDomainName(jsii.String("Domain"), &awsapigateway.DomainNameOptions{
			DomainName:     jsii.String(k.s.DomainName),
			Certificate:    awscertificatemanager.Certificate_FromCertificateArn(k.stack, jsii.String("Certificate"), jsii.String(k.s.CertificateARN)),
			EndpointType:   awsapigateway.EndpointType_REGIONAL,
			SecurityPolicy: awsapigateway.SecurityPolicy_TLS_1_2,
		})
		awscdk.NewCfnOutput(k.stack, jsii.String(OutputDomainTarget), &awscdk.CfnOutputProps{
			Value:       domain.DomainNameAliasDomainName(),
			Description: jsii.String("Point " + k.s.DomainName + " here (CNAME, or a Route 53 alias with the regional hosted zone)"),
		})
	}
}

// requestAuthorizer attaches the authorizer function to the API.
func (k *keyward) requestAuthorizer(id, name string, a config.Authorizer) awsapigateway.RequestAuthorizer {
	return awsapigateway.NewRequestAuthorizer(k.stack, jsii.String(id), &awsapigateway.RequestAuthorizerProps{
		AuthorizerName: jsii.String(name),
		Handler:        k.fns[FnAuthorizer],
		// Already in API Gateway's syntax in gateway.json
		// (method.request.header.Authorization, context.identity.sourceIp).
		IdentitySources: jsii.Strings(a.IdentitySources...),
		ResultsCacheTtl: awscdk.Duration_Seconds(jsii.Number(a.CacheTTLSeconds)),
	})
}

// resource returns the API resource for a route path.
func (k *keyward) resource(path string) awsapigateway.IResource {
	if path == "/" {
		return k.api.Root()
	}
	return k.api.Root().ResourceForPath(jsii.String(strings.TrimPrefix(path, "/")))
}

// methodOptions authorizes a route as its auth says. A route authorized
// by keyward's authorizer also counts against the usage plan of the
// authorizer's usageIdentifierKey.
func (k *keyward) methodOptions(r config.Route, params map[string]*bool) *awsapigateway.MethodOptions {
	var o *awsapigateway.MethodOptions
	switch r.Auth {
	case config.AuthKey:
		o = &awsapigateway.MethodOptions{
			AuthorizationType: awsapigateway.AuthorizationType_CUSTOM,
			Authorizer:        k.authorizer,
			ApiKeyRequired:    jsii.Bool(true),
		}
	case config.AuthIAM:
		o = &awsapigateway.MethodOptions{AuthorizationType: awsapigateway.AuthorizationType_IAM}
	case config.AuthNone:
		o = &awsapigateway.MethodOptions{AuthorizationType: awsapigateway.AuthorizationType_NONE}
	default:
		// Settings.Validate compiled the tables: unreachable.
		panic(fmt.Sprintf("keyward: route %s %s: unknown auth %q", r.Method, r.Path, r.Auth))
	}
	if len(params) > 0 {
		o.RequestParameters = &params
	}
	return o
}

// IntegrationHeaders are config.IntegrationHeaders as integration request
// parameters: the authorizer's context as X-Keyward-* headers, and a static
// Authorization header in place of the client's, which is the key itself.
func IntegrationHeaders() map[string]string { return integrationHeaders(config.IntegrationHeaders) }

func integrationHeaders(headers map[string]string) map[string]string {
	m := map[string]string{}
	for header, source := range headers {
		m["integration.request.header."+header] = source
	}
	return m
}

// endpoint is what a protected route's method differs by between the
// server endpoint and the browser one.
type endpoint struct {
	authorizer awsapigateway.IAuthorizer
	headers    map[string]string // config.IntegrationHeaders or config.BrowserIntegrationHeaders
}

// protectedRoute forwards one route to the upstream (HTTP proxy) at its
// config.UpstreamPath, with its path parameters and the endpoint's
// integration headers (config.Routes admits only key-authorized routes to
// the protected API).
func (k *keyward) protectedRoute(r config.Route, e endpoint) {
	methodParams := map[string]*bool{}
	integrationParams := integrationHeaders(e.headers)
	for _, m := range pathParam.FindAllStringSubmatch(r.Path, -1) {
		methodParams["method.request.path."+m[1]] = jsii.Bool(true)
		integrationParams["integration.request.path."+m[1]] = "method.request.path." + m[1]
	}
	integration := awsapigateway.NewIntegration(&awsapigateway.IntegrationProps{
		Type:                  awsapigateway.IntegrationType_HTTP_PROXY,
		IntegrationHttpMethod: jsii.String(r.Method),
		// The greedy {name+} is {name} in an integration URI.
		Uri: jsii.String(k.s.UpstreamURL + strings.ReplaceAll(config.UpstreamPath(r.Path), "+}", "}")),
		Options: &awsapigateway.IntegrationOptions{
			ConnectionType:    awsapigateway.ConnectionType_INTERNET,
			RequestParameters: ptr(jsiiMap(integrationParams)),
		},
	})
	opts := k.methodOptions(r, methodParams)
	opts.Authorizer = e.authorizer
	k.resource(r.Path).AddMethod(jsii.String(r.Method), integration, opts)
}

// adminFunctionARN is built from the admin function's fixed name rather
// than referenced: the function's environment names the usage plans,
// which name the stage, whose deployment includes these methods, so a
// reference would be a cycle.
func (k *keyward) adminFunctionARN() string {
	return "arn:" + *awscdk.Aws_PARTITION() + ":lambda:" + *awscdk.Aws_REGION() + ":" + *awscdk.Aws_ACCOUNT_ID() + ":function:" + k.name(FnAdmin)
}

// adminFunctionRoutes are the routes the admin function serves: the admin
// API's and the console's.
func adminFunctionRoutes() []config.Route {
	return append(config.AdminRoutes().Routes, config.ConsoleRoutes().Routes...)
}

// adminRoute sends one of the admin function's routes to it (Lambda
// proxy), authorized as config.AdminRoutes and config.ConsoleRoutes say.
// The function's answer goes to the client as it is (status, headers such
// as Content-Type and Set-Cookie, body), so the console's HTML pages pass
// through untouched; the gateway's own responses (gateway.json) are JSON,
// and no admin route has a CORS preflight: the console is same-origin.
func (k *keyward) adminRoute(r config.Route) {
	integration := awsapigateway.NewIntegration(&awsapigateway.IntegrationProps{
		Type:                  awsapigateway.IntegrationType_AWS_PROXY,
		IntegrationHttpMethod: jsii.String("POST"),
		Uri: jsii.String("arn:" + *awscdk.Aws_PARTITION() + ":apigateway:" + *awscdk.Aws_REGION() +
			":lambda:path/2015-03-31/functions/" + k.adminFunctionARN() + "/invocations"),
	})
	// auth "": management scopes, in the authorizer's policy and checked
	// again by the handler; "iam": operators (SigV4); "none": GitHub's
	// secret-scanning callback, which verifies its own signature, and the
	// console, which signs members in itself (OpenID Connect).
	opts := k.methodOptions(r, nil)
	k.resource(r.Path).AddMethod(jsii.String(r.Method), integration, opts)
}

// ProxyResource is the greedy child noRoutes adds to a resource.
const ProxyResource = "{proxy+}"

// NoRoutePaths are the resources noRoutes answers ANY on: every resource
// of the route tables and their prefixes, and a greedy ProxyResource child
// of each that has no variable child already (API Gateway allows one
// variable child among siblings) and is not greedy itself.
func NoRoutePaths(routes ...config.RouteTable) []string {
	nodes := map[string]bool{"/": true}
	variableChild := map[string]bool{}
	for _, t := range routes {
		for _, r := range t.Routes {
			segs := strings.Split(strings.TrimPrefix(r.Path, "/"), "/")
			for i, seg := range segs {
				parent := "/" + strings.Join(segs[:i], "/")
				nodes["/"+strings.Join(segs[:i+1], "/")] = true
				if strings.HasPrefix(seg, "{") {
					variableChild[parent] = true
				}
			}
		}
	}
	var paths []string
	for p := range nodes {
		paths = append(paths, p)
		if !variableChild[p] && !strings.HasSuffix(p, "+}") {
			paths = append(paths, strings.TrimSuffix(p, "/")+"/"+ProxyResource)
		}
	}
	sort.Strings(paths)
	return paths
}

// noRoutes answers every method a route table lacks, on every resource and
// every path below one that names no route, with config.Gateway's NoRoute:
// a mock integration, so no Lambda or upstream runs. API Gateway prefers
// an explicit method to ANY and a literal or variable segment to a greedy
// one, so no route changes. Without them API Gateway would answer
// MISSING_AUTHENTICATION_TOKEN (or, for a request with a non-SigV4
// Authorization header, INCOMPLETE_SIGNATURE), which keyward keeps for
// what they also mean: an operator route called without a signature.
// Like every answer of the gateway's own, it carries the CORS headers, so
// that a page on the browser endpoint can read it.
func (k *keyward) noRoutes() {
	nr := k.s.Gateway.NoRoute
	status := jsii.String(strconv.Itoa(nr.Status))
	cors := mockHeaders(k.s.Gateway.Browser.CORSHeaders())
	integration := awsapigateway.NewMockIntegration(&awsapigateway.IntegrationOptions{
		// The mock's status; a request of another content type gets API
		// Gateway's 415.
		RequestTemplates:    &map[string]*string{"application/json": jsii.String(fmt.Sprintf(`{"statusCode": %d}`, nr.Status))},
		PassthroughBehavior: awsapigateway.PassthroughBehavior_WHEN_NO_TEMPLATES,
		IntegrationResponses: &[]*awsapigateway.IntegrationResponse{{
			StatusCode:         status,
			ResponseParameters: &cors.params,
			ResponseTemplates:  &map[string]*string{"application/json": jsii.String(cors.template(nr.Template))},
		}},
	})
	opts := &awsapigateway.MethodOptions{
		AuthorizationType: awsapigateway.AuthorizationType_NONE,
		MethodResponses:   &[]*awsapigateway.MethodResponse{{StatusCode: status, ResponseParameters: &cors.declared}},
	}
	for _, p := range NoRoutePaths(k.s.Routes, config.BrowserRoutes(k.s.Routes), config.AdminRoutes(), config.ConsoleRoutes()) {
		k.resource(p).AddMethod(jsii.String("ANY"), integration, opts)
	}
}

// arnPath is a route path as execute-api ARNs match it.
func arnPath(path string) string { return pathParam.ReplaceAllString(path, "*") }

// adminIntegrationPermissions lets API Gateway invoke the admin function,
// one permission per route of its and only from this API's stage.
func (k *keyward) adminIntegrationPermissions() {
	for _, r := range adminFunctionRoutes() {
		id := "ApiInvoke" + r.Method + regexp.MustCompile(`[^A-Za-z0-9]`).ReplaceAllString(r.Path, "")
		k.fns[FnAdmin].AddPermission(jsii.String(id), &awslambda.Permission{
			Principal: awsiam.NewServicePrincipal(jsii.String("apigateway.amazonaws.com"), nil),
			Action:    jsii.String("lambda:InvokeFunction"),
			SourceArn: k.api.ArnForExecuteApi(jsii.String(r.Method), jsii.String(arnPath(r.Path)), jsii.String(k.s.Stage)),
		})
	}
}

// GatewayResponseHeaders turns gateway.json's headers into API Gateway's
// static values (quoted).
func GatewayResponseHeaders(r config.GatewayResponse) map[string]string {
	m := map[string]string{}
	for name, v := range r.Headers {
		m[name] = "'" + v + "'"
	}
	return m
}

// gatewayResponses renders every response type keyward defines, each
// with the CORS headers, which a gateway response may map from the
// request's headers directly.
func (k *keyward) gatewayResponses() {
	types := append([]string(nil), config.GatewayResponseTypes...)
	sort.Strings(types)
	for _, rt := range types {
		r := k.s.Gateway.GatewayResponses[rt]
		opts := &awsapigateway.GatewayResponseOptions{
			Type:      awsapigateway.ResponseType_Of(jsii.String(rt)),
			Templates: &map[string]*string{"application/json": jsii.String(r.Template)},
		}
		if r.Status != 0 {
			opts.StatusCode = jsii.String(strconv.Itoa(r.Status))
		}
		h := GatewayResponseHeaders(r)
		maps.Copy(h, k.s.Gateway.Browser.CORSHeaders())
		opts.ResponseHeaders = ptr(jsiiMap(h))
		k.api.AddGatewayResponse(jsii.String("Response"+strings.ReplaceAll(title(strings.ToLower(rt)), "_", "")), opts)
	}
}

// RateLimit is a tier's per-second rate, as a usage plan holds it.
func RateLimit(t config.Tier) float64 { return float64(t.RequestsPerMinute) / 60 }
