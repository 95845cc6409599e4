// Package route compiles a route table (config.RouteTable) into something
// that matches requests and names them as API Gateway method ARNs.
package route

import (
	"fmt"
	"slices"
	"strings"

	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/scope"
)

// Route is one compiled route.
type Route struct {
	config.Route
	segments []segment
	// ARNPath is the route's part of a method ARN with every parameter as
	// "*": "GET/invoices/*". API Gateway's "*" also matches "/", so a
	// policy must pair it with Deny statements for routes it must not reach.
	ARNPath string
}

type segment struct {
	literal string
	param   string
	greedy  bool
}

// Table is a compiled route table.
type Table struct {
	routes []Route
}

var methods = map[string]bool{"GET": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "HEAD": true, "OPTIONS": true}

// Compile validates routes and compiles them. Later tables cannot redefine
// a method and path of an earlier one.
func Compile(tables ...config.RouteTable) (*Table, error) {
	t := &Table{}
	seen := map[string]bool{}
	for _, table := range tables {
		for _, r := range table.Routes {
			c, err := compile(r)
			if err != nil {
				return nil, err
			}
			shape := r.Method + " " + c.shape()
			if seen[shape] {
				return nil, fmt.Errorf("route: %s %s is defined twice", r.Method, r.Path)
			}
			seen[shape] = true
			t.routes = append(t.routes, c)
		}
	}
	return t, nil
}

func compile(r config.Route) (Route, error) {
	bad := func(format string, args ...any) (Route, error) {
		return Route{}, fmt.Errorf("route: %s %s: %s", r.Method, r.Path, fmt.Sprintf(format, args...))
	}
	if !methods[r.Method] {
		return bad("method must be one of GET POST PUT PATCH DELETE HEAD OPTIONS")
	}
	switch r.Auth {
	case config.AuthKey:
		if err := scope.Validate(r.Scope); err != nil {
			return bad("%v", err)
		}
		if strings.Contains(r.Scope, "*") {
			return bad("a route needs a concrete scope, not a wildcard")
		}
	case config.AuthIAM, config.AuthNone:
		if r.Scope != "" {
			return bad("a route with auth %q takes no scope", r.Auth)
		}
	default:
		return bad("auth must be empty, %q or %q", config.AuthIAM, config.AuthNone)
	}
	if !strings.HasPrefix(r.Path, "/") || (len(r.Path) > 1 && strings.HasSuffix(r.Path, "/")) {
		return bad("path must start with / and not end with one")
	}
	c := Route{Route: r}
	arn := []string{r.Method}
	if r.Path != "/" {
		parts := strings.Split(r.Path[1:], "/")
		for i, p := range parts {
			var s segment
			switch {
			case p == "":
				return bad("empty segment")
			case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "+}"):
				if i != len(parts)-1 {
					return bad("a greedy parameter must be last")
				}
				s = segment{param: p[1 : len(p)-2], greedy: true}
			case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}"):
				s = segment{param: p[1 : len(p)-1]}
			default:
				if strings.ContainsAny(p, "{}*?") {
					return bad("segment %q mixes literal text and braces or wildcards", p)
				}
				s = segment{literal: p}
			}
			if s.literal == "" && !validParam(s.param) {
				return bad("parameter %q must be letters, digits or _", s.param)
			}
			c.segments = append(c.segments, s)
			if s.literal != "" {
				arn = append(arn, s.literal)
			} else {
				arn = append(arn, "*")
			}
		}
	}
	c.ARNPath = strings.Join(arn, "/")
	if r.Path == "/" {
		c.ARNPath += "/"
	}
	return c, nil
}

