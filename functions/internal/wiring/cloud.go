// Package wiring is the start-up the Lambda functions share: the
// configuration the CDK stack sets in their environment (parsed and
// validated by package config), and the AWS clients, DynamoDB store and
// KMS-backed pepper ring built from it. It holds no logic of its own, and
// links only what every function needs: the API Gateway clients are
// package gatewayapi's, the console's start-up package consolesetup's, so
// that the authorizer's cold start initialises neither.
package wiring

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/route"
	"github.com/keyward/keyward/pkg/store/dynamo"
)

// Configure reads fn's configuration with getenv (os.Getenv) and checks
// that fn has all it needs.
func Configure(fn string, getenv func(string) string) (config.Deployment, error) {
	d, err := config.DeploymentFromEnv(getenv)
	if err != nil {
		return config.Deployment{}, err
	}
	return d, d.Validate(fn)
}

// Logger is the JSON logger every function writes to stdout, which
// Lambda sends to CloudWatch Logs.
func Logger() *slog.Logger {
	l := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	slog.SetDefault(l)
	return l
}

// Fatal logs an init failure and exits, so Lambda reports the init error
// and API Gateway fails closed.
func Fatal(l *slog.Logger, what string, err error) {
	l.Error(what, "error", err)
	os.Exit(1)
}

// Runtime is what a function's main wires its handler from, built once
// per process in init.
type Runtime struct {
	Fn     string
	Config config.Deployment
	Log    *slog.Logger
	AWS    aws.Config
	// Store, Format and Gateway are set for the functions that use the
	// table (all but the publisher).
	Store   *dynamo.Store
	Format  apikey.Format
	Gateway config.Gateway
}

// Start reads fn's configuration and builds the shared clients; on any
// error it logs and exits, so Lambda reports an init failure and API
// Gateway fails closed.
func Start(ctx context.Context, fn string) *Runtime {
	log := Logger()
	d, err := Configure(fn, os.Getenv)
	if err != nil {
		Fatal(log, "configuration", err)
	}
	awsCfg, err := lambdaAWSConfig(os.Getenv)
	if err != nil {
		Fatal(log, "aws configuration", err)
	}
	rt := &Runtime{Fn: fn, Config: d, Log: log, AWS: awsCfg}
	if fn == config.FnPublisher {
		return rt
	}
	if rt.Format, err = apikey.NewFormat(d.TokenPrefix); err != nil {
		Fatal(log, "token format", err)
	}
	rt.Store = dynamo.New(dynamodb.NewFromConfig(awsCfg), d.Table)
	rt.Gateway = d.Gateway
	return rt
}

// Peppers loads the pepper ring, unwrapping each version with KMS once,
// or exits.
func (r *Runtime) Peppers(ctx context.Context) *pepper.Ring {
	ring, err := pepper.Load(ctx, r.Store, r.KMS())
	if err != nil {
		Fatal(r.Log, "loading peppers", err)
	}
	return ring
}

// KMS is the pepper key, for a function that wraps peppers but never
// unwraps one (the jobs).
func (r *Runtime) KMS() pepper.KMS {
	return pepper.KMS{Client: kms.NewFromConfig(r.AWS), KeyID: r.Config.PepperKeyID}
}

// Routes compiles every route the API serves (config.APIRoutes), or
// exits.
func (r *Runtime) Routes() *route.Table {
	rt, err := config.Routes(r.Config.RoutesFile)
	if err == nil {
		var t *route.Table
		if t, err = route.Compile(config.APIRoutes(rt)...); err == nil {
			return t
		}
	}
	Fatal(r.Log, "route table", err)
	return nil
}

// PepperInterval is how old the newest pepper gets before the rotation
// job makes another: the deployed days, else def.
func (r *Runtime) PepperInterval(def time.Duration) time.Duration {
	if r.Config.PepperRotationDays == 0 {
		return def
	}
	return time.Duration(r.Config.PepperRotationDays) * 24 * time.Hour
}
