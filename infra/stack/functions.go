package stack

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/jobs"
)

// Spec is how one function runs.
type Spec struct {
	MemoryMB int
	Timeout  time.Duration
	// Reserved is its reserved concurrency; 0 leaves it unreserved.
	Reserved int
}

// Specs, with the reasons for each number. Every function is a small Go
// binary on provided.al2023/arm64 (cheaper per GB-second than x86_64).
// Lambda gives CPU in proportion to memory: 256 MB keeps the cold start
// (SDK clients, KMS unwraps) short without paying for memory a Go
// function of this size does not use; raise it if the Duration and
// memory metrics show otherwise (the authorizer writes no REPORT lines).
var Specs = map[string]Spec{
	// A decision is one GetItem and one HMAC: milliseconds. The cold
	// start adds one KMS Decrypt per pepper version. 5 s bounds a stuck
	// dependency well inside API Gateway's limit for a Lambda authorizer
	// (10 s), so a client gets the fail-closed 500 quickly instead of a
	// gateway timeout. Unreserved: it is the hot path, and reserving would
	// cap it.
	FnAuthorizer: {MemoryMB: 256, Timeout: 5 * time.Second},
	// A request is a few DynamoDB calls plus, for key changes, API
	// Gateway usage-plan calls, which pkg/apigw retries on throttling for
	// up to about 16 s. 25 s lets those retries finish and stays under
	// API Gateway's 29 s integration timeout (the idempotency records'
	// 2-minute lease is longer still).
	FnAdmin: {MemoryMB: 256, Timeout: 25 * time.Second},
	// The jobs page through their work and stop 5 s before the deadline
	// (pkg/jobs). Reserved concurrency of one run per job: overlapping
	// runs of a job are safe (revision-checked writes), and the cap
	// bounds the Scan and Query load the jobs put on the table, but the
	// expiry sweep, which ends the cached decisions of expired keys every
	// minute, must never wait behind a daily scan of every key.
	FnJobs: {MemoryMB: 256, Timeout: 5 * time.Minute, Reserved: len(jobs.Names)},
	// A batch of up to 100 stream records is at most 10 PutEvents calls.
	// Reserved concurrency 5 bounds the PutEvents rate a backlog can
	// produce (EventBridge's per-account PutEvents quota is shared); a
	// table with more stream shards than that falls behind, which the
	// iterator-age alarm reports.
	FnPublisher: {MemoryMB: 256, Timeout: 30 * time.Second, Reserved: 5},
	// A delivery of log lines is counted in memory and the ended minutes
	// written, one item per key and minute, in parallel (pkg/usage).
	// Reserved concurrency 4 bounds how many processes write the same
	// key's hour at once (each write is conditional, retried on a
	// collision); CloudWatch Logs retries a throttled delivery.
	FnUsage: {MemoryMB: 256, Timeout: time.Minute, Reserved: 4},
}

// LogRetention is how long every log group keeps its events.
const LogRetention = awslogs.RetentionDays_ONE_MONTH

// RoutesLayerPath is where the authorizer finds a custom route table.
const RoutesLayerPath = "/opt/keyward/routes.json"