func validParam(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// shape is the path with parameter names erased: two routes of one shape
// are the same route to API Gateway.
func (r Route) shape() string {
	var b strings.Builder
	for _, s := range r.segments {
		b.WriteByte('/')
		switch {
		case s.literal != "":
			b.WriteString(s.literal)
		case s.greedy:
			b.WriteString("{+}")
		default:
			b.WriteString("{}")
		}
	}
	return b.String()
}

// Routes returns the compiled routes in table order.
func (t *Table) Routes() []Route { return t.routes }

// Match finds the route for a request as API Gateway walks its resource
// tree: at each level a literal segment wins over a parameter, and a
// parameter over a greedy parameter. It returns the route and its path
// parameters.
func (t *Table) Match(method, path string) (Route, map[string]string, bool) {
	if !strings.HasPrefix(path, "/") {
		return Route{}, nil, false
	}
	var parts []string
	if path != "/" {
		parts = strings.Split(path[1:], "/")
	}
	best, bestRank := -1, ""
	for i, r := range t.routes {
		if r.Method != method {
			continue
		}
		if rank, ok := r.match(parts); ok && (best < 0 || rank > bestRank) {
			best, bestRank = i, rank
		}
	}
	if best < 0 {
		return Route{}, nil, false
	}
	r := t.routes[best]
	return r, r.params(parts), true
}

// Methods returns the resource (its path pattern) that API Gateway picks
// for path, as Match walks the tree whatever the method, and its methods,
// sorted: what a CORS preflight on that path allows.
func (t *Table) Methods(path string) (resource string, methods []string) {
	if !strings.HasPrefix(path, "/") {
		return "", nil
	}
	var parts []string
	if path != "/" {
		parts = strings.Split(path[1:], "/")
	}
	bestRank := ""
	for _, r := range t.routes {
		rank, ok := r.match(parts)
		switch {
		case !ok || rank < bestRank:
		case rank > bestRank || methods == nil:
			bestRank, resource, methods = rank, r.Path, []string{r.Method}
		default:
			methods = append(methods, r.Method)
		}
	}
	slices.Sort(methods)
	return resource, slices.Compact(methods)
}

// match reports whether r matches the path segments, and how specifically:
// one letter per level, 'c' for a literal, 'b' for a parameter, 'a' for a
// greedy tail, so that comparing ranks as strings compares level by level.
func (r Route) match(parts []string) (string, bool) {
	rank := make([]byte, 0, len(r.segments))
	for i, s := range r.segments {
		if s.greedy {
			return string(append(rank, 'a')), i < len(parts) && !hasEmpty(parts[i:])
		}
		if i >= len(parts) || parts[i] == "" {
			return "", false
		}
		if s.literal != "" {
			if parts[i] != s.literal {
				return "", false
			}
			rank = append(rank, 'c')
		} else {
			rank = append(rank, 'b')
		}
	}
	return string(rank), len(parts) == len(r.segments)
}

func hasEmpty(parts []string) bool {
	for _, p := range parts {
		if p == "" {
			return true
		}
	}
	return false
}

func (r Route) params(parts []string) map[string]string {
	var out map[string]string
	for i, s := range r.segments {
		if s.literal != "" {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		if s.greedy {
			out[s.param] = strings.Join(parts[i:], "/")
		} else {
			out[s.param] = parts[i]
		}
	}
	return out
}

// MayMatch reports whether the IAM-style pattern ("*" any run of
// characters, "?" any one character) matches the method ARN path
// ("GET/invoices/inv_1") of some request to r, where a parameter is one
// non-empty segment and a greedy parameter one or more. It is how a
// policy learns which other routes an Allow pattern also reaches, since
// API Gateway's "*" crosses "/". It explores the product of the two
// automata, so it is exact, not a guess from sample paths.
func (r Route) MayMatch(pattern string) bool {
	// The route as tokens: a literal byte, or a class that consumes one or
	// more bytes: oneSegment excludes '/', anyBytes does not.
	const (
		literal = iota
		oneSegment
		anyBytes
	)
	type token struct {
		kind int
		b    byte
	}
	var toks []token
	addLiteral := func(s string) {
		for i := 0; i < len(s); i++ {
			toks = append(toks, token{kind: literal, b: s[i]})
		}
	}
	addLiteral(r.Method + "/")
	for i, s := range r.segments {
		if i > 0 {
			addLiteral("/")
		}
		switch {
		case s.literal != "":
			addLiteral(s.literal)
		case s.greedy:
			toks = append(toks, token{kind: anyBytes})
		default:
			toks = append(toks, token{kind: oneSegment})
		}
	}
	// The alphabet: every byte either side names, '/', and one byte that
	// neither names, standing for all the others.
	alphabet := map[byte]bool{'/': true, 0: true}
	for i := 0; i < len(pattern); i++ {
		alphabet[pattern[i]] = true
	}
	for _, t := range toks {
		if t.kind == literal {
			alphabet[t.b] = true
		}
	}
	type state struct {
		p, t int
		used bool // the class token at t has consumed a byte
	}
	seen := map[state]bool{}
	var queue []state
	var push func(s state)
	push = func(s state) {
		// Epsilon moves: skip pattern stars; leave a class that has
		// consumed a byte.
		for {
			if seen[s] {
				return
			}
			seen[s] = true
			queue = append(queue, s)
			if s.p < len(pattern) && pattern[s.p] == '*' {
				push(state{s.p + 1, s.t, s.used})
			}
			if s.used {
				s = state{s.p, s.t + 1, false}
				continue
			}
			return
		}
	}
	push(state{0, 0, false})
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if s.p == len(pattern) && s.t == len(toks) {
			return true
		}
		if s.t == len(toks) || s.p == len(pattern) {
			continue
		}
		for c := range alphabet {
			var p int
			switch pattern[s.p] {
			case '*':
				p = s.p
			case '?':
				p = s.p + 1
			default:
				if pattern[s.p] != c {
					continue
				}
				p = s.p + 1
			}
			switch t := toks[s.t]; t.kind {
			case literal:
				if t.b == c {
					push(state{p, s.t + 1, false})
				}
			case oneSegment:
				if c != '/' {
					push(state{p, s.t, true})
				}
			case anyBytes:
				push(state{p, s.t, true})
			}
		}
	}
	return false
}
