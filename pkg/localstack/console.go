package localstack

import (
	"fmt"
	"net/http"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/console"
	"github.com/keyward/keyward/pkg/lifecycle"
	"github.com/keyward/keyward/pkg/localstack/oidc"
)

// DemoMember is a member of the demo tenant who signs in to the console
// with the development OpenID provider.
type DemoMember struct {
	ID, Email, Password string
	Role                lifecycle.Role
}

// consoleClientID is the console's client at the local provider.
const consoleClientID = "keyward-console"

// identityPath is where the local OpenID provider is served.
const identityPath = "/oidc"

// signIn builds the development OpenID provider, with one demo member of
// each role and passwords new to this start, and the console that signs
// them in, both served from base (http://host:port).
func (s *Stack) signIn(base string, cfg console.Config) (provider http.Handler, cons *console.Server, err error) {
	secret, err := apikey.RandomString(32)
	if err != nil {
		return nil, nil, err
	}
	var members []oidc.Member
	for _, r := range lifecycle.Roles {
		password, err := apikey.RandomString(12)
		if err != nil {
			return nil, nil, err
		}
		m := DemoMember{ID: "mem_" + string(r), Email: string(r) + "@demo.example", Password: password, Role: r}
		s.Members = append(s.Members, m)
		members = append(members, oidc.Member{ID: m.ID, Email: m.Email, Name: "Demo " + string(r), Tenant: DemoTenant,
			Role: string(r), Password: password})
	}
	p, err := oidc.New(oidc.Config{Issuer: base + identityPath, Members: members, Logger: cfg.Logger,
		Clients: []oidc.Client{{ID: consoleClientID, Secret: secret,
			RedirectURIs: []string{base + console.Prefix + "/callback"}, PostLogoutRedirectURIs: []string{base + console.SignedOutPath}}}})
	if err != nil {
		return nil, nil, fmt.Errorf("localstack: identity provider: %w", err)
	}
	cfg.BaseURL, cfg.Issuer, cfg.ClientID, cfg.ClientSecret = base, p.Issuer(), consoleClientID, secret
	cfg.RedirectURL = base + console.Prefix + "/callback"
	c, err := console.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("localstack: console: %w", err)
	}
	return p, c, nil
}
