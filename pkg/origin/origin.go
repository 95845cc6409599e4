// Package origin is the one spelling of a browser origin keyward stores
// and compares: a key's allowed origins are normalised with it when they
// are set, and a request's Origin header when it is checked.
package origin

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Normal returns the canonical form of an origin, or an error if s
// is not exactly scheme://host[:port].
func Normal(s string) (string, error) {
	if strings.Contains(s, "*") {
		return "", fmt.Errorf("%q: wildcards are not allowed", s)
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("%q is not an origin (scheme://host[:port])", s)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", fmt.Errorf("%q: scheme must be https or http", s)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || strings.HasSuffix(s, "#") {
		return "", fmt.Errorf("%q: an origin has no user, path, query or fragment", s)
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", fmt.Errorf("%q has no host", s)
	}
	port := u.Port()
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%q: bad port", s)
		}
		if (scheme == "https" && n == 443) || (scheme == "http" && n == 80) {
			port = ""
		} else {
			port = strconv.Itoa(n)
		}
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		return scheme + "://" + host + ":" + port, nil
	}
	return scheme + "://" + host, nil
}
