package admin

import (
	"context"
	"strings"
)

// DescribeCaller shows the caller in a context, for tests of the adapters.
func DescribeCaller(ctx context.Context) map[string]any {
	c, _ := callerFrom(ctx)
	return map[string]any{"tenant": c.TenantID, "key": c.KeyID, "scopes": strings.Join(c.Scopes, " "),
		"operator": c.Operator, "principal": c.Principal, "request": c.RequestID}
}
