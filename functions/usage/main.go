// Command usage counts each key's requests from the stage's access log,
// and its wrong secrets from the authorizer's log (CloudWatch Logs
// subscriptions), into the key's usage, and raises the suspicious-use
// events (package usage). Wiring only.
package main

import (
	"context"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/keyward/keyward/functions/internal/wiring"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/usage"
)

func main() {
	rt := wiring.Start(context.Background(), config.FnUsage)
	// The alerts are audit entries (and so events); the function mints
	// no keys, so the service gets no hasher and it holds no KMS grant.
	keys := lifecycle.New(rt.Store, nil, rt.Format, lifecycle.WithAuditRetention(lifecycle.DefaultAuditRetention))
	agg := usage.NewAggregator(rt.Store, &usage.Rules{Store: rt.Store, Alert: keys, Config: rt.Gateway.AlertRules()}, rt.Log)
	// At shutdown, the minute in progress is written too.
	flushAll := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		if err := agg.Flush(ctx, time.Now(), true); err != nil {
			rt.Log.Error("usage: writing the last minutes at shutdown failed", "error", err)
		}
	}
	lambda.StartWithOptions(agg.HandleLogs, lambda.WithEnableSIGTERM(flushAll))
}
