// Package scope defines what a key's scopes mean. A scope is
// "resource:action" (invoices:read, customers:write), "resource:*" (every
// action on the resource) or "*" (everything). Actions are ordered
// read < write < admin: a key that may write a resource may also read it,
// and one that may administer it may also write and read it, so that
// granting write never produces a key that cannot see what it wrote.
// Actions outside that ladder (messaging:send) grant only themselves.
package scope

import (
	"fmt"
	"slices"
	"strings"
)

// All is the scope that grants everything.
const All = "*"

// rank orders the laddered actions; 0 means "not on the ladder".
func rank(action string) int {
	switch action {
	case "read":
		return 1
	case "write":
		return 2
	case "admin":
		return 3
	}
	return 0
}

// Validate checks one scope's syntax: lowercase resource and action of
// letters, digits, '_' and '-', starting with a letter, each at most 64
// characters; or "resource:*"; or "*".
func Validate(s string) error {
	if s == All {
		return nil
	}
	resource, action, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("scope %q is not resource:action", s)
	}
	if !validName(resource) {
		return fmt.Errorf("scope %q: resource must be lowercase letters, digits, '_' or '-'", s)
	}
	if action != "*" && !validName(action) {
		return fmt.Errorf("scope %q: action must be '*' or lowercase letters, digits, '_' or '-'", s)
	}
	return nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Grants reports whether the held scope grants the needed one. needed is
// a concrete "resource:action"; held may use wildcards.
func Grants(held, needed string) bool {
	if held == All || held == needed {
		return true
	}
	hr, ha, ok := strings.Cut(held, ":")
	if !ok {
		return false
	}
	nr, na, ok := strings.Cut(needed, ":")
	if !ok || hr != nr {
		return false
	}
	if ha == "*" {
		return true
	}
	h, n := rank(ha), rank(na)
	return h != 0 && n != 0 && h >= n
}

// AnyGrants reports whether any of the held scopes grants needed.
func AnyGrants(held []string, needed string) bool {
	for _, h := range held {
		if Grants(h, needed) {
			return true
		}
	}
	return false
}

// Covers reports whether the held scopes grant everything the wanted
// scopes grant, so that a caller holding held may hand wanted to a new key
// without widening its own power. A wildcard is covered only by the same
// or a wider wildcard.
func Covers(held []string, wanted string) bool {
	if wanted == All {
		for _, h := range held {
			if h == All {
				return true
			}
		}
		return false
	}
	resource, action, _ := strings.Cut(wanted, ":")
	if action == "*" {
		for _, h := range held {
			if h == All || h == resource+":*" {
				return true
			}
		}
		return false
	}
	return AnyGrants(held, wanted)
}

// Read is the one action a browser key holds without allow_browser_writes.
const Read = "read"

// ReadOnly returns the reading that the held scopes grant: resource:read
// for each resource held with a laddered action or "*". The security
// model discourages browser keys that can write or send, so a browser
// key's other powers count only when its owner allowed them. "*" and
// actions off the ladder (messaging:send) imply no reading.
func ReadOnly(held []string) []string {
	var out []string
	for _, h := range held {
		resource, action, ok := strings.Cut(h, ":")
		if ok && (action == "*" || rank(action) > 0) && !slices.Contains(out, resource+":"+Read) {
			out = append(out, resource+":"+Read)
		}
	}
	return out
}

// OnlyReads reports whether every held scope is resource:read.
func OnlyReads(held []string) bool {
	for _, h := range held {
		if _, action, _ := strings.Cut(h, ":"); action != Read {
			return false
		}
	}
	return true
}