// function creates one function from <DistDir>/<fn>/bootstrap, with its
// own log group and role.
func (k *keyward) function(fn string) {
	spec := Specs[fn]
	name := k.name(fn)
	id := title(fn)
	// Created explicitly: a retention, and a log group the role's
	// statements can name (no logs:CreateLogGroup, no wildcard).
	k.logGroups[fn] = awslogs.NewLogGroup(k.stack, jsii.String(id+"Logs"), &awslogs.LogGroupProps{
		LogGroupName:  jsii.String("/aws/lambda/" + name),
		Retention:     LogRetention,
		RemovalPolicy: k.removal(),
	})
	props := &awslambda.FunctionProps{
		// A fixed name: the REST API integrates the admin function by
		// ARN (see restAPI), and operators invoke functions by name.
		FunctionName: jsii.String(name),
		Description:  jsii.String("keyward " + fn + ", " + k.s.Stage),
		Code:         k.code(fn),
		Handler:      jsii.String("bootstrap"),
		Runtime:      awslambda.Runtime_PROVIDED_AL2023(),
		Architecture: awslambda.Architecture_ARM_64(),
		MemorySize:   jsii.Number(spec.MemoryMB),
		Timeout:      awscdk.Duration_Seconds(jsii.Number(spec.Timeout.Seconds())),
		Role:         k.roles[fn],
		LogGroup:     k.logGroups[fn],
		Environment:  ptr(jsiiMap(k.environment(fn))),
	}
	if spec.Reserved > 0 {
		props.ReservedConcurrentExecutions = jsii.Number(spec.Reserved)
	}
	if fn == FnAuthorizer && k.s.RoutesFile != "" {
		props.Layers = &[]awslambda.ILayerVersion{k.routesLayer()}
	}
	if fn == FnAuthorizer {
		// Lambda's own START, END and REPORT lines (about 300 bytes an
		// invocation, more than the decision's share of its log) are INFO
		// system logs: at WARN they are not written, and the duration,
		// error and throttle metrics stay. The decision lines are JSON with
		// a "level", which Lambda passes through at INFO.
		props.LoggingFormat = awslambda.LoggingFormat_JSON
		props.SystemLogLevelV2 = awslambda.SystemLogLevel_WARN
		props.ApplicationLogLevelV2 = awslambda.ApplicationLogLevel_INFO
	}
	k.fns[fn] = awslambda.NewFunction(k.stack, jsii.String(id+"Function"), props)
}

// environment is fn's environment, built by config.Deployment as the
// function parses it. A function that would refuse it at start (a
// variable it needs the stack did not set) makes an error annotation, so
// that `cdk deploy` refuses the assembly.
func (k *keyward) environment(fn string) map[string]string {
	d := k.deployment()
	if err := checkable(d).Validate(fn); err != nil {
		awscdk.Annotations_Of(k.stack).AddError(jsii.String(fmt.Sprintf("the %s function's environment: %v", fn, err)))
	}
	return d.Environ(fn)
}

// deployment is the functions' configuration: the settings, and the
// names of the resources built so far (the authorizer function comes
// before the REST API that calls it, which the admin and jobs functions
// name). Every function that reads the gateway settings gets the
// deployed overrides, so that all three agree (the admin and jobs
// functions compute usage identities too).
func (k *keyward) deployment() config.Deployment {
	d := config.Deployment{
		Table:              *k.table.TableName(),
		PepperKeyID:        *k.pepperKey.KeyArn(),
		TokenPrefix:        k.s.Prefix,
		Gateway:            k.s.Gateway,
		Stage:              k.s.Stage,
		LeakPolicy:         k.s.LeakPolicy,
		PepperRotationDays: k.s.PepperRotationDays,
		EventBus:           *k.bus.EventBusName(),
	}
	if k.s.RoutesFile != "" {
		d.RoutesFile = RoutesLayerPath
	}
	if k.api != nil {
		d.RestAPIID = *k.api.RestApiId()
		d.UsagePlans = map[string]string{}
		for tier, plan := range k.plans {
			d.UsagePlans[tier] = *plan.UsagePlanId()
		}
	}
	if k.operator != nil {
		d.OperatorRoleARN = *k.operator.RoleArn()
	}
	if k.signIn.issuer != "" {
		d.OIDCIssuer, d.OIDCClientID, d.OIDCClientSecretARN = k.signIn.issuer, k.signIn.clientID, k.signIn.secretARN
		d.OIDCTenantClaim, d.OIDCRoleClaim, d.OIDCMemberClaim = k.s.TenantClaim, k.s.RoleClaim, k.s.MemberClaim
		d.ConsoleURL = k.consoleURL()
	}
	return d
}

