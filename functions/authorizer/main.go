// Command authorizer is the API Gateway REQUEST authorizer Lambda. Wiring
// only: the decision is package authorizer's.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/keyward/keyward/internal/cloud"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/store/dynamo"
)

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
	st := dynamo.New(dynamodb.NewFromConfig(awsCfg), env.Table)
	peppers, err := env.Peppers(ctx, st, kms.NewFromConfig(awsCfg))
	if err != nil {
		cloud.Fatal(log, "loading peppers", err)
	}
	format, err := env.Format()
	if err != nil {
		cloud.Fatal(log, "token format", err)
	}
	routes, err := env.Routes()
	if err != nil {
		cloud.Fatal(log, "route table", err)
	}
	gw, err := env.Gateway()
	if err != nil {
		cloud.Fatal(log, "gateway configuration", err)
	}
	a, err := authorizer.New(authorizer.Config{Store: st, Peppers: peppers, Format: format, Routes: routes, Gateway: gw, Logger: log})
	if err != nil {
		cloud.Fatal(log, "authorizer", err)
	}
	lambda.Start(a.Authorize)
}
