// Package cloud is the wiring the Lambda functions share: configuration
// from the environment the CDK stack sets, and the DynamoDB store and
// KMS-backed pepper ring built from it. It holds no logic of its own.
package wiring

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/keyward/keyward/pkg/apigw"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/route"
	"github.com/keyward/keyward/pkg/store/dynamo"
)

// Env is the functions' configuration.
type Env struct {
	Table       string // KEYWARD_TABLE
	PepperKeyID string // KEYWARD_PEPPER_KEY_ID: the KMS key wrapping peppers
	TokenPrefix string // KEYWARD_TOKEN_PREFIX, default apikey.DefaultPrefix
	RoutesFile  string // KEYWARD_ROUTES_FILE: a route table in the bundle; empty for the shipped one
	// KEYWARD_CACHE_TTL, KEYWARD_USAGE_IDENTITY and KEYWARD_RATE_LIMIT_TIERS
	// (a JSON array like gateway.json's) override gateway.json with what
	// the stack deployed.
	CacheTTL       string
	UsageIdentity  string
	RateLimitTiers string
	// KEYWARD_REST_API_ID and KEYWARD_STAGE name the stage whose authorizer
	// cache the admin function flushes; KEYWARD_USAGE_PLANS maps each rate
	// limit tier to its usage plan ("default=abc123,standard=def456").
	RestAPIID  string
	Stage      string
	UsagePlans string
	// OperatorRole is KEYWARD_OPERATOR_ROLE_ARN: the role whose sessions
	// the admin function takes as the platform's operators.
	OperatorRole string
}

// FromEnv reads the environment; it fails on anything missing.
func FromEnv() (Env, error) {
	e := Env{
		Table:          os.Getenv("KEYWARD_TABLE"),
		PepperKeyID:    os.Getenv("KEYWARD_PEPPER_KEY_ID"),
		TokenPrefix:    os.Getenv("KEYWARD_TOKEN_PREFIX"),
		RoutesFile:     os.Getenv("KEYWARD_ROUTES_FILE"),
		CacheTTL:       os.Getenv("KEYWARD_CACHE_TTL"),
		UsageIdentity:  os.Getenv("KEYWARD_USAGE_IDENTITY"),
		RateLimitTiers: os.Getenv("KEYWARD_RATE_LIMIT_TIERS"),
		RestAPIID:      os.Getenv("KEYWARD_REST_API_ID"),
		Stage:          os.Getenv("KEYWARD_STAGE"),
		UsagePlans:     os.Getenv("KEYWARD_USAGE_PLANS"),
		OperatorRole:   os.Getenv("KEYWARD_OPERATOR_ROLE_ARN"),
	}
	if e.Table == "" || e.PepperKeyID == "" {
		return Env{}, fmt.Errorf("cloud: KEYWARD_TABLE and KEYWARD_PEPPER_KEY_ID must be set")
	}
	if e.TokenPrefix == "" {
		e.TokenPrefix = apikey.DefaultPrefix
	}
	return e, nil
}

// Format is the token format.
func (e Env) Format() (apikey.Format, error) { return apikey.NewFormat(e.TokenPrefix) }

// Routes compiles the protected API's routes with keyward's admin routes.
func (e Env) Routes() (*route.Table, error) {
	rt, err := config.Routes(e.RoutesFile)
	if err != nil {
		return nil, err
	}
	return route.Compile(rt, config.AdminRoutes())
}

// Gateway is the shipped gateway configuration with the deployed overrides.
func (e Env) Gateway() (config.Gateway, error) {
	g, err := config.LoadGateway()
	if err != nil {
		return config.Gateway{}, err
	}
	if e.CacheTTL != "" {
		ttl, err := strconv.Atoi(e.CacheTTL)
		if err != nil {
			return config.Gateway{}, fmt.Errorf("cloud: KEYWARD_CACHE_TTL %q: %w", e.CacheTTL, err)
		}
		g.Authorizer.CacheTTLSeconds = ttl
	}
	if e.UsageIdentity != "" {
		g.UsageIdentity = e.UsageIdentity
	}
	if e.RateLimitTiers != "" {
		g.RateLimitTiers = nil
		if err := json.Unmarshal([]byte(e.RateLimitTiers), &g.RateLimitTiers); err != nil {
			return config.Gateway{}, fmt.Errorf("cloud: KEYWARD_RATE_LIMIT_TIERS: %w", err)
		}
	}
	return g, g.Validate()
}

