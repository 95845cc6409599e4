package wiring

import (
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/config"
)

func getenv(env map[string]string) func(string) string {
	return func(name string) string { return env[name] }
}

// TestConfigure: each function starts with its own variables and refuses
// to start without one it needs.
func TestConfigure(t *testing.T) {
	keyed := map[string]string{config.EnvTable: "keyward", config.EnvPepperKeyID: "alias/keyward-peppers"}
	flushing := map[string]string{config.EnvRestAPIID: "abc123", config.EnvStage: "dev",
		config.EnvUsagePlans: "default=p1,standard=p2,high=p3"}
	with := func(maps ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range maps {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	for fn, env := range map[string]map[string]string{
		config.FnAuthorizer: keyed,
		config.FnAdmin:      with(keyed, flushing, map[string]string{config.EnvOperatorRoleARN: "arn:aws:iam::111122223333:role/op"}),
		config.FnJobs:       with(keyed, flushing),
		config.FnPublisher:  {config.EnvEventBus: "keyward-dev"},
	} {
		d, err := Configure(fn, getenv(env))
		if err != nil {
			t.Errorf("%s: %v", fn, err)
			continue
		}
		if d.TokenPrefix != apikey.DefaultPrefix || d.LeakPolicy != config.LeakRevoke {
			t.Errorf("%s defaults: %+v", fn, d)
		}
		for name := range env {
			less := with(env)
			delete(less, name)
			if _, err := Configure(fn, getenv(less)); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s without %s: %v", fn, name, err)
			}
		}
	}
	if _, err := Configure(config.FnAdmin, getenv(with(keyed, flushing, map[string]string{config.EnvOperatorRoleARN: "r",
		config.EnvUsagePlans: "default=p1"}))); err == nil || !strings.Contains(err.Error(), "no plan for tier") {
		t.Errorf("a tier without a plan: %v", err)
	}
}

func TestPepperInterval(t *testing.T) {
	r := &Runtime{}
	if r.PepperInterval(time.Hour) != time.Hour {
		t.Error("no days: not the default")
	}
	r.Config.PepperRotationDays = 30
	if r.PepperInterval(time.Hour) != 30*24*time.Hour {
		t.Error("30 days")
	}
}
