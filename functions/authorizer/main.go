// Command authorizer is the API Gateway REQUEST authorizer Lambda. Wiring
// only: the decision is package authorizer's.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/keyward/keyward/functions/internal/wiring"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/config"
)

func main() {
	ctx := context.Background()
	rt := wiring.Start(ctx, config.FnAuthorizer)
	a, err := authorizer.New(authorizer.Config{Store: rt.Store, Peppers: rt.Peppers(ctx), Format: rt.Format,
		Routes: rt.Routes(), Gateway: rt.Gateway, Decisions: os.Stdout, Logger: rt.Log})
	if err != nil {
		wiring.Fatal(rt.Log, "authorizer", err)
	}
	// SIGTERM at shutdown (Lambda sends it once an extension, here the
	// internal one this option registers, asks for it) writes the last
	// batch of allowed decisions' metrics.
	lambda.StartWithOptions(a.Authorize, lambda.WithEnableSIGTERM(a.Flush))
}
