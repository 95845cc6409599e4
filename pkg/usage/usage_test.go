package usage

import (
	"testing"

	"github.com/keyward/keyward/config"
)

func TestIdentity(t *testing.T) {
	k := Identity(config.UsagePerKey, "acme", "AbCdEfGhIjKl")
	if k != "keywardkeyAbCdEfGhIjKl" {
		t.Fatalf("per-key identity %q", k)
	}
	a, b := Identity(config.UsagePerTenant, "acme", "k1"), Identity(config.UsagePerTenant, "acme", "k2")
	if a != b || len(a) < 20 || a == Identity(config.UsagePerTenant, "acmf", "k1") {
		t.Fatalf("per-tenant identities %q %q", a, b)
	}
	if id, ok := KeyOf(k); !ok || id != "AbCdEfGhIjKl" {
		t.Fatalf("KeyOf(%q) = %q, %v", k, id, ok)
	}
	if _, ok := KeyOf(a); ok {
		t.Fatalf("KeyOf(%q) names a key", a)
	}
	for _, v := range []string{k, a} {
		for _, c := range v {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') || len(v) < 20 {
				t.Fatalf("%q is not an alphanumeric value of 20 or more", v)
			}
		}
	}
}
