package leaks

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/lifecycle"
)

// failingPeppers cannot verify: KMS throttled, say.
type failingPeppers struct{}

func (failingPeppers) Verify(context.Context, int, string, []byte) (bool, error) {
	return false, errors.New("ThrottlingException")
}

// TestVerifyFailureIsNotAFalsePositive: a live key that cannot be verified
// must make the report fail (GitHub retries), not be waved off as not ours.
func TestVerifyFailureIsNotAFalsePositive(t *testing.T) {
	ctx := t.Context()
	st := storetest.Temp(t)
	_, ring := storetest.Peppers(t, st, time.Now())
	format, _ := apikey.NewFormat("sk")
	svc := lifecycle.New(st, ring, format)
	o, err := svc.Onboard(ctx, lifecycle.Actor{ID: "op"}, lifecycle.OnboardParams{TenantID: "acme", Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	admin := o.Live
	r := Responder{Keys: svc, Store: st, Peppers: failingPeppers{}, Format: format}
	if _, err := r.Respond(ctx, lifecycle.Actor{ID: "github"}, []Report{{Token: admin.Token.Plain(), Type: "t"}}); err == nil {
		t.Fatal("a live key that could not be verified was answered")
	}
	// A dead key is answered without its HMAC, whatever the peppers say.
	if _, err := svc.Revoke(ctx, lifecycle.Actor{ID: "op"}, "acme", admin.Key.ID); err != nil {
		t.Fatal(err)
	}
	out, err := r.Respond(ctx, lifecycle.Actor{ID: "github"}, []Report{{Token: admin.Token.Plain(), Type: "t"}})
	if err != nil || out.Feedback[0].Label != falsePositive {
		t.Fatalf("dead key: %+v %v", out, err)
	}
}
