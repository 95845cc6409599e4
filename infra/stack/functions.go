package stack

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
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
// function of this size does not use; raise it if the REPORT lines show
// otherwise.
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
	k.fns[fn] = awslambda.NewFunction(k.stack, jsii.String(id+"Function"), props)
}

// environment is what internal/cloud (and the publisher) read.
func (k *keyward) environment(fn string) map[string]string {
	if fn == FnPublisher {
		return map[string]string{"KEYWARD_EVENT_BUS": *k.bus.EventBusName()}
	}
	gw := k.s.Gateway
	env := map[string]string{
		"KEYWARD_TABLE":         *k.table.TableName(),
		"KEYWARD_PEPPER_KEY_ID": *k.pepperKey.KeyArn(),
		"KEYWARD_TOKEN_PREFIX":  k.s.Prefix,
		// Every function that reads the gateway settings gets the
		// deployed overrides, so that all three agree (the admin and
		// jobs functions compute usage identities too).
		"KEYWARD_CACHE_TTL":      strconv.Itoa(gw.Authorizer.CacheTTLSeconds),
		"KEYWARD_USAGE_IDENTITY": gw.UsageIdentity,
	}
	// Tiers other than the shipped ones reach the functions too (the
	// admin API accepts only the tiers' rates).
	if shipped, err := config.LoadGateway(); err != nil || !slices.Equal(gw.RateLimitTiers, shipped.RateLimitTiers) {
		tiers, _ := json.Marshal(gw.RateLimitTiers)
		env["KEYWARD_RATE_LIMIT_TIERS"] = string(tiers)
	}
	switch fn {
	case FnAuthorizer:
		if k.s.RoutesFile != "" {
			env["KEYWARD_ROUTES_FILE"] = RoutesLayerPath
		}
	case FnAdmin:
		env["KEYWARD_REST_API_ID"] = *k.api.RestApiId()
		env["KEYWARD_STAGE"] = k.s.Stage
		env["KEYWARD_USAGE_PLANS"] = k.usagePlansEnv()
		env["KEYWARD_OPERATOR_ROLE_ARN"] = *k.operator.RoleArn()
		if k.s.LeakPolicy != "" {
			env["KEYWARD_LEAK_POLICY"] = string(k.s.LeakPolicy)
		}
	case FnJobs:
		env["KEYWARD_USAGE_PLANS"] = k.usagePlansEnv()
		// The expiry sweep flushes the stage's authorizer cache.
		env["KEYWARD_REST_API_ID"] = *k.api.RestApiId()
		env["KEYWARD_STAGE"] = k.s.Stage
		if k.s.PepperRotationDays != 0 {
			env["KEYWARD_PEPPER_ROTATION_DAYS"] = strconv.Itoa(k.s.PepperRotationDays)
		}
	}
	return env
}

// usagePlansEnv is KEYWARD_USAGE_PLANS: tier=planId,... in tier order.
func (k *keyward) usagePlansEnv() string {
	var pairs []string
	for _, t := range k.s.Gateway.RateLimitTiers {
		pairs = append(pairs, t.Name+"="+*k.plans[t.Name].UsagePlanId())
	}
	return strings.Join(pairs, ",")
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
