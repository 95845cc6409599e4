// Command jobs runs keyward's scheduled jobs on EventBridge schedules;
// each schedule passes {"job": "<name>"} (see package jobs). Wiring only.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/keyward/keyward/functions/internal/gatewayapi"
	"github.com/keyward/keyward/functions/internal/wiring"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/jobs"
	"github.com/keyward/keyward/pkg/lifecycle"
)

// input is what each schedule sends.
type input struct {
	Job string `json:"job"`
}

func main() {
	rt := wiring.Start(context.Background(), config.FnJobs)
	j := jobs.New(jobs.Config{
		Store: rt.Store,
		// The jobs never mint keys, so the service gets no hasher: this
		// function holds no kms:Decrypt and never sees a plaintext pepper.
		Keys:           lifecycle.New(rt.Store, nil, rt.Format, lifecycle.WithAuditRetention(lifecycle.DefaultAuditRetention)),
		Peppers:        rt.KMS(),
		RateLimits:     gatewayapi.UsagePlans(rt),
		Flusher:        gatewayapi.Flusher(rt),
		Gateway:        rt.Gateway,
		PepperInterval: rt.PepperInterval(jobs.DefaultPepperInterval),
		Logger:         rt.Log,
	})
	lambda.Start(func(ctx context.Context, in input) (jobs.Result, error) { return j.Run(ctx, in.Job) })
}
