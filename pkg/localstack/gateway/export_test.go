package gateway

// CacheSize is the authorizer cache's entries and counted bytes.
func (g *Gateway) CacheSize() (entries, bytes int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.cache), g.cacheBytes
}

// MaxCacheBytes is the cache's bound, for tests that fill it.
const MaxCacheBytes = maxCacheBytes
