package stack

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyward/keyward/pkg/authorizer"
)

// The authorizer's Embedded Metric Format metrics (pkg/authorizer: a line
// per refusal, a line per batch of allowed decisions; dimension outcome).
const (
	MetricDecisions = "decisions"
	MetricLatency   = "latency_ms"
	DimOutcome      = "outcome"
)

// Outcomes are the values of the outcome dimension.
var Outcomes = []string{"allow", "deny", "unauthorized", "error"}

// Alarm names, after the stack name.
const (
	AlarmAuthorizerFailures  = "authorizer-failures"
	AlarmAuthorizerThrottles = "authorizer-throttles"
	AlarmAPI5xx              = "api-5xx"
	AlarmTableThrottles      = "table-throttles"
	AlarmJobErrors           = "job-errors"
	AlarmPublisherErrors     = "publisher-errors"
	AlarmPublisherLag        = "publisher-iterator-age"
	AlarmPublisherDLQ        = "publisher-dead-letters"
	AlarmUsageErrors         = "usage-errors"
)

// decisionMetric is one of the authorizer's metrics for one outcome;
// label it for a graph (an alarm takes it unlabelled).
func (k *keyward) decisionMetric(name, outcome, stat, label string) awscloudwatch.Metric {
	p := &awscloudwatch.MetricProps{
		Namespace:     jsii.String(authorizer.MetricsNamespace),
		MetricName:    jsii.String(name),
		DimensionsMap: &map[string]*string{DimOutcome: jsii.String(outcome)},
		Statistic:     jsii.String(stat),
		Period:        awscdk.Duration_Minutes(jsii.Number(5)),
	}
	if label != "" {
		p.Label = jsii.String(label)
	}
	return awscloudwatch.NewMetric(p)
}

// monitoring creates the alarm topic, the alarms and the dashboard.
func (k *keyward) monitoring() {
	k.topic = awssns.NewTopic(k.stack, jsii.String("Alarms"), &awssns.TopicProps{
		DisplayName: jsii.String("keyward " + k.s.Stage + " alarms"),
		EnforceSSL:  jsii.Bool(true),
	})
	if k.s.AlarmEmail != "" {
		k.topic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(k.s.AlarmEmail), nil))
	}
	five := awscdk.Duration_Minutes(jsii.Number(5))
	lambdaMetric := func(fn, name, stat string) awscloudwatch.Metric {
		return k.fns[fn].Metric(jsii.String(name), &awscloudwatch.MetricOptions{Statistic: jsii.String(stat), Period: five})
	}
	stage := k.api.DeploymentStage()
	tableMetric := func(name string) awscloudwatch.Metric {
		return k.table.Metric(jsii.String(name), &awscloudwatch.MetricOptions{Statistic: jsii.String("Sum"), Period: five})
	}
	alarm := func(name, desc string, metric awscloudwatch.IMetric, threshold float64) {
		a := awscloudwatch.NewAlarm(k.stack, jsii.String("Alarm"+title(camel(name))), &awscloudwatch.AlarmProps{
			AlarmName:          jsii.String(k.name(name)),
			AlarmDescription:   jsii.String(desc),
			Metric:             metric,
			Threshold:          jsii.Number(threshold),
			EvaluationPeriods:  jsii.Number(1),
			ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
			TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
		})
		a.AddAlarmAction(awscloudwatchactions.NewSnsAction(k.topic))
	}

	// Not AWS/Lambda Errors: the authorizer answers every refused key
	// with the error "Unauthorized", which Lambda counts as an error. A
	// failure (store, KMS, unknown pepper) is outcome=error; one that
	// stops the function from starting shows as API 5XX.
	alarm(AlarmAuthorizerFailures, "The authorizer failed to decide (fail closed: clients got 500)",
		k.decisionMetric(MetricDecisions, "error", "Sum", ""), 1)
	alarm(AlarmAuthorizerThrottles, "The authorizer was throttled (account concurrency)",
		lambdaMetric(FnAuthorizer, "Throttles", "Sum"), 1)
	alarm(AlarmAPI5xx, "At least 1% of API requests got a 5XX",
		stage.MetricServerError(&awscloudwatch.MetricOptions{Statistic: jsii.String("Average"), Period: five}), 0.01)
	alarm(AlarmTableThrottles, "DynamoDB throttled reads or writes on the table",
		awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
			Expression: jsii.String("r + w"),
			UsingMetrics: &map[string]awscloudwatch.IMetric{
				"r": tableMetric("ReadThrottleEvents"),
				"w": tableMetric("WriteThrottleEvents"),
			},
			Label:  jsii.String("read + write throttle events"),
			Period: five,
		}), 1)
	alarm(AlarmJobErrors, "A scheduled job failed", lambdaMetric(FnJobs, "Errors", "Sum"), 1)
	alarm(AlarmPublisherErrors, "The event publisher failed a batch", lambdaMetric(FnPublisher, "Errors", "Sum"), 1)
	alarm(AlarmPublisherLag, "Key events are more than 5 minutes behind the table",
		lambdaMetric(FnPublisher, "IteratorAge", "Maximum"), 5*60*1000)
	alarm(AlarmUsageErrors, "The usage function failed a log delivery", lambdaMetric(FnUsage, "Errors", "Sum"), 1)
	alarm(AlarmPublisherDLQ, "The publisher gave up on stream records (see the dead-letter queue)",
		k.dlq.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: five}), 1)

	k.dashboard()
}

