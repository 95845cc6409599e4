package usage_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/usage"
)

const accessLine = `{"requestId":"c6af9ac6-7b61-11e6-9a41-93e8deadbeef","requestTime":"29/Nov/2026:10:00:01 +0000","requestTimeEpoch":"1796032801123",` +
	`"ip":"203.0.113.9","httpMethod":"GET","resourcePath":"/invoices/{id}","path":"/prod/invoices/inv_1","status":"403",` +
	`"responseLatency":"37","principalId":"key_AbCdEfGhIjKl","tenantId":"acme","authorizerStatus":"200"}`

func TestFromAccessLog(t *testing.T) {
	logged := time.Date(2026, 11, 29, 10, 0, 5, 0, time.UTC)
	r, ok := usage.FromAccessLog(accessLine, logged)
	want := usage.Request{Time: time.UnixMilli(1796032801123).UTC(), KeyID: "AbCdEfGhIjKl", TenantID: "acme", Method: "GET",
		Route: "/invoices/{id}", Status: 403, SourceIP: "203.0.113.9", Latency: 37 * time.Millisecond}
	if !ok || r != want {
		t.Fatalf("got %+v %v, want %+v", r, ok, want)
	}
	noEpoch := strings.Replace(accessLine, `"requestTimeEpoch":"1796032801123",`, "", 1)
	if r, ok := usage.FromAccessLog(noEpoch, logged); !ok || !r.Time.Equal(logged) {
		t.Fatalf("without a request time: %+v %v", r, ok)
	}
	for name, line := range map[string]string{
		"no key (a public route, or a 401)": strings.Replace(accessLine, `"principalId":"key_AbCdEfGhIjKl"`, `"principalId":"-"`, 1),
		"an operator":                       strings.Replace(accessLine, `"principalId":"key_AbCdEfGhIjKl"`, `"principalId":"arn:aws:iam::1:user/x"`, 1),
		"no tenant":                         strings.Replace(accessLine, `"tenantId":"acme"`, `"tenantId":"-"`, 1),
		"a bad status":                      strings.Replace(accessLine, `"status":"403"`, `"status":"-"`, 1),
		"not JSON":                          "START RequestId: 1",
		"too long":                          accessLine[:len(accessLine)-1] + `,"pad":"` + strings.Repeat("x", 9000) + `"}`,
	} {
		if r, ok := usage.FromAccessLog(line, logged); ok {
			t.Errorf("%s: read %+v", name, r)
		}
	}
}

func FuzzLogLines(f *testing.F) {
	f.Add(accessLine)
	f.Add(`{"time":"2026-11-29T10:00:00Z","outcome":"unauthorized","reason":"wrong_secret","key_id":"key_AbCdEfGhIjKl","tenant_id":"acme"}`)
	f.Add(`{"message":"{\"outcome\":\"unauthorized\"}"}`)
	f.Fuzz(func(t *testing.T, line string) {
		if r, ok := usage.FromAccessLog(line, time.Unix(0, 0)); ok && (r.KeyID == "" || r.TenantID == "" || r.Status < 100 || r.Status > 599) {
			t.Fatalf("read %+v", r)
		}
		if id, tenant, at, ok := usage.WrongSecretFromDecision(line); ok && (id == "" || tenant == "" || at.IsZero()) {
			t.Fatalf("read %q %q %v", id, tenant, at)
		}
	})
}
