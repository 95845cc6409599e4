package stack

import (
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogsdestinations"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyward/keyward/pkg/keyevents"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/usage"
)

// The subscription filters that feed functions/usage: the access log's
// lines of requests served with a key (principalId key_…), and the
// authorizer's lines of a wrong secret for a real key. The authorizer's
// log group is in Lambda's JSON log format, which may wrap a line, so its
// filter looks for the term rather than a JSON field.
const (
	UsageAccessLogPattern = `{ $.principalId = "key_*" }`
	UsageWrongSecretTerm  = "wrong_secret"
)

// AlertableEvents are the key events the alerts topic may deliver; by
// default it delivers them all (DefaultAlertEvents).
var AlertableEvents = []string{usage.ActionNewNetwork, usage.ActionSpike, usage.ActionInvalidSecret, usage.ActionOldKeyInUse,
	lifecycle.ActionKeyLeaked, lifecycle.ActionKeyExpiring, lifecycle.ActionKeyUnused}

// DefaultAlertEvents are the suspicious-use events and key.leaked.
var DefaultAlertEvents = AlertableEvents[:5]

// usage subscribes functions/usage to the logs it reads, and creates the
// alerts topic: the chosen key events from the bus, for operators.
func (k *keyward) usage() {
	dest := awslogsdestinations.NewLambdaDestination(k.fns[FnUsage], nil)
	awslogs.NewSubscriptionFilter(k.stack, jsii.String("UsageFromAccessLog"), &awslogs.SubscriptionFilterProps{
		LogGroup:      k.accessLogs,
		Destination:   dest,
		FilterPattern: awslogs.FilterPattern_Literal(jsii.String(UsageAccessLogPattern)),
	})
	awslogs.NewSubscriptionFilter(k.stack, jsii.String("UsageFromAuthorizerLog"), &awslogs.SubscriptionFilterProps{
		LogGroup:      k.logGroups[FnAuthorizer],
		Destination:   dest,
		FilterPattern: awslogs.FilterPattern_AllTerms(jsii.String(UsageWrongSecretTerm)),
	})

	topic := awssns.NewTopic(k.stack, jsii.String("Alerts"), &awssns.TopicProps{
		DisplayName: jsii.String("keyward " + k.s.Stage + " key alerts"),
		EnforceSSL:  jsii.Bool(true),
	})
	if k.s.AlertEmail != "" {
		topic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(k.s.AlertEmail), nil))
	}
	events := k.s.AlertEvents
	if len(events) == 0 {
		events = DefaultAlertEvents
	}
	awsevents.NewRule(k.stack, jsii.String("AlertsRule"), &awsevents.RuleProps{
		RuleName:    jsii.String(k.name("alerts")),
		Description: jsii.String("Key events for operators: suspicious use, leaks"),
		EventBus:    k.bus,
		EventPattern: &awsevents.EventPattern{
			Source:     jsii.Strings(keyevents.Source),
			DetailType: jsii.Strings(events...),
		},
		Targets: &[]awsevents.IRuleTarget{awseventstargets.NewSnsTopic(topic, nil)},
	})
	k.alerts = topic
}
