package gateway

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/keyward/keyward/pkg/config"
)

// maxCacheBytes bounds the authorizer cache's keys and decisions; past it
// expired entries go, and if that is not enough the cache starts over,
// which costs only authorizer calls.
const maxCacheBytes = 16 << 20

// cached is a decision in the authorizer cache.
type cached struct {
	resp    events.APIGatewayCustomAuthorizerResponse
	expires time.Time
	size    int // bytes counted against maxCacheBytes
}

// Flush clears the authorizer cache, as FlushStageAuthorizersCache does:
// decisions still being made are cached when they arrive.
func (g *Gateway) Flush(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.cache)
	g.cacheBytes = 0
	return nil
}

// headerSource prefixes identity sources that name a request header.
const headerSource = "method.request.header."

// cacheKey returns the values of the identity sources, each
// length-prefixed so that no two different requests share a key; whether
// every source is present and non-empty; and whether the decision may be
// cached under the key: only when each source has one value, which is
// then the credential the authorizer decides on (it refuses two).
// Each authorizer attachment (the server endpoint's, the browser
// endpoint's) has a cache of its own, as in API Gateway.
func (g *Gateway) cacheKey(c *call) (key string, present, cacheable bool) {
	var b strings.Builder
	browser := config.OnBrowserEndpoint(c.route.Path)
	if browser {
		b.WriteString("browser;")
	}
	present, cacheable = true, g.ttl > 0
	for _, src := range g.sources[browser] {
		v := ""
		if name, ok := strings.CutPrefix(src, headerSource); ok {
			vals := c.r.Header.Values(name)
			if len(vals) > 1 {
				cacheable = false
			}
			if len(vals) > 0 {
				v = vals[len(vals)-1]
			}
		} else if src == config.IdentitySourceIP {
			v = c.sourceIP
		}
		if v == "" {
			present = false
		}
		b.WriteString(strconv.Itoa(len(v)) + ":" + v + ";")
	}
	return b.String(), present, cacheable && present
}

// lookup returns a live cached decision; an expired one is evicted.
func (g *Gateway) lookup(key string) (events.APIGatewayCustomAuthorizerResponse, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.cache[key]
	if !ok {
		return events.APIGatewayCustomAuthorizerResponse{}, false
	}
	if !g.cfg.Now().Before(e.expires) {
		delete(g.cache, key)
		g.cacheBytes -= e.size
		return events.APIGatewayCustomAuthorizerResponse{}, false
	}
	return e.resp, true
}

// remember caches a decision for the TTL, within maxCacheBytes.
func (g *Gateway) remember(key string, resp events.APIGatewayCustomAuthorizerResponse) {
	size := len(key) + decisionSize(resp)
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.cfg.Now()
	if old, ok := g.cache[key]; ok {
		delete(g.cache, key)
		g.cacheBytes -= old.size
	}
	if g.cacheBytes+size > maxCacheBytes {
		for k, e := range g.cache {
			if !now.Before(e.expires) {
				delete(g.cache, k)
				g.cacheBytes -= e.size
			}
		}
	}
	if g.cacheBytes+size > maxCacheBytes {
		clear(g.cache)
		g.cacheBytes = 0
	}
	g.cache[key] = cached{resp: resp, expires: now.Add(g.ttl), size: size}
	g.cacheBytes += size
}

// decisionSize estimates the bytes a cached decision holds, generously:
// map and struct overheads count as a fixed amount per entry.
func decisionSize(resp events.APIGatewayCustomAuthorizerResponse) int {
	n := 256 + len(resp.PrincipalID) + len(resp.UsageIdentifierKey)
	for _, st := range resp.PolicyDocument.Statement {
		n += 64
		for _, r := range st.Resource {
			n += len(r) + 16
		}
	}
	for k, v := range resp.Context {
		n += len(k) + len(contextString(v)) + 32
	}
	return n
}
