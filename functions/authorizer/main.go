// Command authorizer is the API Gateway REQUEST authorizer Lambda. Wiring
// only: the decision is package authorizer's.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/keyward/keyward/functions/internal/wiring"
	"github.com/keyward/keyward/pkg/authorizer"
)

func main() {
	ctx := context.Background()
	rt := wiring.Start(ctx)
	routes, err := rt.Env.Routes()
	if err != nil {
		wiring.Fatal(rt.Log, "route table", err)
	}
	a, err := authorizer.New(authorizer.Config{Store: rt.Store, Peppers: rt.Peppers(ctx), Format: rt.Format,
		Routes: routes, Gateway: rt.Gateway, Logger: rt.Log})
	if err != nil {
		wiring.Fatal(rt.Log, "authorizer", err)
	}
	lambda.Start(a.Authorize)
}
