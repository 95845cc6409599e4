package stack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/keyward/keyward/infra/stack"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/route"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/store/embedded"
)

// failingStore fails the authorizer's read, for the error outcome.
type failingStore struct{ *embedded.Store }

func (failingStore) GetKey(context.Context, string) (store.Key, error) {
	return store.Key{}, errors.New("store unavailable")
}

// TestAlarmsAndDashboardUseTheAuthorizersMetrics runs the real authorizer
// through each outcome and reads the Embedded Metric Format lines it
// writes: the namespace, metric names, dimension and outcome values the
// stack alarms on and graphs are the ones it emits.
func TestAlarmsAndDashboardUseTheAuthorizersMetrics(t *testing.T) {
	ctx := context.Background()
	st, err := embedded.OpenTemp()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ring, err := pepper.NewLocalKeyring(bytes.Repeat([]byte{7}, pepper.Size))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pepper.Create(ctx, st, ring, time.Now()); err != nil {
		t.Fatal(err)
	}
	peppers, err := pepper.Load(ctx, st, ring)
	if err != nil {
		t.Fatal(err)
	}
	format, err := apikey.NewFormat(apikey.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	protected, err := config.Routes("")
	if err != nil {
		t.Fatal(err)
	}
	routes, err := route.Compile(protected, config.AdminRoutes())
	if err != nil {
		t.Fatal(err)
	}
	gw, err := config.LoadGateway()
	if err != nil {
		t.Fatal(err)
	}
	o, err := lifecycle.New(st, peppers, format).Onboard(ctx, lifecycle.Actor{ID: "operator"}, lifecycle.OnboardParams{TenantID: "acme", Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	admin := o.Live
	var logs bytes.Buffer
	newAuthorizer := func(s authorizer.Store) *authorizer.Authorizer {
		a, err := authorizer.New(authorizer.Config{Store: s, Peppers: peppers, Format: format, Routes: routes, Gateway: gw,
			Decisions: &logs, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot, "events", "authorizer-bearer.json"))
	if err != nil {
		t.Fatal(err)
	}
	event := func(token, method, path string) events.APIGatewayCustomAuthorizerRequestTypeRequest {
		var ev events.APIGatewayCustomAuthorizerRequestTypeRequest
		if err := json.Unmarshal([]byte(strings.ReplaceAll(string(raw), "${TOKEN}", token)), &ev); err != nil {
			t.Fatal(err)
		}
		ev.HTTPMethod, ev.Path, ev.Resource = method, path, path
		ev.MethodArn = "arn:aws:execute-api:eu-west-1:111122223333:a1b2c3d4e5/prod/" + method + path
		ev.PathParameters = nil
		return ev
	}
	a := newAuthorizer(st)
	a.Authorize(ctx, event(admin.Token.Plain(), "GET", "/v1/keys"))  // allow: keys:admin reads keys
	a.Authorize(ctx, event(admin.Token.Plain(), "GET", "/invoices")) // deny: no invoices scope
	a.Authorize(ctx, event("sk_live_nonsense", "GET", "/invoices"))
	a.Flush() // the allowed decision's batch
	newAuthorizer(failingStore{st}).Authorize(ctx, event(admin.Token.Plain(), "GET", "/v1/keys"))

	var outcomes []string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct {
			AWS struct {
				CloudWatchMetrics []struct {
					Namespace  string
					Dimensions [][]string
					Metrics    []struct{ Name, Unit string }
				}
			} `json:"_aws"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		var fields map[string]any
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Fatal(err)
		}
		if len(rec.AWS.CloudWatchMetrics) != 1 {
			t.Fatalf("no EMF directive in %s", line)
		}
		d := rec.AWS.CloudWatchMetrics[0]
		if d.Namespace != authorizer.MetricsNamespace || !reflect.DeepEqual(d.Dimensions, [][]string{{stack.DimOutcome}}) {
			t.Errorf("EMF %+v, want namespace %s dimension %s", d, authorizer.MetricsNamespace, stack.DimOutcome)
		}
		var names []string
		for _, m := range d.Metrics {
			names = append(names, m.Name)
			if _, ok := fields[m.Name]; !ok {
				t.Errorf("metric %s has no value in %s", m.Name, line)
			}
		}
		if want := []string{stack.MetricDecisions, stack.MetricLatency}; !reflect.DeepEqual(names, want) {
			t.Errorf("metrics %v, the stack uses %v", names, want)
		}
		outcomes = append(outcomes, fields[stack.DimOutcome].(string))
	}
	sort.Strings(outcomes)
	want := slices.Clone(stack.Outcomes)
	sort.Strings(want)
	if !reflect.DeepEqual(outcomes, want) {
		t.Errorf("outcomes %v, the stack graphs %v", outcomes, want)
	}
}
