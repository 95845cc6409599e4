package gateway

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/keyward/keyward/pkg/authorizer"
	"github.com/keyward/keyward/pkg/policy"
)

// operator checks the operator token, the local stand-in for a SigV4
// signature, and answers the request when it is missing or wrong.
func (g *Gateway) operator(c *call) bool {
	now := g.cfg.Now()
	if wait := g.operatorFailures.wait(c.sourceIP, now); wait > 0 {
		c.w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		g.refuse(c, http.StatusTooManyRequests, "Too many requests with a wrong operator token from this address; retry after the Retry-After delay.")
		return false
	}
	vals := c.r.Header.Values("Authorization")
	var responseType string
	switch {
	case len(vals) == 0 || vals[0] == "":
		responseType = "MISSING_AUTHENTICATION_TOKEN"
	case len(vals) > 1:
		responseType = "INCOMPLETE_SIGNATURE"
	default:
		scheme, cred, _ := strings.Cut(vals[0], " ")
		switch {
		case !strings.EqualFold(scheme, "Bearer"):
			responseType = "INCOMPLETE_SIGNATURE"
		case g.cfg.OperatorToken == "" || subtle.ConstantTimeCompare([]byte(cred), []byte(g.cfg.OperatorToken)) != 1:
			responseType = "INVALID_SIGNATURE"
		}
	}
	if responseType == "" {
		return true
	}
	g.operatorFailures.fail(c.sourceIP, now)
	g.reply(c, responseType, nil)
	return false
}

// authorize runs a key-authorized route: the cached or fresh authorizer
// decision, the policy, the usage plan, then the target.
func (g *Gateway) authorize(c *call) {
	arn := policy.MethodARN{Prefix: g.arnPrefix, Method: c.r.Method, Path: strings.TrimPrefix(c.r.URL.Path, "/")}.String()
	var key string
	var cacheable bool
	if g.ttl > 0 {
		var present bool
		if key, present, cacheable = g.cacheKey(c); !present {
			g.reply(c, "UNAUTHORIZED", nil)
			return
		}
	}
	var resp events.APIGatewayCustomAuthorizerResponse
	var latency time.Duration // of the authorizer; none for a cached decision
	hit := false
	if cacheable {
		resp, hit = g.lookup(key)
	}
	if !hit {
		start := g.cfg.Now()
		out, err := g.cfg.Authorizer.Authorize(c.r.Context(), g.event(c, arn))
		latency = g.cfg.Now().Sub(start)
		switch {
		// API Gateway knows a refusal only by this exact error message.
		case err != nil && err.Error() == "Unauthorized":
			g.reply(c, "UNAUTHORIZED", nil)
			return
		case err != nil:
			g.cfg.Logger.ErrorContext(c.r.Context(), "authorizer failed", "request_id", c.id, "error", err)
			g.reply(c, "AUTHORIZER_FAILURE", nil)
			return
		}
		if resp, err = received(out); err != nil {
			g.cfg.Logger.ErrorContext(c.r.Context(), "authorizer response refused", "request_id", c.id, "error", err)
			g.reply(c, "AUTHORIZER_CONFIGURATION_ERROR", nil)
			return
		}
		if cacheable {
			g.remember(key, resp)
		}
	}
	c.principal = resp.PrincipalID
	c.tenant, _ = resp.Context[authorizer.ContextTenantID].(string)
	// The context as $context.authorizer.* variables, for a gateway
	// response's template.
	vars := func() map[string]string {
		m := map[string]string{}
		for name, v := range resp.Context {
			m["context.authorizer."+name] = contextString(v)
		}
		return m
	}
	if !policy.Allows(resp.PolicyDocument, arn) {
		g.reply(c, "ACCESS_DENIED", vars())
		return
	}
	switch known, ok := g.admit(resp.UsageIdentifierKey); {
	case !known:
		g.reply(c, "INVALID_API_KEY", vars())
		return
	case !ok:
		g.reply(c, "THROTTLED", vars())
		return
	}
	g.forward(c, admitted{authorizer: &resp, latency: latency})
}

// event builds the REQUEST authorizer event as API Gateway does.
func (g *Gateway) event(c *call, arn string) events.APIGatewayCustomAuthorizerRequestTypeRequest {
	r := c.r
	headers, multi := eventHeaders(r)
	query, multiQuery := eventQuery(r)
	return events.APIGatewayCustomAuthorizerRequestTypeRequest{
		Type:                            "REQUEST",
		MethodArn:                       arn,
		Resource:                        c.route.Path,
		Path:                            r.URL.Path,
		HTTPMethod:                      r.Method,
		Headers:                         headers,
		MultiValueHeaders:               multi,
		QueryStringParameters:           query,
		MultiValueQueryStringParameters: multiQuery,
		PathParameters:                  c.params,
		RequestContext: events.APIGatewayCustomAuthorizerRequestTypeRequestContext{
			Path:         "/" + g.cfg.Stage + r.URL.Path,
			AccountID:    g.cfg.AccountID,
			ResourceID:   g.resourceID(c.route.Path),
			Stage:        g.cfg.Stage,
			RequestID:    c.id,
			Identity:     events.APIGatewayCustomAuthorizerRequestTypeRequestIdentity{SourceIP: c.sourceIP},
			ResourcePath: c.route.Path,
			HTTPMethod:   r.Method,
			APIID:        g.cfg.APIID,
		},
	}
}

// received checks the authorizer's response as API Gateway checks it: a
// principal, a policy, and a context of strings, numbers and booleans only.
func received(out events.APIGatewayCustomAuthorizerResponse) (events.APIGatewayCustomAuthorizerResponse, error) {
	if out.PrincipalID == "" || len(out.PolicyDocument.Statement) == 0 {
		return out, errors.New("gateway: authorizer response lacks a principalId or a policy")
	}
	// Checked as AWS checks the JSON a Lambda returns, without encoding it:
	// this runs on every uncached request. Nothing here modifies the
	// context, which the authorizer may share between answers.
	for name, v := range out.Context {
		switch v.(type) {
		case string, bool, float64, float32, int, int32, int64, uint, uint32, uint64:
		default:
			return out, fmt.Errorf("gateway: authorizer context %q is not a string, number or boolean", name)
		}
	}
	return out, nil
}
