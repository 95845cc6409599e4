package gateway_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/keyward/keyward/internal/storetest"
	"github.com/keyward/keyward/pkg/admin"
	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/localstack/gateway"
	"github.com/keyward/keyward/pkg/store"
)

// holdingStore holds the first read of one key after it has read it, until
// released: a decision on its way while the key is revoked.
type holdingStore struct {
	store.Store
	id       string
	once     sync.Once
	read     chan struct{} // closed once the held read has its key
	released chan struct{}
}

func (h *holdingStore) GetKey(ctx context.Context, id string) (store.Key, error) {
	k, err := h.Store.GetKey(ctx, id)
	if id == h.id {
		h.once.Do(func() {
			close(h.read)
			<-h.released
		})
	}
	return k, err
}

// TestRevocationRaceIsClosedByTheSecondFlush: a decision that read a key
// just before its revocation and reaches the gateway just after the flush
// is cached, as API Gateway caches it; the second flush of the revocation
// (authorizer.Invalidate) clears it, so that once the revoke has answered,
// no request with the key gets through.
func TestRevocationRaceIsClosedByTheSecondFlush(t *testing.T) {
	ctx := t.Context()
	st := storetest.Temp(t)
	_, ring := storetest.Peppers(t, st, time.Now())
	format, _ := apikey.NewFormat("sk")
	svc := lifecycle.New(st, ring, format)
	gwCfg := loadGateway(t)
	o, err := svc.Onboard(ctx, lifecycle.Actor{ID: "op"}, lifecycle.OnboardParams{TenantID: "acme", Name: "Acme", RateLimit: gwCfg.HighestTier().RateLimit()})
	if err != nil {
		t.Fatal(err)
	}
	data, err := svc.Create(ctx, lifecycle.Actor{ID: "op"}, "acme", lifecycle.CreateParams{Name: "data", Environment: apikey.Live, Scopes: []string{"invoices:read"}})
	if err != nil {
		t.Fatal(err)
	}
	held := &holdingStore{Store: st, id: data.Key.ID, read: make(chan struct{}), released: make(chan struct{})}
	logger := slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil))
	authz, err := authorizer.New(authorizer.Config{Store: held, Peppers: ring, Format: format, Routes: routes(t), Gateway: gwCfg, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}

	// Between the revocation's two flushes, the held decision lands in
	// the cache, and a request made then is still let through by it.
	var gw *gateway.Gateway
	var inTheWindow int
	get := func() int {
		r := httptest.NewRequest("GET", "/invoices", nil)
		r.Header.Set("Authorization", "Bearer "+data.Token.Plain())
		w := httptest.NewRecorder()
		gw.ServeHTTP(w, r)
		return w.Code
	}
	first := make(chan int, 1)
	between := func(ctx context.Context, d time.Duration) error {
		close(held.released)
		if code := <-first; code != http.StatusOK {
			t.Errorf("the held request answered %d, want 200 from its decision made before the revocation", code)
		}
		inTheWindow = get()
		return clock.Sleep(ctx, d)
	}
	api := admin.New(admin.Config{Keys: svc, Store: st, Gateway: gwCfg, Logger: logger, Sleep: between,
		Flusher: authorizer.Flusher(flushVia(func(ctx context.Context) error { return gw.Flush(ctx) }))})
	gw, err = gateway.New(gateway.Config{Routes: routes(t), Gateway: gwCfg, Authorizer: authz, Admin: httpadapter.New(admin.FromAPIGateway("", api)).ProxyWithContext, Upstream: gateway.Echo(), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []store.Key{o.Live.Key, data.Key} {
		tier, _ := gwCfg.TierOf(k.RateLimit)
		_ = gw.Provision(ctx, gwCfg.RateLimitIdentity(k.TenantID, k.ID), tier.Name)
	}

	go func() { first <- get() }()
	<-held.read // the decision has read the key, still active
	r := httptest.NewRequest("POST", "/v1/keys/"+apikey.PublicID(data.Key.ID)+"/revoke", nil)
	r.Header.Set("Authorization", "Bearer "+o.Live.Token.Plain())
	w := httptest.NewRecorder()
	gw.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("revoke: %d %s", w.Code, w.Body)
	}
	if inTheWindow != http.StatusOK {
		t.Fatalf("between the flushes the held decision answered %d: the race this test is about did not happen", inTheWindow)
	}
	if code := get(); code != http.StatusUnauthorized {
		t.Fatalf("after the revocation answered, the key got %d", code)
	}
}

// flushVia adapts a function to authorizer.Flusher.
type flushVia func(context.Context) error

func (f flushVia) Flush(ctx context.Context) error { return f(ctx) }
