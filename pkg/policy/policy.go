// Package policy builds and evaluates the IAM policies a Lambda authorizer
// returns to API Gateway, with API Gateway's rules: a statement's resource
// is a method ARN pattern in which "*" matches any run of characters
// (including "/") and "?" any one character, and an explicit Deny wins over
// any Allow.
package policy

import (
	"fmt"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

// Action is the one action authorizer policies grant or deny.
const Action = "execute-api:Invoke"

// Version is the IAM policy language version.
const Version = "2012-10-17"

// MethodARN is the ARN API Gateway passes to the authorizer:
// arn:aws:execute-api:{region}:{account}:{api}/{stage}/{METHOD}/{path}.
type MethodARN struct {
	Prefix string // through the stage and its slash: "arn:...:{api}/{stage}/"
	Method string
	Path   string // the request path without its leading slash
}

// ParseMethodARN splits a method ARN. It allocates nothing: it runs on
// every authorization.
func ParseMethodARN(s string) (MethodARN, error) {
	// Five colons end "arn:partition:execute-api:region:account:".
	resource := 0
	for range 5 {
		i := strings.IndexByte(s[resource:], ':')
		if i < 0 {
			return MethodARN{}, fmt.Errorf("policy: %q is not an execute-api ARN", s)
		}
		resource += i + 1
	}
	if !strings.HasPrefix(s, "arn:") || !strings.Contains(s[:resource], ":execute-api:") {
		return MethodARN{}, fmt.Errorf("policy: %q is not an execute-api ARN", s)
	}
	api := strings.IndexByte(s[resource:], '/')
	if api <= 0 {
		return MethodARN{}, fmt.Errorf("policy: %q lacks api, stage or method", s)
	}
	stageStart := resource + api + 1
	stage := strings.IndexByte(s[stageStart:], '/')
	if stage <= 0 {
		return MethodARN{}, fmt.Errorf("policy: %q lacks api, stage or method", s)
	}
	prefixEnd := stageStart + stage + 1
	method, path, _ := strings.Cut(s[prefixEnd:], "/")
	if method == "" {
		return MethodARN{}, fmt.Errorf("policy: %q lacks api, stage or method", s)
	}
	return MethodARN{Prefix: s[:prefixEnd], Method: method, Path: path}, nil
}

// String formats the ARN.
func (m MethodARN) String() string { return m.Prefix + m.Method + "/" + m.Path }

// Document builds a policy allowing the allow patterns and denying the
// deny patterns; an empty allow list yields a policy that only denies.
func Document(allow, deny []string) events.APIGatewayCustomAuthorizerPolicy {
	doc := events.APIGatewayCustomAuthorizerPolicy{Version: Version}
	if len(allow) > 0 {
		doc.Statement = append(doc.Statement, events.IAMPolicyStatement{Action: []string{Action}, Effect: "Allow", Resource: allow})
	}
	if len(deny) > 0 {
		doc.Statement = append(doc.Statement, events.IAMPolicyStatement{Action: []string{Action}, Effect: "Deny", Resource: deny})
	}
	return doc
}

// Allows reports whether doc lets a request with this method ARN through:
// some Allow statement matches and no Deny statement does.
func Allows(doc events.APIGatewayCustomAuthorizerPolicy, arn string) bool {
	allowed := false
	for _, st := range doc.Statement {
		if !matchesAny(st.Action, Action) || !matchesAny(st.Resource, arn) {
			continue
		}
		switch st.Effect {
		case "Deny":
			return false
		case "Allow":
			allowed = true
		}
	}
	return allowed
}

func matchesAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if Match(p, s) {
			return true
		}
	}
	return false
}

// Match reports whether s matches the IAM-style pattern: "*" matches any
// run of characters, "?" any one character. It runs in linear time and
// constant space: on a mismatch it backtracks only to the latest "*".
func Match(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
