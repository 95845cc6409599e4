// Package gatewayapi builds the API Gateway control-plane clients of the
// functions that change access (admin, jobs): the flusher of the stage's
// authorizer cache and the usage plans of the rate-limit tiers. Apart from
// package wiring, so that the authorizer, which needs neither, does not
// link or initialise the API Gateway SDK.
package gatewayapi

import (
	"github.com/aws/aws-sdk-go-v2/service/apigateway"

	"github.com/keyward/keyward/functions/internal/wiring"
	"github.com/keyward/keyward/pkg/apigw"
)

// Flusher flushes the stage's authorizer cache: a function that takes
// access away must be able to end cached decisions.
func Flusher(rt *wiring.Runtime) *apigw.Flusher {
	return apigw.NewFlusher(apigateway.NewFromConfig(rt.AWS), rt.Config.RestAPIID, rt.Config.Stage)
}

// UsagePlans is the API Gateway usage plans of the rate-limit tiers.
func UsagePlans(rt *wiring.Runtime) *apigw.UsagePlans {
	return apigw.NewUsagePlans(apigateway.NewFromConfig(rt.AWS), rt.Config.UsagePlans)
}
