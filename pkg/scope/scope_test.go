package scope

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, ok := range []string{"*", "invoices:read", "customers:write", "keys:*", "messaging:send", "a-b_c:x1"} {
		if err := Validate(ok); err != nil {
			t.Errorf("Validate(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "invoices", ":read", "invoices:", "Invoices:read", "invoices:Read", "1nv:read",
		"invoices:read:x", "*:read", "invoices:re*", "inv oices:read", "invoices:read ", "**"} {
		if err := Validate(bad); err == nil {
			t.Errorf("Validate(%q) accepted", bad)
		}
	}
}

func TestGrants(t *testing.T) {
	cases := []struct {
		held, needed string
		want         bool
	}{
		{"invoices:read", "invoices:read", true},
		{"invoices:write", "invoices:read", true}, // write implies read
		{"invoices:read", "invoices:write", false},
		{"invoices:admin", "invoices:write", true},
		{"invoices:write", "invoices:admin", false},
		{"invoices:*", "invoices:write", true},
		{"invoices:*", "customers:read", false},
		{"*", "customers:write", true},
		{"invoices:write", "customers:read", false},
		{"messaging:send", "messaging:send", true},
		{"messaging:admin", "messaging:send", false}, // off-ladder actions grant only themselves
		{"messaging:send", "messaging:read", false},
		{"keys:admin", "keys:read", true},
	}
	for _, c := range cases {
		if got := Grants(c.held, c.needed); got != c.want {
			t.Errorf("Grants(%q, %q) = %v, want %v", c.held, c.needed, got, c.want)
		}
	}
}

func TestCovers(t *testing.T) {
	cases := []struct {
		held   []string
		wanted string
		want   bool
	}{
		{[]string{"keys:write"}, "keys:read", true},
		{[]string{"keys:write"}, "keys:admin", false},
		{[]string{"keys:admin"}, "keys:*", false}, // a wildcard may grow with new actions
		{[]string{"keys:*"}, "keys:*", true},
		{[]string{"keys:*"}, "*", false},
		{[]string{"*"}, "*", true},
		{[]string{"*"}, "invoices:*", true},
		{[]string{"invoices:read", "customers:write"}, "customers:read", true},
	}
	for _, c := range cases {
		if got := Covers(c.held, c.wanted); got != c.want {
			t.Errorf("Covers(%v, %q) = %v, want %v", c.held, c.wanted, got, c.want)
		}
	}
}

func TestReadOnly(t *testing.T) {
	got := ReadOnly([]string{"invoices:read", "invoices:write", "customers:*", "*", "messaging:send", "keys:admin", "customers:read"})
	if strings.Join(got, " ") != "invoices:read customers:read keys:read" {
		t.Errorf("ReadOnly = %q", got)
	}
	if !OnlyReads([]string{"a:read", "b:read"}) || OnlyReads([]string{"a:read", "b:write"}) || OnlyReads([]string{"*"}) {
		t.Error("OnlyReads")
	}
	if ReadOnly(nil) != nil {
		t.Error("ReadOnly(nil) is not empty")
	}
}
