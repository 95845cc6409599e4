// Command jobs runs keyward's scheduled jobs on EventBridge schedules;
// each schedule passes {"job": "<name>"} (see package jobs). Wiring only.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/keyward/keyward/functions/internal/wiring"
	"github.com/keyward/keyward/pkg/jobs"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/pepper"
)

// input is what each schedule sends.
type input struct {
	Job string `json:"job"`
}

func main() {
	rt := wiring.Start(context.Background())
	interval := jobs.DefaultPepperInterval
	if v := os.Getenv("KEYWARD_PEPPER_ROTATION_DAYS"); v != "" {
		days, err := strconv.Atoi(v)
		if err != nil || days < 1 {
			wiring.Fatal(rt.Log, "configuration", fmt.Errorf("KEYWARD_PEPPER_ROTATION_DAYS %q is not a number of days", v))
		}
		interval = time.Duration(days) * 24 * time.Hour
	}
	j := jobs.New(jobs.Config{
		Store: rt.Store,
		// The jobs never mint keys, so the service gets no hasher: this
		// function holds no kms:Decrypt and never sees a plaintext pepper.
		Keys:           lifecycle.New(rt.Store, nil, rt.Format, lifecycle.WithAuditRetention(lifecycle.DefaultAuditRetention)),
		Peppers:        pepper.KMS{Client: kms.NewFromConfig(rt.AWS), KeyID: rt.Env.PepperKeyID},
		RateLimits:     rt.UsagePlans(),
		Flusher:        rt.Flusher(),
		Gateway:        rt.Gateway,
		PepperInterval: interval,
		Logger:         rt.Log,
	})
	lambda.Start(func(ctx context.Context, in input) (jobs.Result, error) { return j.Run(ctx, in.Job) })
}
