package console

import (
	"net/http"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/lifecycle"
)

// SafeReturn is where a sign-in may return to.
var SafeReturn = safeReturn

// SessionCookieName is the session cookie's name.
const SessionCookieName = sessionCookie

// TestSession describes a signed-in member; zero times mean now.
type TestSession struct {
	Tenant, Member         string
	Role                   lifecycle.Role
	AuthTime, Issued, Seen time.Time
}

// SessionCookie mints the sealed session cookie the callback would set
// after a sign-in, and returns it with the session's CSRF token: the
// sign-in itself is tested end to end against a real provider.
func (s *Server) SessionCookie(t testing.TB, ts TestSession) (*http.Cookie, string) {
	t.Helper()
	now := s.cfg.Now()
	at := func(v time.Time) int64 {
		if v.IsZero() {
			return now.Unix()
		}
		return v.Unix()
	}
	sess := session{ID: randomToken(18), Tenant: ts.Tenant, Member: ts.Member, Role: ts.Role,
		AuthTime: at(ts.AuthTime), Issued: at(ts.Issued), Seen: at(ts.Seen), CSRF: randomToken(32)}
	v, err := s.seal.seal(t.Context(), sessionCookie, sess)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Cookie{Name: sessionCookie, Value: v}, sess.CSRF
}

// TestFlow describes a sign-in under way.
type TestFlow struct {
	State, Nonce, Verifier, Return string
	Reauth                         bool
	Started                        time.Time
}

// FlowCookie mints the sealed flow cookie of a sign-in under way.
func (s *Server) FlowCookie(t testing.TB, f TestFlow) *http.Cookie {
	t.Helper()
	if f.Started.IsZero() {
		f.Started = s.cfg.Now()
	}
	v, err := s.seal.seal(t.Context(), flowCookie, flow{State: f.State, Nonce: f.Nonce, Verifier: f.Verifier,
		Return: f.Return, Reauth: f.Reauth, Started: f.Started.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return &http.Cookie{Name: flowCookie, Value: v}
}
