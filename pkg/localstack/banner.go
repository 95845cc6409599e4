package localstack

import (
	"fmt"
	"io"
	"strings"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/config"
)

// PrintSecrets prints the demo tenant's secrets, on the first start only.
func (s *Stack) PrintSecrets(w io.Writer) {
	if s.Bootstrap == nil {
		return
	}
	adminKey, testAdmin, demo := s.Bootstrap.AdminKey, s.Bootstrap.TestAdminKey, s.Bootstrap.DemoKey
	fmt.Fprintf(w, "Created tenant %q. These secrets are shown once and stored nowhere:\n\n", DemoTenant)
	fmt.Fprintf(w, "  export KEYWARD_ADMIN_KEY=%s   # keys:admin, manages the tenant's live keys\n", adminKey.Token.Plain())
	fmt.Fprintf(w, "  export KEYWARD_TEST_ADMIN_KEY=%s   # keys:admin, manages its test keys\n", testAdmin.Token.Plain())
	fmt.Fprintf(w, "  export KEYWARD_DEMO_KEY=%s    # invoices:read, %s\n\n", demo.Token.Plain(), apikey.PublicID(demo.Key.ID))
}

// PrintBanner tells a person how to use the stack at base
// (http://host:port): on the first start the demo keys, once, with
// copy-paste curl examples; later, that the data was reused.
func (s *Stack) PrintBanner(w io.Writer, base, dataDir string) {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("")
	line("keyward local stack on %s (data in %s)", base, dataDir)
	line("")
	if s.Bootstrap == nil {
		line("Reusing the data in %s: tenant %q and its keys are there.", dataDir, DemoTenant)
		line("Their secrets were printed once, on the first start; delete %s to start afresh.", dataDir)
	} else {
		demoID := apikey.PublicID(s.Bootstrap.DemoKey.Key.ID)
		s.PrintSecrets(&b)
		line("Call the protected API (the built-in echo shows what your backend would receive):")
		line("  curl -s %s/invoices -H \"Authorization: Bearer $KEYWARD_DEMO_KEY\"", base)
		line("")
		line("A route outside the key's scopes is refused with 403:")
		line("  curl -s -X POST %s/invoices -H \"Authorization: Bearer $KEYWARD_DEMO_KEY\"", base)
		line("")
		line("Create a key:")
		line("  curl -s -X POST %s/v1/keys -H \"Authorization: Bearer $KEYWARD_TEST_ADMIN_KEY\" \\", base)
		line("    -H 'Content-Type: application/json' \\")
		line("    -d '{\"name\":\"my integration\",\"environment\":\"test\",\"scopes\":[\"invoices:read\",\"customers:write\"]}'")
		line("")
		line("Rotate the demo key: the answer holds the new key and its secret, and the old")
		line("secret keeps working for 12 hours:")
		line("  curl -s -X POST %s/v1/keys/%s/rotate -H \"Authorization: Bearer $KEYWARD_ADMIN_KEY\"", base, demoID)
		line("")
		line("End that overlap now: revoke the old demo key (refused on the very next request;")
		line("the new key from the rotation keeps working):")
		line("  curl -s -X POST %s/v1/keys/%s/revoke -H \"Authorization: Bearer $KEYWARD_ADMIN_KEY\"", base, demoID)
	}
	line("")
	line("Web pages call the browser endpoint, %s%s, with browser keys (keys with", base, config.BrowserPath)
	line("allowed_origins): the README shows the fetch call.")
	if len(s.Members) > 0 {
		line("")
		line("The console: %s/console. Sign in as a member of %q (passwords new each start):", base, DemoTenant)
		for _, m := range s.Members {
			line("  %-24s %-14s %s", m.Email, m.Password, m.Role)
		}
	}
	line("")
	line("Operator routes (IAM in AWS) take the operator token here:")
	line("  export KEYWARD_OPERATOR_TOKEN=%s", s.OperatorToken)
	line("  curl -s -X POST %s/v1/tenants -H \"Authorization: Bearer $KEYWARD_OPERATOR_TOKEN\" \\", base)
	line("    -H 'Content-Type: application/json' -d '{\"tenant_id\":\"acme\",\"name\":\"Acme\"}'")
	line("")
	fmt.Fprint(w, b.String())
}
