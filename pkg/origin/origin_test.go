package origin

import "testing"

func TestNormal(t *testing.T) {
	good := map[string]string{
		"https://App.Example.com":      "https://app.example.com",
		"https://app.example.com:443/": "https://app.example.com",
		"http://localhost:8080":        "http://localhost:8080",
		"HTTP://[::1]:80":              "http://[::1]",
	}
	for in, want := range good {
		if got, err := Normal(in); err != nil || got != want {
			t.Errorf("Normal(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "*.example.com", "https://*.example.com", "ftp://example.com", "https://u@example.com",
		"https://example.com/path", "https://example.com?q", "https://example.com#", "https://example.com:0", "https://example.com:70000", "example.com"} {
		if got, err := Normal(bad); err == nil {
			t.Errorf("Normal(%q) = %q, want an error", bad, got)
		}
	}
}
