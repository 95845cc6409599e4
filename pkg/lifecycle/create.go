package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/store"
)

// CreateParams describe a new key. Zero values mean "none", except
// RateLimit, whose zero fields take the defaults.
type CreateParams struct {
	Name           string
	Description    string
	Environment    apikey.Environment
	Scopes         []string
	ExpiresAt      time.Time
	AllowedIPs     []string
	AllowedOrigins []string
	// AllowBrowserWrites lets a key with allowed origins hold scopes other
	// than resource:read (see browserRules).
	AllowBrowserWrites bool
	// Contact is the email address to reach about the key ("" for the
	// tenant's).
	Contact   string
	RateLimit store.RateLimit
	CreatedBy string
	Metadata  map[string]string
}

// Created is a new key with its token, which exists nowhere else: the
// caller hands it to the key's owner once and forgets it.
type Created struct {
	Key   store.Key
	Token apikey.Token
}

// newKey validates p and mints a key with a fresh token for tenant.
func (s *Service) newKey(ctx context.Context, tenant string, p CreateParams, now time.Time) (Created, error) {
	if err := validName(p.Name); err != nil {
		return Created{}, err
	}
	if err := validText("description", p.Description, 0, maxDescriptionLen); err != nil {
		return Created{}, err
	}
	if err := validEnvironment(p.Environment); err != nil {
		return Created{}, err
	}
	scopes, err := validScopes(p.Scopes)
	if err != nil {
		return Created{}, err
	}
	if !p.ExpiresAt.IsZero() {
		if err := validExpiry("expires_at", p.ExpiresAt, now); err != nil {
			return Created{}, err
		}
	}
	ips, err := normalIPs(p.AllowedIPs)
	if err != nil {
		return Created{}, err
	}
	origins, err := normalOrigins(p.AllowedOrigins)
	if err != nil {
		return Created{}, err
	}
	rate, err := normalRateLimit(p.RateLimit)
	if err != nil {
		return Created{}, err
	}
	if p.CreatedBy != "" {
		if err := validMemberID("created_by", p.CreatedBy); err != nil {
			return Created{}, err
		}
	}
	meta, err := validMetadata(p.Metadata)
	if err != nil {
		return Created{}, err
	}
	if err := validContact("contact", p.Contact); err != nil {
		return Created{}, err
	}

	if s.hasher == nil {
		return Created{}, errors.New("lifecycle: this service was built without a hasher and cannot mint keys")
	}
	tok, err := s.format.Generate(p.Environment)
	if err != nil {
		return Created{}, fmt.Errorf("lifecycle: generating token: %w", err)
	}
	version, sum, err := s.hasher.Hash(ctx, tok.Plain())
	if err != nil {
		return Created{}, fmt.Errorf("lifecycle: hashing token: %w", err)
	}
	k := store.Key{
		ID: tok.ID(), TenantID: tenant, Name: p.Name, Description: p.Description,
		Prefix: tok.Prefix(), Environment: string(p.Environment), Last4: tok.Last4(),
		Scopes: scopes, Status: store.KeyActive, Hash: sum, PepperVersion: version,
		CreatedAt: now, CreatedBy: p.CreatedBy, UpdatedAt: now, ExpiresAt: p.ExpiresAt.UTC(),
		AllowedIPs: ips, AllowedOrigins: origins, AllowBrowserWrites: p.AllowBrowserWrites, Contact: p.Contact, RateLimit: rate, Metadata: meta,
	}
	return Created{Key: k, Token: tok}, nil
}

// Create issues a new key in an active tenant, in the actor's environment
// when p names none, within the actor's bounds, and for the actor's member
// (Bounds.creator).
func (s *Service) Create(ctx context.Context, actor Actor, tenant string, p CreateParams) (Created, error) {
	if p.Environment == "" {
		p.Environment = apikey.Environment(actor.Bounds.Environment)
	}
	if err := s.requireActiveTenant(ctx, tenant); err != nil {
		return Created{}, err
	}
	creator, err := actor.Bounds.creator(p.CreatedBy)
	if err != nil {
		return Created{}, err
	}
	p.CreatedBy = creator
	now := s.now().UTC()
	c, err := s.newKey(ctx, tenant, p, now)
	if err != nil {
		return Created{}, err
	}
	if err := browserRules(c.Key); err != nil {
		return Created{}, err
	}
	if err := actor.Bounds.admit(c.Key); err != nil {
		return Created{}, err
	}
	entry, err := s.audit(ActionKeyCreated, c.Key, actor, now, nil)
	if err != nil {
		return Created{}, err
	}
	err = s.write(ctx, actor, store.Change{Keys: []store.KeyWrite{{Key: c.Key}}, Audit: []store.AuditEntry{entry}})
	if err != nil {
		return Created{}, s.writeError("creating key", err)
	}
	c.Key.Revision = 1
	return c, nil
}
