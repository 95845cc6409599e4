package config

import "testing"

func TestRateLimitIdentity(t *testing.T) {
	perKey, perTenant := Gateway{UsageIdentity: UsagePerKey}, Gateway{UsageIdentity: UsagePerTenant}
	k := perKey.RateLimitIdentity("acme", "AbCdEfGhIjKl")
	if k != "keywardkeyAbCdEfGhIjKl" {
		t.Fatalf("per-key identity %q", k)
	}
	a, b := perTenant.RateLimitIdentity("acme", "k1"), perTenant.RateLimitIdentity("acme", "k2")
	if a != b || len(a) < 20 || a == perTenant.RateLimitIdentity("acmf", "k1") {
		t.Fatalf("per-tenant identities %q %q", a, b)
	}
	if id, ok := KeyOfRateLimitIdentity(k); !ok || id != "AbCdEfGhIjKl" {
		t.Fatalf("KeyOfRateLimitIdentity(%q) = %q, %v", k, id, ok)
	}
	if _, ok := KeyOfRateLimitIdentity(a); ok {
		t.Fatalf("KeyOfRateLimitIdentity(%q) names a key", a)
	}
	for _, v := range []string{k, a} {
		for _, c := range v {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') || len(v) < 20 {
				t.Fatalf("%q is not an alphanumeric value of 20 or more", v)
			}
		}
	}
}
