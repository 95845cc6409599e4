package stack

import (
	"fmt"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigateway"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/keyward/keyward/pkg/config"
)

// Output names.
const (
	OutputAPIURL                = "ApiUrl"
	OutputAdminAPIURL           = "AdminApiUrl"
	OutputAuthorizerFunctionARN = "AuthorizerFunctionArn"
	OutputEventBusName          = "EventBusName"
	OutputTableName             = "TableName"
	OutputPepperKeyARN          = "PepperKeyArn"
	OutputAlarmTopicARN         = "AlarmTopicArn"
	OutputJobsFunctionName      = "JobsFunctionName"
	OutputDomainTarget          = "CustomDomainTarget"
	OutputOperatorRoleARN       = "OperatorRoleArn"
	OutputConsoleURL            = "ConsoleUrl"
	OutputBrowserURL            = "BrowserUrl"
	OutputAlertsTopicARN        = "AlertsTopicArn"
	OutputUserPoolID            = "UserPoolId"
	OutputSignInDomain          = "SignInDomain"
)

// keyward holds the constructs while the stack is built; each part is one
// method in its own file.
type keyward struct {
	stack awscdk.Stack
	s     Settings

	roles     map[string]awsiam.Role
	logGroups map[string]awslogs.LogGroup
	fns       map[string]awslambda.Function

	tableKey  awskms.Key
	pepperKey awskms.Key
	table     awsdynamodb.Table

	api               awsapigateway.RestApi
	operator          awsiam.Role
	authorizer        awsapigateway.RequestAuthorizer
	browserAuthorizer awsapigateway.RequestAuthorizer    // the browser endpoint's (config.BrowserPath)
	plans             map[string]awsapigateway.UsagePlan // by tier
	signIn            signIn

	bus awsevents.EventBus
	dlq awssqs.Queue

	topic awssns.Topic

	accessLogs awslogs.LogGroup // the stage's, read by functions/usage
	alerts     awssns.Topic     // key events for operators
}

// New builds keyward's stack in scope, named Settings.StackName.
func New(scope constructs.Construct, s Settings) awscdk.Stack {
	st := awscdk.NewStack(scope, jsii.String(s.StackName()), &awscdk.StackProps{
		Description: jsii.String(fmt.Sprintf("keyward API keys, stage %s", s.Stage)),
	})
	k := &keyward{
		stack: st, s: s,
		roles: map[string]awsiam.Role{}, logGroups: map[string]awslogs.LogGroup{},
		fns: map[string]awslambda.Function{}, plans: map[string]awsapigateway.UsagePlan{},
	}
	if s.UpstreamURL == PlaceholderUpstream {
		awscdk.Annotations_Of(st).AddWarningV2(jsii.String("keyward:upstream"), jsii.String(PlaceholderWarning))
	}
	if missing := s.MissingBootstraps(); len(missing) > 0 {
		awscdk.Annotations_Of(st).AddError(jsii.String(fmt.Sprintf(
			"no bootstrap for %s in %s: this assembly holds placeholders and must not be deployed; run make build (make deploy does)",
			strings.Join(missing, ", "), s.DistDir)))
	}

	// Order matters only where one part reads another's attributes.
	k.executionRoles()
	k.keys()
	k.dataTable()
	k.eventBus()
	k.function(FnAuthorizer)
	k.restAPI()
	k.operatorRole()
	k.identity()
	k.function(FnAdmin)
	k.function(FnJobs)
	k.function(FnPublisher)
	k.function(FnUsage)
	k.adminIntegrationPermissions()
	k.permissions()
	k.publisherStream()
	k.usage()
	k.schedules()
	k.firstPepper()
	k.monitoring()
	k.outputs()
	return st
}

// name is a physical name: the stack's name and a suffix.
func (k *keyward) name(suffix string) string { return k.s.StackName() + "-" + suffix }

// removal is RETAIN for what a production stage must never lose.
func (k *keyward) removal() awscdk.RemovalPolicy {
	if k.s.Production {
		return awscdk.RemovalPolicy_RETAIN
	}
	return awscdk.RemovalPolicy_DESTROY
}

func (k *keyward) outputs() {
	out := func(id, value, desc string) {
		awscdk.NewCfnOutput(k.stack, jsii.String(id), &awscdk.CfnOutputProps{Value: jsii.String(value), Description: jsii.String(desc)})
	}
	out(OutputAPIURL, *k.api.Url(), "The stage's base URL: the protected API")
	out(OutputAdminAPIURL, *k.api.Url()+"v1", "keyward's admin API (the same API, under /v1)")
	out(OutputAlertsTopicARN, *k.alerts.TopicArn(), "Key events for operators (suspicious use, leaks): subscribe to it")
	out(OutputBrowserURL, k.browserURL(), "The protected API for pages in browsers (keys with allowed origins), CORS answered by the gateway")
	out(OutputAuthorizerFunctionARN, *k.fns[FnAuthorizer].FunctionArn(), "The REQUEST authorizer, to attach to other REST APIs (docs/deploy.md)")
	out(OutputEventBusName, *k.bus.EventBusName(), "The bus keyward's key events are put on (source keyward)")
	out(OutputTableName, *k.table.TableName(), "The DynamoDB table")
	out(OutputPepperKeyARN, *k.pepperKey.KeyArn(), "The KMS key that wraps the peppers")
	out(OutputAlarmTopicARN, *k.topic.TopicArn(), "The SNS topic every alarm notifies")
	out(OutputJobsFunctionName, *k.fns[FnJobs].FunctionName(), "The scheduled jobs' function")
	out(OutputOperatorRoleARN, *k.operator.RoleArn(), "The role whose sessions onboard and offboard tenants (SigV4 on /v1/tenants)")
	out(OutputConsoleURL, k.consoleURL(), "The members' web console")
	if k.signIn.pool != nil {
		out(OutputUserPoolID, *k.signIn.pool.UserPoolId(), "The members' Cognito user pool: invite members there, with custom:tenant_id and custom:role")
		out(OutputSignInDomain, *k.signIn.domain.BaseUrl(nil), "The user pool's hosted sign-in pages")
	}
}

// operatorRole creates the platform operators' role: principals of the
// account that may assume it (sts:AssumeRole in their own policies) call
// the /v1/tenants routes with its sessions, and the admin function admits
// no other principal there.
func (k *keyward) operatorRole() {
	k.operator = awsiam.NewRole(k.stack, jsii.String("OperatorRole"), &awsiam.RoleProps{
		RoleName:           jsii.String(k.name("operator")),
		AssumedBy:          awsiam.NewAccountRootPrincipal(),
		Description:        jsii.String("keyward " + k.s.Stage + ": onboards and offboards tenants (POST /v1/tenants...)"),
		MaxSessionDuration: awscdk.Duration_Hours(jsii.Number(1)),
	})
	var routes []string
	for _, r := range config.AdminRoutes().Routes {
		if r.Auth == config.AuthIAM {
			routes = append(routes, *k.api.ArnForExecuteApi(jsii.String(r.Method), jsii.String(arnPath(r.Path)), jsii.String(k.s.Stage)))
		}
	}
	k.operator.AddToPolicy(statement("InvokeOperatorRoutes", []string{"execute-api:Invoke"}, routes, nil))
}
