package policy

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"GET/invoices", "GET/invoices", true},
		{"GET/invoices", "GET/invoices/1", false},
		{"GET/invoices/*", "GET/invoices/1", true},
		{"GET/invoices/*", "GET/invoices/1/refunds", true}, // "*" crosses "/"
		{"GET/invoices/*", "GET/invoices/", true},
		{"GET/invoices/*/refunds", "GET/invoices/1/refunds", true},
		{"GET/invoices/*/refunds", "GET/invoices/1/refunds/2", false},
		{"*", "anything/at/all", true},
		{"G?T/x", "GET/x", true},
		{"G?T/x", "GT/x", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"", "", true},
		{"", "a", false},
		{"**", "", true},
	}
	for _, c := range cases {
		if got := Match(c.pattern, c.s); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
	// Linear, not exponential, on adversarial input.
	long := strings.Repeat("a", 5000)
	if Match(strings.Repeat("*a", 50)+"b", long) {
		t.Error("matched")
	}
}

func TestParseMethodARN(t *testing.T) {
	m, err := ParseMethodARN("arn:aws:execute-api:eu-west-1:111122223333:abc123/prod/GET/invoices/inv_1")
	if err != nil {
		t.Fatal(err)
	}
	if m.Prefix != "arn:aws:execute-api:eu-west-1:111122223333:abc123/prod/" || m.Method != "GET" || m.Path != "invoices/inv_1" {
		t.Fatalf("%+v", m)
	}
	if m.String() != "arn:aws:execute-api:eu-west-1:111122223333:abc123/prod/GET/invoices/inv_1" {
		t.Fatal(m.String())
	}
	root, err := ParseMethodARN("arn:aws:execute-api:eu-west-1:111122223333:abc123/prod/GET/")
	if err != nil || root.Path != "" {
		t.Fatalf("root: %+v %v", root, err)
	}
	for _, bad := range []string{"", "arn:aws:s3:::bucket", "arn:aws:execute-api:r:a:api", "arn:aws:execute-api:r:a:api/stage", "arn:aws:execute-api:r:a:/stage/GET/x"} {
		if _, err := ParseMethodARN(bad); err == nil {
			t.Errorf("ParseMethodARN(%q) accepted", bad)
		}
	}
}

func TestAllows(t *testing.T) {
	const p = "arn:aws:execute-api:r:1:api/prod/"
	doc := Document([]string{p + "GET/invoices", p + "GET/invoices/*"}, []string{p + "GET/invoices/*/refunds"})
	for arn, want := range map[string]bool{
		p + "GET/invoices":                               true,
		p + "GET/invoices/1":                             true,
		p + "GET/invoices/1/refunds":                     false, // explicit deny wins
		p + "POST/invoices":                              false, // nothing allows it
		"arn:aws:execute-api:r:1:api/other/GET/invoices": false,
	} {
		if got := Allows(doc, arn); got != want {
			t.Errorf("Allows(%s) = %v, want %v", arn, got, want)
		}
	}
	if Allows(Document(nil, []string{p + "*"}), p+"GET/invoices") {
		t.Error("a deny-only policy allowed")
	}
	other := Document([]string{p + "*"}, nil)
	other.Statement[0].Action = []string{"execute-api:ManageConnections"}
	if Allows(other, p+"GET/x") {
		t.Error("a statement for another action allowed Invoke")
	}
}