// Plans parses KEYWARD_USAGE_PLANS; every tier of the gateway
// configuration must have a plan.
func (e Env) Plans(g config.Gateway) (map[string]string, error) {
	plans := map[string]string{}
	for _, pair := range strings.Split(e.UsagePlans, ",") {
		tier, id, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || tier == "" || id == "" {
			return nil, fmt.Errorf("cloud: KEYWARD_USAGE_PLANS entry %q is not tier=plan-id", pair)
		}
		plans[tier] = id
	}
	for _, t := range g.RateLimitTiers {
		if plans[t.Name] == "" {
			return nil, fmt.Errorf("cloud: KEYWARD_USAGE_PLANS has no plan for tier %q", t.Name)
		}
	}
	return plans, nil
}

// Peppers loads the pepper ring, unwrapping each version with KMS once.
func (e Env) Peppers(ctx context.Context, src pepper.Source, client pepper.KMSAPI) (*pepper.Ring, error) {
	return pepper.Load(ctx, src, pepper.KMS{Client: client, KeyID: e.PepperKeyID})
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

// Runtime is what the functions that use the table share, built once per
// process in init.
type Runtime struct {
	Env     Env
	Log     *slog.Logger
	AWS     aws.Config
	Store   *dynamo.Store
	Format  apikey.Format
	Gateway config.Gateway
}

// Start reads the configuration and builds the shared clients; on any
// error it logs and exits, so Lambda reports an init failure and API
// Gateway fails closed.
func Start(ctx context.Context) *Runtime {
	log := Logger()
	env, err := FromEnv()
	if err != nil {
		Fatal(log, "configuration", err)
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		Fatal(log, "aws configuration", err)
	}
	format, err := env.Format()
	if err != nil {
		Fatal(log, "token format", err)
	}
	gw, err := env.Gateway()
	if err != nil {
		Fatal(log, "gateway configuration", err)
	}
	return &Runtime{Env: env, Log: log, AWS: awsCfg, Store: dynamo.New(dynamodb.NewFromConfig(awsCfg), env.Table), Format: format, Gateway: gw}
}

// Peppers loads the pepper ring with KMS, or exits.
func (r *Runtime) Peppers(ctx context.Context) *pepper.Ring {
	ring, err := r.Env.Peppers(ctx, r.Store, kms.NewFromConfig(r.AWS))
	if err != nil {
		Fatal(r.Log, "loading peppers", err)
	}
	return ring
}

// Flusher flushes the stage's authorizer cache (KEYWARD_REST_API_ID and
// KEYWARD_STAGE), or exits: a function that takes access away must be
// able to end cached decisions.
func (r *Runtime) Flusher() *apigw.Flusher {
	if r.Env.RestAPIID == "" || r.Env.Stage == "" {
		Fatal(r.Log, "configuration", fmt.Errorf("KEYWARD_REST_API_ID and KEYWARD_STAGE must be set"))
	}
	return apigw.NewFlusher(apigateway.NewFromConfig(r.AWS), r.Env.RestAPIID, r.Env.Stage)
}

// UsagePlans is the API Gateway usage plans of the rate-limit tiers, or
// exits.
func (r *Runtime) UsagePlans() *apigw.UsagePlans {
	plans, err := r.Env.Plans(r.Gateway)
	if err != nil {
		Fatal(r.Log, "usage plans", err)
	}
	return apigw.NewUsagePlans(apigateway.NewFromConfig(r.AWS), plans)
}
