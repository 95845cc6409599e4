// Command admin is the admin API Lambda behind API Gateway's proxy
// integration. Wiring only: the API is package admin's net/http handler.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/keyward/keyward/functions/internal/consolesetup"
	"github.com/keyward/keyward/functions/internal/gatewayapi"
	"github.com/keyward/keyward/functions/internal/wiring"
	"github.com/keyward/keyward/pkg/admin"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/console"
	"github.com/keyward/keyward/pkg/leaks"
	"github.com/keyward/keyward/pkg/lifecycle"
)

func main() {
	ctx := context.Background()
	rt := wiring.Start(ctx, config.FnAdmin)
	peppers := rt.Peppers(ctx)
	svc := lifecycle.New(rt.Store, peppers, rt.Format, lifecycle.WithAuditRetention(lifecycle.DefaultAuditRetention))
	plans, flusher := gatewayapi.UsagePlans(rt), gatewayapi.Flusher(rt)
	srv := admin.New(admin.Config{Keys: svc, Store: rt.Store, Gateway: rt.Gateway, RateLimits: plans, Flusher: flusher,
		Leaks: admin.Leaks{
			Keys:      &leaks.GitHubKeys{URL: leaks.GitHubKeysURL},
			Responder: leaks.Responder{Keys: svc, Store: rt.Store, Peppers: peppers, Format: rt.Format, Policy: rt.Config.LeakPolicy},
		},
		Logger: rt.Log,
	})
	h := consolesetup.Beside(ctx, rt, srv, console.Config{Keys: svc, Store: rt.Store, Peppers: peppers, RateLimits: plans, Flusher: flusher})
	lambda.Start(httpadapter.New(admin.FromAPIGateway(rt.Config.OperatorRoleARN, h)).ProxyWithContext)
}
