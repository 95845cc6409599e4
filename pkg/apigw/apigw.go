// Package apigw makes the API Gateway (REST API, v1) management calls of
// keyward's admin function: it provisions the API keys that carry per-key
// rate limits in usage plans (UsagePlans) and flushes the stage's
// authorizer cache after a revocation (Flusher).
//
// API Gateway's management API is throttled per account (CreateApiKey at 5
// requests per second), so every call is retried on throttling with
// exponential backoff and jitter, on top of the SDK's own few retries.
package apigw

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/keyward/keyward/pkg/clock"
)

// API is the part of the API Gateway client keyward calls.
type API interface {
	GetApiKeys(ctx context.Context, in *apigateway.GetApiKeysInput, opts ...func(*apigateway.Options)) (*apigateway.GetApiKeysOutput, error)
	CreateApiKey(ctx context.Context, in *apigateway.CreateApiKeyInput, opts ...func(*apigateway.Options)) (*apigateway.CreateApiKeyOutput, error)
	UpdateApiKey(ctx context.Context, in *apigateway.UpdateApiKeyInput, opts ...func(*apigateway.Options)) (*apigateway.UpdateApiKeyOutput, error)
	DeleteApiKey(ctx context.Context, in *apigateway.DeleteApiKeyInput, opts ...func(*apigateway.Options)) (*apigateway.DeleteApiKeyOutput, error)
	GetUsagePlanKeys(ctx context.Context, in *apigateway.GetUsagePlanKeysInput, opts ...func(*apigateway.Options)) (*apigateway.GetUsagePlanKeysOutput, error)
	CreateUsagePlanKey(ctx context.Context, in *apigateway.CreateUsagePlanKeyInput, opts ...func(*apigateway.Options)) (*apigateway.CreateUsagePlanKeyOutput, error)
	DeleteUsagePlanKey(ctx context.Context, in *apigateway.DeleteUsagePlanKeyInput, opts ...func(*apigateway.Options)) (*apigateway.DeleteUsagePlanKeyOutput, error)
	FlushStageAuthorizersCache(ctx context.Context, in *apigateway.FlushStageAuthorizersCacheInput, opts ...func(*apigateway.Options)) (*apigateway.FlushStageAuthorizersCacheOutput, error)
}

var _ API = (*apigateway.Client)(nil)

// Retry schedule for throttled calls: the delay before retry n is drawn
// from [d/2, d] with d = backoffStart·2^(n-1) capped at backoffCap.
const (
	backoffStart = 200 * time.Millisecond
	backoffCap   = 5 * time.Second
	maxAttempts  = 8
)

// Option adjusts a UsagePlans or a Flusher; tests use them to replace
// time.
type Option func(*options)

type options struct {
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(max time.Duration) time.Duration
}

// WithClock replaces time.Now (the Flusher's one-call-per-second spacing).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithSleep replaces the wait between retries and before a flush's slot;
// sleep must return ctx.Err() if ctx ends first.
func WithSleep(sleep func(ctx context.Context, d time.Duration) error) Option {
	return func(o *options) { o.sleep = sleep }
}

// WithJitter replaces the random part of a retry delay: jitter(max) must
// return a duration in [0, max].
func WithJitter(jitter func(max time.Duration) time.Duration) Option {
	return func(o *options) { o.jitter = jitter }
}

func newOptions(opts []Option) options {
	o := options{
		now:    time.Now,
		sleep:  clock.Sleep,
		jitter: func(max time.Duration) time.Duration { return rand.N(max + 1) },
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// throttles recognises TooManyRequestsException and the throttling codes
// and statuses the SDK knows for every service.
var throttles = retry.IsErrorThrottles(retry.DefaultThrottles)

// call runs fn, retrying while API Gateway throttles it; op names the call
// in the error.
func call[T any](ctx context.Context, o *options, op string, fn func(context.Context) (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		out, err := fn(ctx)
		switch {
		case err == nil:
			return out, nil
		case throttles.IsErrorThrottle(err) != aws.TrueTernary:
			return out, fmt.Errorf("%s: %w", op, err)
		case attempt == maxAttempts:
			return out, fmt.Errorf("%s: still throttled after %d attempts: %w", op, attempt, err)
		}
		d := min(backoffStart<<(attempt-1), backoffCap)
		if serr := o.sleep(ctx, d/2+o.jitter(d/2)); serr != nil {
			return out, fmt.Errorf("%s: %w while retrying: %w", op, serr, err)
		}
	}
}
