package apigw

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigateway/types"
	"github.com/aws/smithy-go"
)

const identity = "keywardkeyAbCdEfGhIjKl"

var tiers = map[string]string{"default": "plan-default", "standard": "plan-standard", "high": "plan-high"}

// fakeClock is a clock whose sleeps record their durations and advance it
// at once, or once hold's gate closes.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
	gate   chan struct{}
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.t = c.t.Add(d)
	return nil
}

// hold makes sleeps from now on wait until the returned gate is closed.
func (c *fakeClock) hold() chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gate = make(chan struct{})
	return c.gate
}

func (c *fakeClock) slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sleeps)
}

// fullJitter makes every retry delay the longest of its range.
func fullJitter(max time.Duration) time.Duration { return max }

// newPlans returns a UsagePlans on a fake API Gateway, sleeping on a fake
// clock with full jitter unless opts say otherwise.
func newPlans(t *testing.T, opts ...Option) (*UsagePlans, *fakeAPI, *fakeClock) {
	t.Helper()
	api := newFakeAPI(slices.Collect(maps.Values(tiers))...)
	// Keys whose names nameQuery also matches, so that lookups page and
	// must compare names exactly.
	api.addKey(identity+"0", "keywardkeyAbCdEfGhIjKl0", true)
	api.addKey(identity+"1", "keywardkeyAbCdEfGhIjKl1", true)
	api.addKey("keywardkeyZZZZZZZZZZZZ", "keywardkeyZZZZZZZZZZZZ", true)
	clock := newFakeClock()
	opts = append([]Option{WithSleep(clock.sleep), WithJitter(fullJitter)}, opts...)
	return NewUsagePlans(api, tiers, opts...), api, clock
}

// onlyKey returns identity's only API key and the plans it is in.
func onlyKey(t *testing.T, api *fakeAPI) (types.ApiKey, []string) {
	t.Helper()
	keys, plans := api.state(identity)
	if len(keys) != 1 {
		t.Fatalf("%d keys named %s, want 1: %+v", len(keys), identity, keys)
	}
	return keys[0], plans[*keys[0].Id]
}

func TestProvisionCreatesKeyAndAssociation(t *testing.T) {
	u, api, _ := newPlans(t)
	if err := u.Provision(t.Context(), identity, "standard"); err != nil {
		t.Fatal(err)
	}
	key, plans := onlyKey(t, api)
	if aws.ToString(key.Value) != identity || !key.Enabled {
		t.Errorf("key %+v: want value %s, enabled", key, identity)
	}
	if !slices.Equal(plans, []string{"plan-standard"}) {
		t.Errorf("key in plans %v, want [plan-standard]", plans)
	}
	want := []apiCall{
		{Op: "CreateApiKey", KeyName: identity, KeyValue: identity, Enable: true},
		{Op: "CreateUsagePlanKey", PlanID: "plan-standard", KeyID: *key.Id, KeyType: "API_KEY"},
	}
	if got := api.writes(); !slices.Equal(got, want) {
		t.Errorf("writes\n%+v\nwant\n%+v", got, want)
	}
	for _, c := range api.recorded() {
		if c.Op == "GetApiKeys" && (c.KeyName != identity || !c.IncludeValues) {
			t.Errorf("GetApiKeys %+v: want nameQuery %s with values", c, identity)
		}
	}
}

func TestProvisionAgainOnlyReads(t *testing.T) {
	u, api, _ := newPlans(t)
	ctx := t.Context()
	if err := u.Provision(ctx, identity, "high"); err != nil {
		t.Fatal(err)
	}
	before := len(api.writes())
	if err := u.Provision(ctx, identity, "high"); err != nil {
		t.Fatal(err)
	}
	if w := api.writes(); len(w) != before {
		t.Errorf("second provision wrote %+v", w[before:])
	}
	if _, plans := onlyKey(t, api); !slices.Equal(plans, []string{"plan-high"}) {
		t.Errorf("key in plans %v, want [plan-high]", plans)
	}
	// The lookups paged past the keys whose names only start alike.
	if !slices.ContainsFunc(api.recorded(), func(c apiCall) bool { return c.Op == "GetApiKeys" && c.Position != "" }) {
		t.Error("GetApiKeys never asked for a second page")
	}
}

