package localstack

import (
	"log/slog"
	"net/http"
	"testing"

	"github.com/keyward/keyward/pkg/localstack/gateway"
)

// TestServerBoundsSlowClients: every phase of a connection has a deadline
// and the head a size cap, so slow or idle clients cannot hold the stack.
func TestServerBoundsSlowClients(t *testing.T) {
	srv := newServer(http.NotFoundHandler(), slog.Default())
	if srv.ReadHeaderTimeout == 0 || srv.ReadTimeout == 0 || srv.IdleTimeout == 0 || srv.MaxHeaderBytes == 0 {
		t.Fatalf("server without a deadline or head cap: %+v", srv)
	}
	// The answer may take the integration timeout, and must still be sent.
	if srv.WriteTimeout <= gateway.IntegrationTimeout {
		t.Fatalf("write timeout %v does not leave room for the %v integration timeout", srv.WriteTimeout, gateway.IntegrationTimeout)
	}
}
