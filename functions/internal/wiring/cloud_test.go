package wiring

import (
	"testing"

	"github.com/keyward/keyward/pkg/apikey"
)

func TestFromEnv(t *testing.T) {
	t.Setenv("KEYWARD_TABLE", "")
	t.Setenv("KEYWARD_PEPPER_KEY_ID", "")
	if _, err := FromEnv(); err == nil {
		t.Fatal("missing table and key accepted")
	}
	t.Setenv("KEYWARD_TABLE", "keyward")
	t.Setenv("KEYWARD_PEPPER_KEY_ID", "alias/keyward-peppers")
	t.Setenv("KEYWARD_TOKEN_PREFIX", "")
	t.Setenv("KEYWARD_CACHE_TTL", "0")
	t.Setenv("KEYWARD_USAGE_IDENTITY", "tenant")
	e, err := FromEnv()
	if err != nil || e.TokenPrefix != apikey.DefaultPrefix {
		t.Fatalf("FromEnv: %+v %v", e, err)
	}
	g, err := e.Gateway()
	if err != nil || g.Authorizer.CacheTTLSeconds != 0 || g.UsageIdentity != "tenant" {
		t.Fatalf("Gateway overrides: %+v %v", g, err)
	}
	if _, err := e.Routes(); err != nil {
		t.Fatal(err)
	}
	e.RateLimitTiers = `[{"name":"default","requests_per_minute":120,"burst":20}]`
	if g, err := e.Gateway(); err != nil || len(g.RateLimitTiers) != 1 || g.RateLimitTiers[0].RequestsPerMinute != 120 {
		t.Fatalf("tiers override: %+v %v", g.RateLimitTiers, err)
	}
	for _, bad := range []string{`[]`, `[{"name":"x"}]`, `nope`} {
		e.RateLimitTiers = bad
		if _, err := e.Gateway(); err == nil {
			t.Errorf("tiers %q accepted", bad)
		}
	}
	e.RateLimitTiers = ""
	for _, bad := range []string{"soon", "7200"} {
		e.CacheTTL = bad
		if _, err := e.Gateway(); err == nil {
			t.Errorf("cache TTL %q accepted", bad)
		}
	}
}
