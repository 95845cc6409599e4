// Command admin is the admin API Lambda behind API Gateway's proxy
// integration. Wiring only: the API is package admin's net/http handler.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/keyward/keyward/internal/cloud"
	"github.com/keyward/keyward/pkg/admin"
	"github.com/keyward/keyward/pkg/apigw"
	"github.com/keyward/keyward/pkg/keys"
	"github.com/keyward/keyward/pkg/leaks"
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
	gw, err := env.Gateway()
	if err != nil {
		cloud.Fatal(log, "gateway configuration", err)
	}
	plans, err := env.Plans(gw)
	if err != nil {
		cloud.Fatal(log, "usage plans", err)
	}
	if env.RestAPIID == "" || env.Stage == "" {
		cloud.Fatal(log, "configuration", errors.New("KEYWARD_REST_API_ID and KEYWARD_STAGE must be set"))
	}
	policy := leaks.Policy(os.Getenv("KEYWARD_LEAK_POLICY"))
	if policy == "" {
		policy = leaks.Revoke
	}
	if policy != leaks.Revoke && policy != leaks.Flag {
		cloud.Fatal(log, "configuration", fmt.Errorf("KEYWARD_LEAK_POLICY %q must be revoke or flag", policy))
	}
	apiGateway := apigateway.NewFromConfig(awsCfg)
	svc := keys.New(st, peppers, format, keys.WithAuditRetention(keys.DefaultAuditRetention))
	srv := admin.New(admin.Config{
		Keys:       svc,
		Store:      st,
		Gateway:    gw,
		RateLimits: apigw.NewUsagePlans(apiGateway, plans),
		Flusher:    apigw.NewFlusher(apiGateway, env.RestAPIID, env.Stage),
		Leaks: admin.Leaks{
			Keys:      &leaks.GitHubKeys{URL: leaks.GitHubKeysURL},
			Responder: leaks.Responder{Keys: svc, Store: st, Peppers: peppers, Format: format, Policy: policy},
		},
		Logger: log,
	})
	lambda.Start(httpadapter.New(admin.FromAPIGateway(srv)).ProxyWithContext)
}
