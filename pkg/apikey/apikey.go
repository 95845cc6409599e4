// Package apikey defines keyward's token format:
//
//	<prefix>_<env>_<id><secret><checksum>
//
// prefix is 2 to 8 lowercase letters (default "keyward"), env is "live" or
// "test", id is 12 base62 characters (the key's public identifier), secret
// is 32 base62 characters (about 190 bits) and checksum is the CRC32 (IEEE)
// of everything before it in base62, zero-padded to 6 characters. The fixed
// shape and checksum let secret scanners find leaked keys with Pattern and
// let Parse reject typos and garbage without any I/O.
package apikey

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"regexp"
	"unsafe"
)

// Environment separates live data from test data; keys of one never
// authorize requests in the other.
type Environment string

const (
	Live Environment = "live"
	Test Environment = "test"
)

const (
	// DefaultPrefix is the prefix of tokens when none is configured.
	DefaultPrefix = "keyward"
	// IDLen, SecretLen and ChecksumLen are the lengths of the token parts.
	IDLen       = 12
	SecretLen   = 32
	ChecksumLen = 6
	bodyLen     = IDLen + SecretLen + ChecksumLen
	envLen      = 4 // "live" and "test"
	// MaxLen is the length of the longest token: Parse refuses anything
	// longer before doing any other work.
	MaxLen = 8 + 1 + envLen + 1 + bodyLen
	minLen = 2 + 1 + envLen + 1 + bodyLen
)

// Pattern matches every token of any prefix, for secret scanners; group 1
// is the token. A token counts wherever a character other than [0-9A-Za-z],
// or the start or end of the text, is on each side of it. \b alone is not
// enough: "_" is a word character, so \b misses API_KEY_<token> and
// _<token>_, and RE2 has no lookbehind to test the character before a token
// without matching it; an adjacent "_" is matched instead, outside the
// group. Documented in the README and docs/scanners; keep them in step.
const Pattern = `(?:\b|_)([a-z]{2,8}_(?:live|test)_[0-9A-Za-z]{50})(?:\b|_)`

var patternRE = regexp.MustCompile(Pattern)

// FindAll returns every substring of text that looks like a token, checksum
// unchecked, as a secret scanner would.
func FindAll(text string) []string {
	var found []string
	for rest := text; ; {
		m := patternRE.FindStringSubmatchIndex(rest)
		if m == nil {
			return found
		}
		found = append(found, rest[m[2]:m[3]])
		// Go on from the end of the token, not of the match: the "_" that
		// ended this token may start the next one (<token>_<token>). The
		// text there never starts with a letter or digit, so the fresh
		// start of text that \b sees cannot make a token out of a longer
		// run.
		rest = rest[m[3]:]
	}
}

const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// digit maps a byte to its base62 value, or 0xFF for bytes outside the
// alphabet.
var digit = func() (d [256]byte) {
	for i := range d {
		d[i] = 0xFF
	}
	for i := 0; i < len(alphabet); i++ {
		d[alphabet[i]] = byte(i)
	}
	return d
}()

// Parse errors. They say why a token was refused, for logs and metrics; an
// API caller must never be told which one applied.
var (
	ErrTooLong     = errors.New("apikey: token too long")
	ErrMalformed   = errors.New("apikey: malformed token")
	ErrPrefix      = errors.New("apikey: wrong prefix")
	ErrEnvironment = errors.New("apikey: unknown environment")
	ErrChecksum    = errors.New("apikey: checksum mismatch")
)

// Token is a parsed token. Its String method shows only the display form,
// so a Token that reaches a log line by accident does not leak the secret.
type Token struct {
	plain  string
	prefix string
	env    Environment
}

// ID is the key's public identifier (without the "key_" of the API).
func (t Token) ID() string {
	start := len(t.prefix) + 1 + envLen + 1
	return t.plain[start : start+IDLen]
}

// Environment is the token's environment.
func (t Token) Environment() Environment { return t.env }

// Prefix is the token's prefix.
func (t Token) Prefix() string { return t.prefix }

// Last4 is the last four characters of the token, for listings.
func (t Token) Last4() string { return t.plain[len(t.plain)-4:] }

// Display is the form listings show: prefix, environment and last four.
func (t Token) Display() string { return Display(t.prefix, string(t.env), t.Last4()) }

// String returns the display form, never the secret.
func (t Token) String() string { return t.Display() }

// Plain returns the whole token. It exists to hash the token and to hand it
// to its owner once, in the create or rotate response; nothing else should
// call it.
func (t Token) Plain() string { return t.plain }

// Display formats the listing form of a token from its stored parts.
func Display(prefix, env, last4 string) string { return prefix + "_" + env + "_…" + last4 }

// Format generates and parses tokens of one prefix.
type Format struct{ prefix string }