// dashboard shows decisions, the API and the moving parts behind it.
func (k *keyward) dashboard() {
	var decisions, latency []awscloudwatch.IMetric
	for _, o := range Outcomes {
		decisions = append(decisions, k.decisionMetric(MetricDecisions, o, "Sum", o))
		latency = append(latency, k.decisionMetric(MetricLatency, o, "p50", o+" p50"), k.decisionMetric(MetricLatency, o, "p99", o+" p99"))
	}
	stage := k.api.DeploymentStage()
	five := awscdk.Duration_Minutes(jsii.Number(5))
	opts := func(stat string) *awscloudwatch.MetricOptions {
		return &awscloudwatch.MetricOptions{Statistic: jsii.String(stat), Period: five}
	}
	graph := func(title string, left []awscloudwatch.IMetric) awscloudwatch.IWidget {
		return awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{Title: jsii.String(title), Left: &left, Width: jsii.Number(12), Height: jsii.Number(6)})
	}
	auth, pub, rot := k.fns[FnAuthorizer], k.fns[FnPublisher], k.fns[FnJobs]
	awscloudwatch.NewDashboard(k.stack, jsii.String("Dashboard"), &awscloudwatch.DashboardProps{
		DashboardName: jsii.String(k.s.StackName()),
		Widgets: &[]*[]awscloudwatch.IWidget{
			{
				graph("Authorizer decisions by outcome", decisions),
				graph("Decision latency (ms), p50 and p99", latency),
			},
			{
				graph("API requests, 4XX, 5XX", []awscloudwatch.IMetric{
					stage.MetricCount(opts("Sum")), stage.MetricClientError(opts("Sum")), stage.MetricServerError(opts("Sum")),
				}),
				graph("API latency (ms)", []awscloudwatch.IMetric{
					stage.MetricLatency(opts("p50")), stage.MetricLatency(opts("p99")), stage.MetricIntegrationLatency(opts("p99")),
				}),
			},
			{
				graph("Authorizer function", []awscloudwatch.IMetric{
					auth.MetricInvocations(opts("Sum")), auth.MetricThrottles(opts("Sum")), auth.MetricDuration(opts("p99")),
				}),
				graph("Table", []awscloudwatch.IMetric{
					k.table.MetricConsumedReadCapacityUnits(opts("Sum")), k.table.MetricConsumedWriteCapacityUnits(opts("Sum")),
					k.table.Metric(jsii.String("ReadThrottleEvents"), opts("Sum")), k.table.Metric(jsii.String("WriteThrottleEvents"), opts("Sum")),
				}),
			},
			{
				graph("Event publisher", []awscloudwatch.IMetric{
					pub.Metric(jsii.String("IteratorAge"), opts("Maximum")), pub.MetricErrors(opts("Sum")),
					k.dlq.MetricApproximateNumberOfMessagesVisible(opts("Maximum")),
				}),
				graph("Scheduled jobs", []awscloudwatch.IMetric{
					rot.MetricInvocations(opts("Sum")), rot.MetricErrors(opts("Sum")), rot.MetricDuration(opts("Maximum")),
				}),
			},
		},
	})
}
