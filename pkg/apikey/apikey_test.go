package apikey

import (
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

func mustFormat(t testing.TB, prefix string) Format {
	t.Helper()
	f, err := NewFormat(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestGenerateParseRoundTrip(t *testing.T) {
	for _, prefix := range []string{"sk", "acme", "abcdefgh"} {
		f := mustFormat(t, prefix)
		for _, env := range []Environment{Live, Test} {
			tok, err := f.Generate(env)
			if err != nil {
				t.Fatal(err)
			}
			s := tok.Plain()
			if want := len(prefix) + 1 + 4 + 1 + 50; len(s) != want {
				t.Fatalf("token %d chars, want %d", len(s), want)
			}
			if !strings.HasPrefix(s, prefix+"_"+string(env)+"_") {
				t.Fatalf("token %q lacks its prefix", s)
			}
			got, err := f.Parse(s)
			if err != nil {
				t.Fatalf("Parse(generated): %v", err)
			}
			if got != tok || got.ID() != s[len(prefix)+6:len(prefix)+18] || got.Environment() != env || got.Prefix() != prefix {
				t.Fatalf("Parse = %+v, want %+v", got, tok)
			}
			// The checksum is CRC32 of the rest, as the package promises.
			sum := crc32.ChecksumIEEE([]byte(s[:len(s)-6]))
			var dec uint64
			for _, c := range s[len(s)-6:] {
				dec = dec*62 + uint64(strings.IndexRune(alphabet, c))
			}
			if uint64(sum) != dec {
				t.Fatalf("checksum %d, want %d", dec, sum)
			}
			if !patternRE.MatchString(s) {
				t.Fatalf("Pattern does not match %q", s)
			}
		}
	}
}

func TestDisplayNeverShowsSecret(t *testing.T) {
	tok, err := mustFormat(t, "sk").Generate(Live)
	if err != nil {
		t.Fatal(err)
	}
	s := tok.Plain()
	want := "sk_live_…" + s[len(s)-4:]
	if tok.Display() != want || tok.String() != want || tok.Last4() != s[len(s)-4:] {
		t.Fatalf("Display %q String %q, want %q", tok.Display(), tok.String(), want)
	}
}

func TestParseRejects(t *testing.T) {
	f := mustFormat(t, "sk")
	tok, err := f.Generate(Live)
	if err != nil {
		t.Fatal(err)
	}
	good := tok.Plain()
	flip := func(i int) string {
		b := []byte(good)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	other, _ := mustFormat(t, "pk").Generate(Live)
	cases := []struct {
		name, in string
		want     error
	}{
		{"empty", "", ErrMalformed},
		{"too long", good + "x", ErrMalformed},
		{"far too long", strings.Repeat("a", 10000), ErrTooLong},
		{"short", good[:len(good)-1], ErrMalformed},
		{"upper prefix", "SK" + good[2:], ErrPrefix},
		{"prefix too short", "k" + good[2:], ErrMalformed},
		{"unknown env", strings.Replace(good, "_live_", "_prod_", 1), ErrEnvironment},
		{"missing separator", strings.Replace(good, "_live_", "_live-", 1), ErrMalformed},
		{"id typo", flip(10), ErrChecksum},
		{"secret typo", flip(30), ErrChecksum},
		{"checksum typo", flip(len(good) - 1), ErrChecksum},
		{"non base62", good[:20] + "-" + good[21:], ErrMalformed},
		{"non ascii", good[:20] + "é" + good[22:], ErrMalformed},
		{"nul", good[:20] + "\x00" + good[21:], ErrMalformed},
		{"space", " " + good[1:], ErrPrefix},
	}
	for _, c := range cases {
		if _, err := f.Parse(c.in); !errors.Is(err, c.want) {
			t.Errorf("%s: Parse error %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := (Format{}).Parse(good); err == nil {
		t.Error("zero Format accepted a token")
	}
	// Another valid prefix parses as such: keys keep the prefix they were
	// made with when a deployment changes its own.
	if tok, err := f.Parse(other.Plain()); err != nil || tok.Prefix() != "pk" || tok.ID() != other.ID() {
		t.Errorf("a token of another prefix: %v %q", err, tok.Prefix())
	}
}

func TestNewFormat(t *testing.T) {
	for _, bad := range []string{"", "s", "abcdefghi", "Sk", "s_", "s1", "ké"} {
		if _, err := NewFormat(bad); err == nil {
			t.Errorf("NewFormat(%q) accepted", bad)
		}
	}
	if _, err := mustFormat(t, "sk").Generate("prod"); !errors.Is(err, ErrEnvironment) {
		t.Errorf("Generate(prod) error %v", err)
	}
	if _, err := (Format{}).Generate(Live); err == nil {
		t.Error("zero Format generated a token")
	}
}

// TestRandomnessIsUniform guards the rejection sampling: a biased mapping
// (for example v%62) makes the first characters about twice as likely.
func TestRandomnessIsUniform(t *testing.T) {
	f := mustFormat(t, "sk")
	var counts [62]int
	n := 0
	for range 4000 {
		tok, err := f.Generate(Test)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []byte(tok.Plain()[8 : 8+IDLen+SecretLen]) {
			counts[digit[c]]++
			n++
		}
	}
	expected := float64(n) / 62
	for i, c := range counts {
		if float64(c) < expected*0.85 || float64(c) > expected*1.15 {
			t.Fatalf("character %q drawn %d times, expected about %.0f", alphabet[i], c, expected)
		}
	}
	seen := map[string]bool{}
	for range 1000 {
		tok, _ := f.Generate(Live)
		if seen[tok.ID()] {
			t.Fatal("duplicate id in 1000 tokens")
		}
		seen[tok.ID()] = true
	}
}

func TestFindAll(t *testing.T) {
	f := mustFormat(t, "sk")
	a, _ := f.Generate(Live)
	b, _ := mustFormat(t, "acme").Generate(Test)
	text := "config: KEY=" + a.Plain() + "\nother=\"" + b.Plain() + "\" sk_live_short x" + a.Plain() + "y"
	got := FindAll(text)
	if len(got) != 2 || got[0] != a.Plain() || got[1] != b.Plain() {
		t.Fatalf("FindAll = %q", got)
	}
}

func TestPublicID(t *testing.T) {
	tok, _ := mustFormat(t, "sk").Generate(Live)
	id, ok := ParsePublicID(PublicID(tok.ID()))
	if !ok || id != tok.ID() {
		t.Fatalf("ParsePublicID(PublicID(%q)) = %q, %v", tok.ID(), id, ok)
	}
	for _, bad := range []string{"", "key_", "key_abc", "kez_" + tok.ID(), "key_" + tok.ID() + "x", "key_" + tok.ID()[:11] + "-"} {
		if _, ok := ParsePublicID(bad); ok {
			t.Errorf("ParsePublicID(%q) accepted", bad)
		}
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	f := mustFormat(t, "sk")
	tok, _ := f.Generate(Live)
	s := tok.Plain()
	if n := testing.AllocsPerRun(100, func() { _, _ = f.Parse(s) }); n != 0 {
		t.Fatalf("Parse allocates %v times", n)
	}
}

func FuzzParse(f *testing.F) {
	format := mustFormat(f, "sk")
	tok, _ := format.Generate(Live)
	f.Add(tok.Plain())
	f.Add("")
	f.Add("sk_live_")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := format.Parse(s)
		if err != nil {
			if tok != (Token{}) {
				t.Fatalf("error %v with a non-zero token", err)
			}
			return
		}
		if tok.Plain() != s || len(s) > MaxLen || !patternRE.MatchString(s) {
			t.Fatalf("accepted %q", s)
		}
		if uint64(crc32.ChecksumIEEE([]byte(s[:len(s)-6]))) != decode62(s[len(s)-6:]) {
			t.Fatalf("accepted a wrong checksum: %q", s)
		}
	})
}

func decode62(s string) uint64 {
	var v uint64
	for i := 0; i < len(s); i++ {
		v = v*62 + uint64(digit[s[i]])
	}
	return v
}

func BenchmarkParse(b *testing.B) {
	f := mustFormat(b, "sk")
	tok, _ := f.Generate(Live)
	s := tok.Plain()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseBadChecksum(b *testing.B) {
	f := mustFormat(b, "sk")
	tok, _ := f.Generate(Live)
	s := tok.Plain()
	s = s[:len(s)-1] + string(alphabet[(int(digit[s[len(s)-1]])+1)%62])
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Parse(s); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkGenerate(b *testing.B) {
	f := mustFormat(b, "sk")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Generate(Live); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRandomString(t *testing.T) {
	a, err := RandomString(20)
	if err != nil || len(a) != 20 {
		t.Fatalf("RandomString(20) = %q, %v", a, err)
	}
	for _, c := range []byte(a) {
		if digit[c] == 0xFF {
			t.Fatalf("RandomString produced %q", c)
		}
	}
	if b, _ := RandomString(20); a == b {
		t.Fatal("two random strings are equal")
	}
}
