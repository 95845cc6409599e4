package gateway

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
)

// invokeAdmin runs the admin function as API Gateway's Lambda proxy
// integration does: the whole request becomes one event, and the
// function's response the answer. A function that fails, or returns a
// response API Gateway cannot use, gets 502.
func (g *Gateway) invokeAdmin(c *call, a admitted) {
	body, err := io.ReadAll(c.r.Body)
	if err != nil {
		if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
			g.tooLong(c)
		} else {
			g.refuse(c, http.StatusBadRequest, "The request body could not be read.")
		}
		return
	}
	resp, err := g.cfg.Admin(c.r.Context(), g.proxyEvent(c, a, body))
	if err == nil {
		err = g.answer(c, resp)
	}
	if err != nil {
		g.cfg.Logger.ErrorContext(c.r.Context(), "admin function failed", "request_id", c.id, "error", err)
		g.integrationFailed(c)
	}
}

// proxyEvent builds the Lambda proxy integration's event as API Gateway
// does. The identity is the authorizer's decision or the IAM caller in
// a's request context; nothing the client sends can set either.
func (g *Gateway) proxyEvent(c *call, a admitted, body []byte) events.APIGatewayProxyRequest {
	r := c.r
	headers, multi := eventHeaders(r)
	query, multiQuery := eventQuery(r)
	now := g.cfg.Now().UTC()
	ev := events.APIGatewayProxyRequest{
		Resource:                        c.route.Path,
		Path:                            r.URL.Path,
		HTTPMethod:                      r.Method,
		Headers:                         headers,
		MultiValueHeaders:               multi,
		QueryStringParameters:           query,
		MultiValueQueryStringParameters: multiQuery,
		PathParameters:                  c.params,
		RequestContext: events.APIGatewayProxyRequestContext{
			AccountID:  g.cfg.AccountID,
			ResourceID: g.resourceID(c.route.Path),
			Stage:      g.cfg.Stage,
			DomainName: r.Host,
			RequestID:  c.id,
			Protocol:   r.Proto,
			Identity: events.APIGatewayRequestIdentity{
				SourceIP:  c.sourceIP,
				UserAgent: r.UserAgent(),
				UserArn:   a.userARN,
			},
			ResourcePath:     c.route.Path,
			Path:             "/" + g.cfg.Stage + r.URL.Path,
			Authorizer:       proxyAuthorizer(a),
			HTTPMethod:       r.Method,
			RequestTime:      now.Format("02/Jan/2006:15:04:05 -0700"),
			RequestTimeEpoch: now.UnixMilli(),
			APIID:            g.cfg.APIID,
		},
	}
	if utf8.Valid(body) {
		ev.Body = string(body)
	} else {
		ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
	}
	return ev
}

// proxyAuthorizer is an authorizer's decision as API Gateway passes it to
// a proxy integration (requestContext.authorizer): the context with every
// value a string, the principalId, and the authorizer's latency in
// milliseconds (0 for a cached decision).
func proxyAuthorizer(a admitted) map[string]any {
	if a.authorizer == nil {
		return nil
	}
	out := make(map[string]any, len(a.authorizer.Context)+2)
	for name, v := range a.authorizer.Context {
		out[name] = contextString(v)
	}
	out["principalId"] = a.authorizer.PrincipalID
	out["integrationLatency"] = float64(a.latency.Milliseconds())
	return out
}

// answer writes the function's response as API Gateway does: headers and
// multiValueHeaders merged, and a base64 body decoded.
func (g *Gateway) answer(c *call, resp events.APIGatewayProxyResponse) error {
	if resp.StatusCode < 100 || resp.StatusCode > 599 {
		return fmt.Errorf("gateway: malformed Lambda proxy response: statusCode %d", resp.StatusCode)
	}
	body := []byte(resp.Body)
	if resp.IsBase64Encoded {
		var err error
		if body, err = base64.StdEncoding.DecodeString(resp.Body); err != nil {
			return fmt.Errorf("gateway: malformed Lambda proxy response: body: %w", err)
		}
	}
	h := c.w.Header()
	for name, v := range resp.Headers {
		h.Set(name, v)
	}
	for name, vals := range resp.MultiValueHeaders {
		merged := slices.Clone(vals)
		if v, ok := resp.Headers[name]; ok && !slices.Contains(merged, v) {
			merged = append(merged, v)
		}
		h.Del(name)
		for _, v := range merged {
			h.Add(name, v)
		}
	}
	c.w.WriteHeader(resp.StatusCode)
	_, _ = c.w.Write(body)
	return nil
}