func TestProvisionMovesBetweenTiers(t *testing.T) {
	u, api, _ := newPlans(t)
	ctx := t.Context()
	if err := u.Provision(ctx, identity, "standard"); err != nil {
		t.Fatal(err)
	}
	n := len(api.writes())
	if err := u.Provision(ctx, identity, "high"); err != nil {
		t.Fatal(err)
	}
	key, plans := onlyKey(t, api)
	if !slices.Equal(plans, []string{"plan-high"}) {
		t.Errorf("key in plans %v, want [plan-high]", plans)
	}
	want := []apiCall{
		{Op: "DeleteUsagePlanKey", PlanID: "plan-standard", KeyID: *key.Id},
		{Op: "CreateUsagePlanKey", PlanID: "plan-high", KeyID: *key.Id, KeyType: "API_KEY"},
	}
	if got := api.writes()[n:]; !slices.Equal(got, want) {
		t.Errorf("writes\n%+v\nwant\n%+v", got, want)
	}
}

func TestProvisionEnablesADisabledKey(t *testing.T) {
	u, api, _ := newPlans(t)
	id := api.addKey(identity, identity, false)
	api.associate("plan-default", id)
	if err := u.Provision(t.Context(), identity, "default"); err != nil {
		t.Fatal(err)
	}
	want := []apiCall{{Op: "UpdateApiKey", KeyID: id, Enable: true}}
	if got := api.writes(); !slices.Equal(got, want) {
		t.Errorf("writes %+v, want %+v", got, want)
	}
	if key, _ := onlyKey(t, api); !key.Enabled {
		t.Error("key still disabled")
	}
}

func TestProvisionConflictIsSuccessAfterRereading(t *testing.T) {
	u, api, _ := newPlans(t)
	// Another Provision of the same identity wins each race.
	var id string
	api.before = func(op string) {
		switch {
		case op == "CreateApiKey" && id == "":
			id = api.addKey(identity, identity, true)
		case op == "CreateUsagePlanKey":
			api.associate("plan-standard", id)
		}
	}
	if err := u.Provision(t.Context(), identity, "standard"); err != nil {
		t.Fatal(err)
	}
	if _, plans := onlyKey(t, api); !slices.Equal(plans, []string{"plan-standard"}) {
		t.Errorf("key in plans %v, want [plan-standard]", plans)
	}
}

func TestProvisionConflictWithAForeignKey(t *testing.T) {
	u, api, _ := newPlans(t)
	api.addKey("someone-elses-name", identity, true)
	err := u.Provision(t.Context(), identity, "standard")
	if _, ok := errors.AsType[*types.ConflictException](err); !ok {
		t.Fatalf("err = %v, want a ConflictException", err)
	}
}

func TestProvisionRefusesUnknownTierAndEmptyIdentity(t *testing.T) {
	u, api, _ := newPlans(t)
	for _, c := range []struct{ identity, tier string }{{identity, "platinum"}, {"", "standard"}} {
		if err := u.Provision(t.Context(), c.identity, c.tier); err == nil || !strings.HasPrefix(err.Error(), "apigw: provision") {
			t.Errorf("Provision(%q, %q) = %v, want an apigw error", c.identity, c.tier, err)
		}
	}
	if err := u.Remove(t.Context(), ""); err == nil {
		t.Error(`Remove("") succeeded`)
	}
	if c := api.recorded(); len(c) != 0 {
		t.Errorf("calls made: %+v", c)
	}
}

