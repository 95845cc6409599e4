package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// banner is what `keyward dev` tells a person on stderr.
type banner struct {
	raw     string
	base    string            // http://host:port
	dataDir string            // the data directory it names
	exports map[string]string // export NAME=VALUE lines
	demoID  string            // the demo key's id, from the comment on its export line
	curls   []string          // the curl examples, continuation lines joined, in order
}

var (
	bannerHead = regexp.MustCompile(`(?m)^keyward local stack on (\S+) \(data in (.*)\)$`)
	exportLine = regexp.MustCompile(`^export ([A-Z_]+)=(\S+)(.*)$`)
	demoIDNote = regexp.MustCompile(`# invoices:read, (key_[0-9A-Za-z]{12})$`)
)

func parseBanner(t *testing.T, raw string) banner {
	t.Helper()
	b := banner{raw: raw, exports: map[string]string{}}
	m := bannerHead.FindStringSubmatch(raw)
	if m == nil {
		t.Fatalf("no banner head in:\n%s", raw)
	}
	b.base, b.dataDir = m[1], m[2]
	lines := strings.Split(raw, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if m := exportLine.FindStringSubmatch(line); m != nil {
			b.exports[m[1]] = m[2]
			if m := demoIDNote.FindStringSubmatch(m[3]); m != nil {
				b.demoID = m[1]
			}
			continue
		}
		if !strings.HasPrefix(line, "curl ") {
			continue
		}
		cmd := line
		for strings.HasSuffix(cmd, `\`) && i+1 < len(lines) {
			i++
			cmd = strings.TrimSuffix(cmd, `\`) + " " + strings.TrimSpace(lines[i])
		}
		b.curls = append(b.curls, cmd)
	}
	return b
}

// The token format of the README, written from its description: prefix,
// environment, 12 characters of id and 32 of secret in base62, and the
// CRC32 (IEEE) of everything before it in base62, zero-padded to 6.
const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func checksum(head string) string {
	sum := crc32.ChecksumIEEE([]byte(head))
	var out [6]byte
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = base62[sum%62]
		sum /= 62
	}
	return string(out[:])
}

// makeToken returns a well-formed token: right shape, right checksum.
func makeToken(prefix, env, id, secret string) string {
	head := prefix + "_" + env + "_" + id + secret
	return head + checksum(head)
}

func randomBase62(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = base62[int(b[i])%62]
	}
	return string(b)
}

// tokenParts splits a token as the README draws it.
func tokenParts(tok string) (prefix, env, id, secret string, err error) {
	if !tokenPattern.MatchString(tok) || len(tokenPattern.FindString(tok)) != len(tok) {
		return "", "", "", "", fmt.Errorf("%.12s… does not match the README's pattern", tok)
	}
	parts := strings.SplitN(tok, "_", 3)
	body := parts[2]
	return parts[0], parts[1], body[:12], body[12:44], nil
}

func validChecksum(tok string) error {
	if _, _, _, _, err := tokenParts(tok); err != nil {
		return err
	}
	if checksum(tok[:len(tok)-6]) != tok[len(tok)-6:] {
		return errors.New("checksum is not the README's base62 CRC32")
	}
	return nil
}

// curlRequest is what a curl command line of the banner asks for.
type curlRequest struct {
	method string
	url    string
	header http.Header
	body   string
	data   bool // -d given
}

// shellWords splits a command line as sh does for the quoting the banner
// uses: single quotes (literal), double quotes ($VAR expanded, \ escapes
// $ ` " \), bare words ($VAR and ${VAR} expanded, \ escapes the next
// character). An unset variable is an error rather than empty.
func shellWords(line string, env map[string]string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	expand := func(s string, i int) (int, error) {
		// s[i] == '$'
		j := i + 1
		var name string
		if j < len(s) && s[j] == '{' {
			end := strings.IndexByte(s[j:], '}')
			if end < 0 {
				return 0, fmt.Errorf("unterminated ${ in %q", s)
			}
			name, j = s[j+1:j+end], j+end+1
		} else {
			for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			name = s[i+1 : j]
		}
		if name == "" {
			cur.WriteByte('$')
			return i + 1, nil
		}
		v, ok := env[name]
		if !ok {
			return 0, fmt.Errorf("$%s is not set", name)
		}
		cur.WriteString(v)
		return j, nil
	}
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
			i++
		case c == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", line)
			}
			cur.WriteString(line[i+1 : i+1+end])
			inWord, i = true, i+end+2
		case c == '"':
			inWord = true
			i++
			for {
				if i >= len(line) {
					return nil, fmt.Errorf("unterminated \" in %q", line)
				}
				if line[i] == '"' {
					i++
					break
				}
				switch {
				case line[i] == '\\' && i+1 < len(line) && strings.IndexByte("$`\"\\", line[i+1]) >= 0:
					cur.WriteByte(line[i+1])
					i += 2
				case line[i] == '$':
					var err error
					if i, err = expand(line, i); err != nil {
						return nil, err
					}
				case line[i] == '`':
					return nil, fmt.Errorf("command substitution in %q", line)
				default:
					cur.WriteByte(line[i])
					i++
				}
			}
		case c == '\\':
			if i+1 >= len(line) {
				return nil, fmt.Errorf("trailing \\ in %q", line)
			}
			cur.WriteByte(line[i+1])
			inWord, i = true, i+2
		case c == '$':
			inWord = true
			var err error
			if i, err = expand(line, i); err != nil {
				return nil, err
			}
		case strings.IndexByte("|&;<>()`*?[#~", c) >= 0:
			return nil, fmt.Errorf("shell syntax %q the parser does not handle in %q", c, line)
		default:
			cur.WriteByte(c)
			inWord, i = true, i+1
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// parseCurl reads the curl flags the banner uses: -s, -X METHOD,
// -H 'Name: value', -d body, and one URL. Anything else is an error, so
// that a new flag in the banner is noticed rather than ignored.
func parseCurl(words []string) (curlRequest, error) {
	if len(words) == 0 || words[0] != "curl" {
		return curlRequest{}, fmt.Errorf("not a curl command: %q", words)
	}
	r := curlRequest{header: http.Header{}}
	arg := func(i int) (string, error) {
		if i+1 >= len(words) {
			return "", fmt.Errorf("%s needs an argument", words[i])
		}
		return words[i+1], nil
	}
	for i := 1; i < len(words); i++ {
		w := words[i]
		switch w {
		case "-s", "--silent":
		case "-X", "--request":
			v, err := arg(i)
			if err != nil {
				return r, err
			}
			r.method, i = v, i+1
		case "-H", "--header":
			v, err := arg(i)
			if err != nil {
				return r, err
			}
			name, value, ok := strings.Cut(v, ":")
			if !ok || name == "" || strings.TrimSpace(name) != name {
				return r, fmt.Errorf("header %q is not Name: value", v)
			}
			r.header.Add(name, strings.TrimLeft(value, " \t"))
			i++
		case "-d", "--data":
			v, err := arg(i)
			if err != nil {
				return r, err
			}
			if strings.HasPrefix(v, "@") {
				return r, fmt.Errorf("-d @file is not handled")
			}
			if r.data {
				r.body += "&"
			}
			r.body, r.data, i = r.body+v, true, i+1
		default:
			if strings.HasPrefix(w, "-") {
				return r, fmt.Errorf("curl option %q is not handled", w)
			}
			if r.url != "" {
				return r, fmt.Errorf("two URLs: %q and %q", r.url, w)
			}
			r.url = w
		}
	}
	if r.url == "" {
		return r, errors.New("no URL")
	}
	// curl's defaults: -d makes a POST of a form unless told otherwise.
	if r.method == "" {
		r.method = http.MethodGet
		if r.data {
			r.method = http.MethodPost
		}
	}
	if r.data && r.header.Get("Content-Type") == "" {
		r.header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return r, nil
}

func (c curlRequest) httpRequest() (*http.Request, error) {
	var body io.Reader
	if c.data {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, c.url, body)
	if err != nil {
		return nil, err
	}
	req.Header = c.header.Clone()
	return req, nil
}

// TestCurlParser checks the little shell and curl parser the banner test
// relies on, without a process.
func TestCurlParser(t *testing.T) {
	env := map[string]string{"KEY": "sk_live_x", "E": ""}
	line := `curl -s -X POST http://h:1/v1/keys -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d '{"a":"$KEY \"q\""}'`
	words, err := shellWords(line, env)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"curl", "-s", "-X", "POST", "http://h:1/v1/keys", "-H", "Authorization: Bearer sk_live_x",
		"-H", "Content-Type: application/json", "-d", `{"a":"$KEY \"q\""}`}
	if !equalJSON(words, want) {
		t.Fatalf("words %q\nwant  %q", words, want)
	}
	c, err := parseCurl(words)
	if err != nil {
		t.Fatal(err)
	}
	if c.method != "POST" || c.url != "http://h:1/v1/keys" || c.header.Get("Authorization") != "Bearer sk_live_x" ||
		c.header.Get("Content-Type") != "application/json" || c.body != `{"a":"$KEY \"q\""}` {
		t.Errorf("parsed %+v", c)
	}

	for in, want := range map[string][]string{
		`a "b c" 'd e'`:         {"a", "b c", "d e"},
		`a"b"'c'd`:              {"abcd"},
		`x "" ''`:               {"x", "", ""},
		`"${KEY}" $KEY\ y`:      {"sk_live_x", "sk_live_x y"},
		`"a\"b\\c\$d\n"`:        {`a"b\c$d\n`},
		`'$KEY "no expansion"'`: {`$KEY "no expansion"`},
		`v=$E.`:                 {"v=."},
		`  spaced   out  `:      {"spaced", "out"},
	} {
		got, err := shellWords(in, env)
		if err != nil || !equalJSON(got, want) {
			t.Errorf("shellWords(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`"open`, `'open`, `$UNSET`, "a | b", "`cmd`", `x\`} {
		if got, err := shellWords(bad, env); err == nil {
			t.Errorf("shellWords(%s) = %q, want an error", bad, got)
		}
	}

	c, err = parseCurl([]string{"curl", "http://h/x", "-d", "a=1", "-d", "b=2"})
	if err != nil || c.method != "POST" || c.body != "a=1&b=2" || c.header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Errorf("curl -d defaults: %+v, %v", c, err)
	}
	c, err = parseCurl([]string{"curl", "http://h/x"})
	if err != nil || c.method != "GET" || c.data {
		t.Errorf("plain curl: %+v, %v", c, err)
	}
	for _, bad := range [][]string{
		{"curl"}, {"curl", "-X"}, {"curl", "-k", "http://h"}, {"curl", "http://a", "http://b"},
		{"curl", "-H", "NoColon", "http://h"}, {"wget", "http://h"}, {"curl", "-d", "@f", "http://h"},
	} {
		if c, err := parseCurl(bad); err == nil {
			t.Errorf("parseCurl(%q) = %+v, want an error", bad, c)
		}
	}
}

// TestTokenFormat checks the README's token description, as the suite
// reimplements it, against a token of the shipped format.
func TestTokenFormat(t *testing.T) {
	tok := makeToken("sk", "live", "AbCdEfGhIjKl", "0123456789abcdefghijklmnopqrstuv")
	if len(tok) != len("sk_live_")+50 || validChecksum(tok) != nil {
		t.Fatalf("makeToken: %q: %v", tok, validChecksum(tok))
	}
	bad := tok[:len(tok)-1] + string(base62[(strings.IndexByte(base62, tok[len(tok)-1])+1)%62])
	if validChecksum(bad) == nil {
		t.Errorf("a changed checksum still validates")
	}
}
