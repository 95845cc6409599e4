package stack

import (
	"sort"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/aws-cdk-go/awscdk/v2/customresources"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyward/keyward/pkg/jobs"
	"github.com/keyward/keyward/pkg/store/dynamo"
)

// Publisher stream settings (the event source mapping from the table's
// stream to the publisher).
const (
	// StreamBatchSize records per invocation: at most 10 PutEvents calls
	// of 10 entries; a small batch keeps a retried batch cheap.
	StreamBatchSize = 100
	// StreamBatchWindowSeconds trades a second of event latency for
	// fuller batches under load.
	StreamBatchWindowSeconds = 1
	// StreamMaxRetries: failed records (ReportBatchItemFailures) are
	// retried, the batch bisected on a function error, so one poison
	// record is isolated in about log2(100) tries; 10 leaves room for
	// an EventBridge outage of a few minutes on top of that.
	StreamMaxRetries = 10
	// StreamMaxRecordAgeSeconds: a record still failing after 6 hours
	// goes to the dead-letter queue (as its shard and sequence numbers),
	// leaving 18 of the stream's 24 hours to replay it; the audit entry
	// itself stays in the table.
	StreamMaxRecordAgeSeconds = 6 * 3600
)

// FirstPepperJob is the job the stack runs once when it is created, so
// that the first pepper exists before the first request: the authorizer
// and admin functions refuse to start without one, and the daily schedule
// would first run a day after deployment.
const FirstPepperJob = jobs.PepperRotation

// eventBus creates the custom bus the publisher puts events on, and the
// queue its stream mapping sends what it gives up on.
func (k *keyward) eventBus() {
	k.bus = awsevents.NewEventBus(k.stack, jsii.String("Bus"), &awsevents.EventBusProps{
		EventBusName: jsii.String("keyward-" + k.s.Stage),
		Description:  jsii.String("keyward key events (source keyward)"),
	})
	k.dlq = awssqs.NewQueue(k.stack, jsii.String("PublisherDeadLetters"), &awssqs.QueueProps{
		QueueName:       jsii.String(k.name("publisher-dlq")),
		Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
		EnforceSSL:      jsii.Bool(true),
	})
}

// publisherStream feeds the table's stream to the publisher. Written as
// the L1 resource so that no grant is added implicitly: permissions()
// holds exactly the stream, bus and queue actions.
func (k *keyward) publisherStream() {
	esm := awslambda.NewCfnEventSourceMapping(k.stack, jsii.String("PublisherStream"), &awslambda.CfnEventSourceMappingProps{
		FunctionName:   k.fns[FnPublisher].FunctionName(),
		EventSourceArn: k.table.TableStreamArn(),
		// From the oldest record the stream holds: entries written before
		// the mapping existed (the first pepper's) are published too.
		StartingPosition:               jsii.String("TRIM_HORIZON"),
		BatchSize:                      jsii.Number(StreamBatchSize),
		MaximumBatchingWindowInSeconds: jsii.Number(StreamBatchWindowSeconds),
		FunctionResponseTypes:          jsii.Strings("ReportBatchItemFailures"),
		BisectBatchOnFunctionError:     jsii.Bool(true),
		MaximumRetryAttempts:           jsii.Number(StreamMaxRetries),
		MaximumRecordAgeInSeconds:      jsii.Number(StreamMaxRecordAgeSeconds),
		ParallelizationFactor:          jsii.Number(1),
		FilterCriteria: &awslambda.CfnEventSourceMapping_FilterCriteriaProperty{
			Filters: &[]*awslambda.CfnEventSourceMapping_FilterProperty{{Pattern: jsii.String(dynamo.StreamFilterPattern())}},
		},
		DestinationConfig: &awslambda.CfnEventSourceMapping_DestinationConfigProperty{
			OnFailure: &awslambda.CfnEventSourceMapping_OnFailureProperty{Destination: k.dlq.QueueArn()},
		},
	})
	// Lambda checks the role's stream permissions when the mapping is
	// created.
	esm.Node().AddDependency(k.roles[FnPublisher])
}