func TestRemove(t *testing.T) {
	u, api, _ := newPlans(t)
	ctx := t.Context()
	if err := u.Provision(ctx, identity, "standard"); err != nil {
		t.Fatal(err)
	}
	key, _ := onlyKey(t, api)
	n := len(api.writes())
	if err := u.Remove(ctx, identity); err != nil {
		t.Fatal(err)
	}
	if got, want := api.writes()[n:], []apiCall{{Op: "DeleteApiKey", KeyID: *key.Id}}; !slices.Equal(got, want) {
		t.Errorf("writes %+v, want %+v", got, want)
	}
	if keys, _ := api.state(identity); len(keys) != 0 {
		t.Errorf("keys left: %+v", keys)
	}
	if keys, _ := api.state(identity + "0"); len(keys) != 1 {
		t.Error("removed a key whose name only starts alike")
	}
	api.mu.Lock()
	for p, members := range api.plans {
		if members[*key.Id] {
			t.Errorf("key still in %s", p)
		}
	}
	api.mu.Unlock()

	// Removing again, or a key deleted between lookup and delete, succeeds.
	if err := u.Remove(ctx, identity); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	id := api.addKey(identity, identity, true)
	api.before = func(op string) {
		if op == "DeleteApiKey" {
			api.mu.Lock()
			api.keys = slices.DeleteFunc(api.keys, func(k *types.ApiKey) bool { return *k.Id == id })
			api.mu.Unlock()
		}
	}
	if err := u.Remove(ctx, identity); err != nil {
		t.Fatalf("Remove of a key deleted meanwhile: %v", err)
	}
}

func TestThrottlingIsRetriedWithGrowingBackoff(t *testing.T) {
	for name, throttleErr := range map[string]error{
		"TooManyRequestsException": &types.TooManyRequestsException{Message: aws.String("Too Many Requests")},
		"generic throttling":       &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"},
	} {
		t.Run(name, func(t *testing.T) {
			u, api, clock := newPlans(t)
			api.throttleErr = throttleErr
			api.throttle("CreateApiKey", 3)
			if err := u.Provision(t.Context(), identity, "standard"); err != nil {
				t.Fatal(err)
			}
			want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
			if got := clock.slept(); !slices.Equal(got, want) {
				t.Errorf("slept %v, want %v", got, want)
			}
			onlyKey(t, api)
		})
	}
}

func TestThrottlingGivesUpAfterTheBound(t *testing.T) {
	u, api, clock := newPlans(t)
	api.throttle("CreateApiKey", 1000)
	err := u.Provision(t.Context(), identity, "standard")
	if _, ok := errors.AsType[*types.TooManyRequestsException](err); !ok || !strings.HasPrefix(err.Error(), "apigw: provision "+identity+": ") {
		t.Fatalf("err = %v, want a wrapped TooManyRequestsException", err)
	}
	var creates int
	for _, c := range api.recorded() {
		if c.Op == "CreateApiKey" {
			creates++
		}
	}
	if creates != maxAttempts {
		t.Errorf("%d CreateApiKey calls, want %d", creates, maxAttempts)
	}
	slept := clock.slept()
	if len(slept) != maxAttempts-1 {
		t.Fatalf("slept %v, want %d sleeps", slept, maxAttempts-1)
	}
	for i, d := range slept {
		if d > backoffCap || i > 0 && d < slept[i-1] {
			t.Errorf("slept %v: not growing up to a cap of %v", slept, backoffCap)
		}
	}
	if slept[0] != backoffStart || slept[len(slept)-1] != backoffCap {
		t.Errorf("slept %v, want from %v to %v", slept, backoffStart, backoffCap)
	}
}

func TestJitterKeepsHalfTheBackoff(t *testing.T) {
	u, api, clock := newPlans(t, WithJitter(func(time.Duration) time.Duration { return 0 }))
	api.throttle("GetApiKeys", 2)
	if err := u.Provision(t.Context(), identity, "standard"); err != nil {
		t.Fatal(err)
	}
	if got, want := clock.slept(), []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}; !slices.Equal(got, want) {
		t.Errorf("slept %v, want %v", got, want)
	}
}

func TestCancellationStopsRetries(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var sleeps int
	u, api, _ := newPlans(t, WithSleep(func(ctx context.Context, d time.Duration) error {
		if sleeps++; sleeps == 2 {
			cancel()
		}
		return ctx.Err()
	}))
	api.throttle("CreateApiKey", 1000)
	err := u.Provision(ctx, identity, "standard")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, ok := errors.AsType[*types.TooManyRequestsException](err); !ok {
		t.Errorf("err = %v, want the last throttling error kept", err)
	}
	if n := len(api.recorded()); n != 3 { // GetApiKeys and two CreateApiKey
		t.Errorf("%d calls, want 3: %+v", n, api.recorded())
	}
}