// NewFormat returns the format for prefix, which must be 2 to 8 lowercase
// ASCII letters.
func NewFormat(prefix string) (Format, error) {
	if len(prefix) < 2 || len(prefix) > 8 {
		return Format{}, fmt.Errorf("apikey: prefix %q must be 2 to 8 letters", prefix)
	}
	for i := 0; i < len(prefix); i++ {
		if prefix[i] < 'a' || prefix[i] > 'z' {
			return Format{}, fmt.Errorf("apikey: prefix %q must be lowercase letters a-z", prefix)
		}
	}
	return Format{prefix: prefix}, nil
}

// Prefix is the format's prefix.
func (f Format) Prefix() string { return f.prefix }

// Generate returns a new token with a random id and secret from crypto/rand.
func (f Format) Generate(env Environment) (Token, error) {
	if env != Live && env != Test {
		return Token{}, fmt.Errorf("apikey: environment %q: %w", env, ErrEnvironment)
	}
	if f.prefix == "" {
		return Token{}, errors.New("apikey: zero Format; use NewFormat")
	}
	head := len(f.prefix) + 1 + envLen + 1
	buf := make([]byte, head+bodyLen)
	copy(buf, f.prefix)
	buf[len(f.prefix)] = '_'
	copy(buf[len(f.prefix)+1:], env)
	buf[head-1] = '_'
	if err := randomBase62(buf[head : head+IDLen+SecretLen]); err != nil {
		return Token{}, err
	}
	sum := crc32.ChecksumIEEE(buf[:head+IDLen+SecretLen])
	for i := len(buf) - 1; i >= head+IDLen+SecretLen; i-- {
		buf[i] = alphabet[sum%62]
		sum /= 62
	}
	return Token{plain: string(buf), prefix: f.prefix, env: env}, nil
}

// randomBase62 fills dst with uniformly random base62 characters: six
// random bits per character, rejecting 62 and 63 so no character is more
// likely than another.
func randomBase62(dst []byte) error {
	var pool [64]byte
	used := len(pool)
	for i := 0; i < len(dst); {
		if used == len(pool) {
			if _, err := rand.Read(pool[:]); err != nil {
				return fmt.Errorf("apikey: reading randomness: %w", err)
			}
			used = 0
		}
		v := pool[used] & 63
		used++
		if v < 62 {
			dst[i] = alphabet[v]
			i++
		}
	}
	return nil
}

// Parse checks s against the format without any I/O and without
// allocating. It refuses over-long input before looking at it.
func (f Format) Parse(s string) (Token, error) {
	if len(s) > MaxLen {
		return Token{}, ErrTooLong
	}
	if len(s) < minLen || f.prefix == "" {
		return Token{}, ErrMalformed
	}
	// Any valid prefix: a key keeps the prefix it was made with when the
	// deployment's changes, and the key itself (its stored prefix and its
	// HMAC over the whole token) decides whether it is one.
	p := len(s) - (1 + envLen + 1 + bodyLen)
	if p < 2 || p > 8 || s[p] != '_' {
		return Token{}, ErrMalformed
	}
	for i := 0; i < p; i++ {
		if s[i] < 'a' || s[i] > 'z' {
			return Token{}, ErrPrefix
		}
	}
	var env Environment
	switch s[p+1 : p+1+envLen] {
	case "live":
		env = Live
	case "test":
		env = Test
	default:
		return Token{}, ErrEnvironment
	}
	head := p + 1 + envLen + 1
	if s[head-1] != '_' {
		return Token{}, ErrMalformed
	}
	var want uint64
	for i := head; i < len(s); i++ {
		d := digit[s[i]]
		if d == 0xFF {
			return Token{}, ErrMalformed
		}
		if i >= len(s)-ChecksumLen {
			want = want*62 + uint64(d)
		}
	}
	if uint64(crc32String(s[:len(s)-ChecksumLen])) != want {
		return Token{}, ErrChecksum
	}
	return Token{plain: s, prefix: s[:p], env: env}, nil
}

// crc32String is crc32.ChecksumIEEE over a string's bytes in place:
// converting the string to a []byte would copy and allocate on every Parse,
// and a byte-at-a-time table loop is more than twice as slow as the package's
// sliced implementation. crc32 only reads its input.
func crc32String(s string) uint32 {
	return crc32.ChecksumIEEE(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// RandomString returns n base62 characters from crypto/rand, for
// identifiers that are not tokens (audit entries, request ids).
func RandomString(n int) (string, error) {
	b := make([]byte, n)
	if err := randomBase62(b); err != nil {
		return "", err
	}
	return string(b), nil
}

// PublicID is the API form of a key id.
func PublicID(id string) string { return "key_" + id }

// ParsePublicID returns the key id inside an API key id ("key_" and 12
// base62 characters).
func ParsePublicID(s string) (string, bool) {
	if len(s) != 4+IDLen || s[:4] != "key_" {
		return "", false
	}
	for i := 4; i < len(s); i++ {
		if digit[s[i]] == 0xFF {
			return "", false
		}
	}
	return s[4:], true
}
