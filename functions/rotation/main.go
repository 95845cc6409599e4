// Command rotation runs keyward's scheduled jobs on EventBridge schedules;
// each schedule passes {"job": "<name>"} (see package jobs). Wiring only.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/keyward/keyward/internal/cloud"
	"github.com/keyward/keyward/pkg/apigw"
	"github.com/keyward/keyward/pkg/jobs"
	"github.com/keyward/keyward/pkg/keys"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/store/dynamo"
)

// input is what each schedule sends.
type input struct {
	Job string `json:"job"`
}

func main() {
	log := cloud.Logger()
	ctx := context.Background()
	env, err := cloud.FromEnv()
	if err != nil {
		cloud.Fatal(log, "configuration", err)
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		cloud.Fatal(log, "aws configuration", err)
	}
	format, err := env.Format()
	if err != nil {
		cloud.Fatal(log, "token format", err)
	}
	gw, err := env.Gateway()
	if err != nil {
		cloud.Fatal(log, "gateway configuration", err)
	}
	plans, err := env.Plans(gw)
	if err != nil {
		cloud.Fatal(log, "usage plans", err)
	}
	st := dynamo.New(dynamodb.NewFromConfig(awsCfg), env.Table)
	j := jobs.New(jobs.Config{
		Store: st,
		// The jobs never mint keys, so the service gets no hasher: this
		// function holds no kms:Decrypt and never sees a plaintext pepper.
		Keys:       keys.New(st, nil, format, keys.WithAuditRetention(keys.DefaultAuditRetention)),
		Peppers:    pepper.KMS{Client: kms.NewFromConfig(awsCfg), KeyID: env.PepperKeyID},
		RateLimits: apigw.NewUsagePlans(apigateway.NewFromConfig(awsCfg), plans),
		Gateway:    gw,
		Logger:     log,
	})
	lambda.Start(func(ctx context.Context, in input) (jobs.Result, error) { return j.Run(ctx, in.Job) })
}