// ScheduleNames are the jobs in a stable order.
func ScheduleNames() []string {
	var names []string
	for name := range jobs.Schedules {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// RateDuration expresses an interval as EventBridge's rate: whole days,
// hours or minutes.
func RateDuration(d time.Duration) awscdk.Duration {
	switch {
	case d%(24*time.Hour) == 0:
		return awscdk.Duration_Days(jsii.Number(int(d / (24 * time.Hour))))
	case d%time.Hour == 0:
		return awscdk.Duration_Hours(jsii.Number(int(d / time.Hour)))
	default:
		return awscdk.Duration_Minutes(jsii.Number(int(d / time.Minute)))
	}
}

// schedules runs each job on its interval (jobs.Schedules), with the
// input functions/jobs reads.
func (k *keyward) schedules() {
	for _, name := range ScheduleNames() {
		awsevents.NewRule(k.stack, jsii.String("Schedule"+title(camel(name))), &awsevents.RuleProps{
			RuleName:    jsii.String(k.name(name)),
			Description: jsii.String("keyward job " + name),
			Schedule:    awsevents.Schedule_Rate(RateDuration(jobs.Schedules[name])),
			Targets: &[]awsevents.IRuleTarget{awseventstargets.NewLambdaFunction(k.fns[FnJobs], &awseventstargets.LambdaFunctionProps{
				Event: awsevents.RuleTargetInput_FromObject(map[string]any{"job": name}),
				// The next run comes soon enough: a failed run is not
				// retried into the next one's slot.
				RetryAttempts: jsii.Number(2),
				MaxEventAge:   awscdk.Duration_Hours(jsii.Number(1)),
			})},
		})
	}
}

// firstPepper runs the pepper-rotation job once at creation (and again
// if the jobs function's name changes), asynchronously: the job
// creates version 1 when there is none and otherwise does nothing, so a
// run is harmless whenever it happens.
func (k *keyward) firstPepper() {
	logs := awslogs.NewLogGroup(k.stack, jsii.String("FirstPepperLogs"), &awslogs.LogGroupProps{
		Retention:     LogRetention,
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
	role := awsiam.NewRole(k.stack, jsii.String("FirstPepperRole"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String("keyward: invokes the jobs function once at creation, " + k.s.Stage),
	})
	role.AddToPolicy(logStatement(logs))
	call := &customresources.AwsSdkCall{
		Service: jsii.String("Lambda"),
		Action:  jsii.String("invoke"),
		Parameters: map[string]any{
			"FunctionName":   *k.fns[FnJobs].FunctionName(),
			"InvocationType": "Event",
			"Payload":        `{"job":"` + FirstPepperJob + `"}`,
		},
		PhysicalResourceId: customresources.PhysicalResourceId_Of(jsii.String("first-pepper")),
	}
	cr := customresources.NewAwsCustomResource(k.stack, jsii.String("FirstPepper"), &customresources.AwsCustomResourceProps{
		OnCreate: call,
		OnUpdate: call,
		Policy: customresources.AwsCustomResourcePolicy_FromStatements(&[]awsiam.PolicyStatement{
			awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
				Sid:       jsii.String("InvokeJobs"),
				Actions:   jsii.Strings("lambda:InvokeFunction"),
				Resources: jsii.Strings(*k.fns[FnJobs].FunctionArn()),
			}),
		}),
		Role:                role,
		LogGroup:            logs,
		InstallLatestAwsSdk: jsii.Bool(false),
	})
	// The job needs its permissions and the pepper key in place.
	cr.Node().AddDependency(k.fns[FnJobs], k.roles[FnJobs], k.pepperKey, k.table)
}

// camel turns "expiry-sweep" into "expirySweep".
func camel(s string) string {
	out := make([]byte, 0, len(s))
	up := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '-':
			up = true
		case up && c >= 'a' && c <= 'z':
			out = append(out, c-'a'+'A')
			up = false
		default:
			out = append(out, c)
			up = false
		}
	}
	return string(out)
}
