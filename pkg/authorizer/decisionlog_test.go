package authorizer

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAppendString: the decision log's strings are JSON strings that
// decode to what encoding/json would write, invalid UTF-8 replaced byte
// by byte.
func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "line\nbreak\ttab\rreturn", "\x00\x01\x1f\x7f",
		"ünïcödé ✓", "sep\u2028par\u2029", "bad \xff\xfe utf-8", "half \xe2\x82", "</script>&"} {
		b := appendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q: %s is not a JSON string: %v", s, b, err)
		}
		var want string
		ref, _ := json.Marshal(s)
		_ = json.Unmarshal(ref, &want)
		if got != want {
			t.Errorf("%q: decodes to %q, want %q as encoding/json writes it", s, got, want)
		}
		if strings.ContainsAny(string(b), "\n\r\u2028\u2029") {
			t.Errorf("%q: %s holds a line break", s, b)
		}
	}
}
