package admin

import (
	"net/http"
	"time"

	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/store"
)

type tenantResource struct {
	ID           string  `json:"id"`
	Object       string  `json:"object"`
	Name         string  `json:"name"`
	Contact      *string `json:"contact"`
	Status       string  `json:"status"`
	CreatedAt    string  `json:"created_at"`
	OffboardedAt *string `json:"offboarded_at"`
}

func tenantOf(t store.Tenant) tenantResource {
	return tenantResource{ID: t.ID, Object: "tenant", Name: t.Name, Contact: stringOrNil(t.Contact), Status: string(t.Status),
		CreatedAt: t.CreatedAt.UTC().Format(time.RFC3339), OffboardedAt: timeOrNil(t.OffboardedAt)}
}

type onboardBody struct {
	TenantID string `json:"tenant_id"`
	Name     string `json:"name"`
	Contact  string `json:"contact"`
}

type onboarded struct {
	Tenant tenantResource `json:"tenant"`
	// Key and Secret are the live keys:admin key; TestKey and TestSecret
	// its test twin: a management key acts in its own environment only.
	Key        keyResource `json:"key"`
	Secret     string      `json:"secret,omitempty"`
	TestKey    keyResource `json:"test_key"`
	TestSecret string      `json:"test_secret,omitempty"`
}

func (s *Server) onboard(w http.ResponseWriter, r *http.Request, c Caller) *apiError {
	body, e := readBody(w, r)
	if e != nil {
		return e
	}
	var b onboardBody
	if e := decode(body, &b); e != nil {
		return e
	}
	actor := actorOf(c)
	actor.Prepare = s.limits.Prepare()
	actor.Receipt = s.receipt(r, func(o lifecycle.Outcome) (int, any) {
		return http.StatusCreated, onboarded{Tenant: tenantOf(*o.Tenant), Key: resource(o.Keys[0]), TestKey: resource(o.Keys[1])}
	})
	o, err := s.cfg.Keys.Onboard(r.Context(), actor, lifecycle.OnboardParams{TenantID: b.TenantID, Name: b.Name, Contact: b.Contact,
		RateLimit: s.cfg.Gateway.HighestTier().RateLimit()})
	if err != nil {
		return s.internal(r, "onboarding tenant", err)
	}
	writeJSON(w, http.StatusCreated, onboarded{Tenant: tenantOf(o.Tenant), Key: resource(o.Live.Key), Secret: o.Live.Token.Plain(),
		TestKey: resource(o.Test.Key), TestSecret: o.Test.Token.Plain()})
	return nil
}

type offboarded struct {
	Tenant  tenantResource `json:"tenant"`
	Revoked int            `json:"revoked"`
}

func (s *Server) offboard(w http.ResponseWriter, r *http.Request, c Caller) *apiError {
	if e := noBody(w, r); e != nil {
		return e
	}
	id := r.PathValue("id")
	n, err := s.cfg.Keys.Offboard(r.Context(), actorOf(c), id)
	if e := s.bulkRevoked(w, r, n, err, "offboarding tenant"); e != nil {
		return e
	}
	t, err := s.cfg.Keys.Tenant(r.Context(), id)
	if err != nil {
		return s.internal(r, "reading tenant", err)
	}
	writeJSON(w, http.StatusOK, offboarded{Tenant: tenantOf(t), Revoked: n})
	return nil
}