// checkable is d with each value CloudFormation resolves at deployment
// (a reference, or a string with one) replaced by one of the form it
// resolves to, so that Validate checks what synthesis knows, and that
// nothing a function needs is missing. The rest of the references are
// names and ids, which Validate only needs to be set.
func checkable(d config.Deployment) config.Deployment {
	resolved := func(v *string, example string) {
		if *awscdk.Token_IsUnresolved(jsii.String(*v)) {
			*v = example
		}
	}
	resolved(&d.OIDCIssuer, "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_example")
	resolved(&d.OIDCClientID, "example")
	resolved(&d.OIDCClientSecretARN, "arn:aws:secretsmanager:eu-west-1:111122223333:secret:example-AbCdEf")
	resolved(&d.ConsoleURL, "https://example.execute-api.eu-west-1.amazonaws.com/dev"+config.ConsolePath)
	return d
}

// code is the function's bootstrap directory, or a placeholder when it
// has not been built (the stack then carries an error annotation).
func (k *keyward) code(fn string) awslambda.Code {
	dir := filepath.Join(k.s.DistDir, fn)
	if _, err := os.Stat(filepath.Join(dir, "bootstrap")); err != nil {
		dir = placeholderDir()
	}
	return awslambda.Code_FromAsset(jsii.String(dir), nil)
}

var placeholder = sync.OnceValue(func() string {
	dir, err := tempDir("keyward-placeholder-")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "bootstrap"), []byte("#!/bin/sh\necho 'keyward: placeholder; run make build and deploy again' >&2\nexit 1\n"), 0o755)
	}
	if err != nil {
		panic(fmt.Sprintf("keyward: placeholder bootstrap: %v", err))
	}
	return dir
})

func placeholderDir() string { return placeholder() }

// routesLayer ships a custom route table to the authorizer as a layer at
// RoutesLayerPath: the table as config.Routes parsed it, so the
// authorizer reads exactly the routes the API was built from.
func (k *keyward) routesLayer() awslambda.ILayerVersion {
	dir, err := tempDir("keyward-routes-")
	if err == nil {
		err = os.MkdirAll(filepath.Join(dir, "keyward"), 0o755)
	}
	var data []byte
	if err == nil {
		data, err = json.MarshalIndent(k.s.Routes, "", "  ")
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "keyward", "routes.json"), data, 0o644)
	}
	if err != nil {
		panic(fmt.Sprintf("keyward: routes layer: %v", err))
	}
	return awslambda.NewLayerVersion(k.stack, jsii.String("RoutesLayer"), &awslambda.LayerVersionProps{
		Code:                    awslambda.Code_FromAsset(jsii.String(dir), nil),
		CompatibleRuntimes:      &[]awslambda.Runtime{awslambda.Runtime_PROVIDED_AL2023()},
		CompatibleArchitectures: &[]awslambda.Architecture{awslambda.Architecture_ARM_64()},
		Description:             jsii.String("keyward route table from " + filepath.Base(k.s.RoutesFile)),
	})
}

// The directories synthesis copies assets from, removed by Cleanup.
var (
	tempMu   sync.Mutex
	tempDirs []string
)

func tempDir(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err == nil {
		tempMu.Lock()
		tempDirs = append(tempDirs, dir)
		tempMu.Unlock()
	}
	return dir, err
}

// Cleanup removes the temporary asset sources (a placeholder bootstrap,
// a routes layer); call it after the app has synthesized.
func Cleanup() {
	tempMu.Lock()
	defer tempMu.Unlock()
	for _, dir := range tempDirs {
		os.RemoveAll(dir)
	}
	tempDirs = nil
}

// jsiiMap converts a map for jsii, in sorted key order.
func jsiiMap(m map[string]string) map[string]*string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	out := make(map[string]*string, len(m))
	for _, key := range keys {
		out[key] = jsii.String(m[key])
	}
	return out
}
