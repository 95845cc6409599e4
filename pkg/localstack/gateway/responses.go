package gateway

import (
	"net/http"

	"github.com/keyward/keyward/pkg/config"
)

// reply answers with a gateway response.
func (g *Gateway) reply(c *call, responseType string, vars map[string]string) {
	all := map[string]string{"context.requestId": c.id, "context.error.message": builtin(responseType).message}
	for k, v := range vars {
		all[k] = v
	}
	status, header, body := Render(g.cfg.Gateway, responseType, all)
	g.write(c, status, withCORS(header, g.cfg.Gateway, c.r.Header), body)
	c.rendered = responseType
}

// withCORS adds the CORS headers every gateway response carries.
func withCORS(header http.Header, cfg config.Gateway, req http.Header) http.Header {
	for k, v := range corsHeaders(cfg, req) {
		header[k] = v
	}
	return header
}

// refuse answers a request the emulation refuses before routing, in the
// error envelope of DEFAULT_4XX with its own status and message.
func (g *Gateway) refuse(c *call, status int, message string) {
	_, header, body := Render(g.cfg.Gateway, "DEFAULT_4XX", map[string]string{"context.requestId": c.id, "context.error.message": message})
	g.write(c, status, withCORS(header, g.cfg.Gateway, c.r.Header), body)
}

func (g *Gateway) write(c *call, status int, header http.Header, body []byte) {
	for k, v := range header {
		c.w.Header()[k] = v
	}
	c.w.WriteHeader(status)
	_, _ = c.w.Write(body)
}

// tooLong answers a body over MaxPayload with API Gateway's own answer,
// which it does not let a deployment customize.
func (g *Gateway) tooLong(c *call) {
	g.write(c, http.StatusRequestEntityTooLarge, http.Header{"Content-Type": {"application/json"}}, []byte(`{"message":"Request Too Long"}`))
}

// integrationFailed answers as API Gateway does when a Lambda proxy
// integration fails (the function errs, or its response is malformed):
// 502 "Internal server error", which by default renders
// {"message":"Internal server error"} and in keyward DEFAULT_5XX's
// envelope; a status set on DEFAULT_5XX applies to it too.
func (g *Gateway) integrationFailed(c *call) {
	status, header, body := Render(g.cfg.Gateway, "DEFAULT_5XX", map[string]string{"context.requestId": c.id, "context.error.message": "Internal server error"})
	if g.cfg.Gateway.GatewayResponses["DEFAULT_5XX"].Status == 0 {
		status = http.StatusBadGateway
	}
	g.write(c, status, withCORS(header, g.cfg.Gateway, c.r.Header), body)
	c.rendered = "DEFAULT_5XX"
}
