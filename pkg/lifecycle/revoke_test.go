package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

// TestBulkRevocationsMissNoNewKey: on DynamoDB, whose indexes lag the
// table, a member removed (or a tenant offboarded) a moment after a key was
// created still loses that key: the revocation lists until it has seen
// every key the store counted.
func TestBulkRevocationsMissNoNewKey(t *testing.T) {
	clk := clock.NewManual(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
	st := storetest.Lagging(t, clk.Now)
	_, ring := storetest.Peppers(t, st, clk.Now())
	format, _ := apikey.NewFormat("sk")
	svc := lifecycle.New(st, ring, format, lifecycle.WithClock(clk.Now))
	ctx, op := t.Context(), lifecycle.Actor{ID: "operator"}
	if _, err := svc.Onboard(ctx, op, lifecycle.OnboardParams{TenantID: "acme", Name: "Acme"}); err != nil {
		t.Fatal(err)
	}
	create := func(member string) lifecycle.Created {
		c, err := svc.Create(ctx, op, "acme", lifecycle.CreateParams{Name: "k", Environment: apikey.Live, Scopes: []string{"invoices:read"}, CreatedBy: member})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for range 3 {
		create("mem_bob")
	}
	st.Settle()
	fresh := create("mem_bob") // not in the index yet
	if n, err := svc.RevokeMember(ctx, op, "acme", "mem_bob"); err != nil || n != 4 {
		t.Fatalf("RevokeMember = %d, %v; want all 4", n, err)
	}
	if k, _ := st.GetKey(ctx, fresh.Key.ID); k.Status != store.KeyRevoked {
		t.Fatalf("the key created a moment before the member's removal is %s", k.Status)
	}

	fresh = create("")
	if n, err := svc.Offboard(ctx, op, "acme"); err != nil || n != 3 { // and the two admin keys
		t.Fatalf("Offboard = %d, %v; want 3", n, err)
	}
	if k, _ := st.GetKey(ctx, fresh.Key.ID); k.Status != store.KeyRevoked {
		t.Fatalf("the key created a moment before offboarding is %s", k.Status)
	}
}

// slowStore makes every write take step of the service's clock, so that a
// bulk revocation reaches its time budget.
type slowStore struct {
	store.Store
	clk  *clock.Manual
	step time.Duration
}

func (s slowStore) Apply(ctx context.Context, c store.Change) error {
	s.clk.Advance(s.step)
	return s.Store.Apply(ctx, c)
}

// TestBulkRevocationStopsAtItsBudget: a bulk revocation larger than one
// call can finish says it is incomplete, never complete, and the next call
// continues where it stopped until every key is revoked.
func TestBulkRevocationStopsAtItsBudget(t *testing.T) {
	clk := clock.NewManual(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
	storetest.ForEach(t, clk.Now, func(t *testing.T, st store.Store) {
		ctx, op := t.Context(), lifecycle.Actor{ID: "operator"}
		_, ring := storetest.Peppers(t, st, clk.Now())
		format, _ := apikey.NewFormat("sk")
		setup := lifecycle.New(st, ring, format, lifecycle.WithClock(clk.Now))
		if _, err := setup.Onboard(ctx, op, lifecycle.OnboardParams{TenantID: "acme", Name: "Acme"}); err != nil {
			t.Fatal(err)
		}
		const members = 230
		for i := range members {
			if _, err := setup.Create(ctx, op, "acme", lifecycle.CreateParams{Name: fmt.Sprint(i), Environment: apikey.Live,
				Scopes: []string{"invoices:read"}, CreatedBy: "mem_bot"}); err != nil {
				t.Fatal(err)
			}
		}
		if s, ok := st.(interface{ Settle() }); ok {
			s.Settle()
		}
		// Each write (a transaction of up to 50 revocations) takes 2 s of
		// a 5 s budget.
		svc := lifecycle.New(slowStore{Store: st, clk: clk, step: 2 * time.Second}, ring, format,
			lifecycle.WithClock(clk.Now), lifecycle.WithRevokeBudget(5*time.Second))
		total, calls := 0, 0
		for ; calls < 20; calls++ {
			n, err := svc.RevokeMember(ctx, op, "acme", "mem_bot")
			total += n
			if err == nil {
				break
			}
			if !errors.Is(err, lifecycle.ErrIncomplete) {
				t.Fatalf("call %d: %v", calls, err)
			}
		}
		if calls == 0 || total != members {
			t.Fatalf("%d keys revoked in %d calls, want %d in several", total, calls+1, members)
		}
		if n, err := svc.RevokeMember(ctx, op, "acme", "mem_bot"); n != 0 || err != nil {
			t.Fatalf("after completion: %d, %v", n, err)
		}
	})
}

// hidingStore hides one key from listings (its index entry has not
// propagated yet) and runs afterCount once, right after the first
// MemberKeyCount answers.
type hidingStore struct {
	store.Store
	hide       string
	afterCount func()
}

func (h *hidingStore) MemberKeyCount(ctx context.Context, tenant, member string) (int64, error) {
	n, err := h.Store.MemberKeyCount(ctx, tenant, member)
	if f := h.afterCount; f != nil {
		h.afterCount = nil
		f()
	}
	return n, err
}

func (h *hidingStore) ListKeys(ctx context.Context, tenant string, q store.KeyQuery) (store.KeyPage, error) {
	p, err := h.Store.ListKeys(ctx, tenant, q)
	p.Keys = slices.DeleteFunc(p.Keys, func(k store.Key) bool { return k.ID == h.hide })
	return p, err
}

// TestNewerKeyDoesNotStandInForAMissedOne: a key created while a member's
// keys are being revoked, and listed, cannot make up for a counted key the
// index has not shown yet: the revocation is not complete until that one
// is revoked too.
func TestNewerKeyDoesNotStandInForAMissedOne(t *testing.T) {
	clk := clock.NewManual(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
	base := storetest.Temp(t)
	_, ring := storetest.Peppers(t, base, clk.Now())
	format, _ := apikey.NewFormat("sk")
	ctx, op := t.Context(), lifecycle.Actor{ID: "operator"}
	setup := lifecycle.New(base, ring, format, lifecycle.WithClock(clk.Now))
	if _, err := setup.Onboard(ctx, op, lifecycle.OnboardParams{TenantID: "acme", Name: "Acme"}); err != nil {
		t.Fatal(err)
	}
	create := func() lifecycle.Created {
		clk.Advance(time.Second)
		c, err := setup.Create(ctx, op, "acme", lifecycle.CreateParams{Name: "k", Environment: apikey.Live, Scopes: []string{"invoices:read"}, CreatedBy: "mem_bob"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	missed := create()
	st := &hidingStore{Store: base, hide: missed.Key.ID, afterCount: func() { create() }}
	svc := lifecycle.New(st, ring, format, lifecycle.WithClock(clk.Now), lifecycle.WithRevokeBudget(time.Second),
		lifecycle.WithSleep(func(_ context.Context, d time.Duration) error { clk.Advance(d); return nil }))
	_, err := svc.RevokeMember(ctx, op, "acme", "mem_bob")
	if k, _ := base.GetKey(ctx, missed.Key.ID); err == nil && k.Status != store.KeyRevoked {
		t.Fatalf("RevokeMember reported success with a counted key %s", k.Status)
	}
	if !errors.Is(err, lifecycle.ErrIncomplete) {
		t.Fatalf("RevokeMember = %v, want ErrIncomplete while a counted key is not listed", err)
	}
}
