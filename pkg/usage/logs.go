package usage

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/keyward/keyward/pkg/apikey"
)

// maxLogLine bounds a log line the parsers read: the access log's lines
// are well under 2 KB, the authorizer's refusals under 1 KB.
const maxLogLine = 8 << 10

// accessLine is a line of the stage's access log (infra/stack's
// AccessLogFields): every value a string, "-" when API Gateway has none.
type accessLine struct {
	RequestTimeEpoch string `json:"requestTimeEpoch"`
	IP               string `json:"ip"`
	HTTPMethod       string `json:"httpMethod"`
	ResourcePath     string `json:"resourcePath"`
	Status           string `json:"status"`
	ResponseLatency  string `json:"responseLatency"`
	PrincipalID      string `json:"principalId"`
	TenantID         string `json:"tenantId"`
}

// FromAccessLog reads a line of the stage's access log, logged at logged
// (the log event's time, when the line has no request time): the request,
// or false for a line that is not a request served with a key.
func FromAccessLog(line string, logged time.Time) (Request, bool) {
	var l accessLine
	if len(line) > maxLogLine || json.Unmarshal([]byte(line), &l) != nil {
		return Request{}, false
	}
	id, ok := apikey.ParsePublicID(l.PrincipalID)
	if !ok || l.TenantID == "" || l.TenantID == "-" {
		return Request{}, false
	}
	status, err := strconv.Atoi(l.Status)
	if err != nil || status < 100 || status > 599 {
		return Request{}, false
	}
	at := logged
	if ms, err := strconv.ParseInt(l.RequestTimeEpoch, 10, 64); err == nil && ms > 0 {
		at = time.UnixMilli(ms)
	}
	var latency time.Duration
	if ms, err := strconv.ParseInt(l.ResponseLatency, 10, 64); err == nil && ms >= 0 {
		latency = time.Duration(ms) * time.Millisecond
	}
	return Request{Time: at.UTC(), KeyID: id, TenantID: l.TenantID, Method: l.HTTPMethod, Route: l.ResourcePath,
		Status: status, SourceIP: l.IP, Latency: latency}, true
}

// decisionLine is the part of an authorizer decision line (package
// authorizer's decision log) that tells a wrong secret for a real key
// (reason authorizer.ReasonWrongSecret; package authorizer's
// TestWrongSecretReported holds the two to each other).
type decisionLine struct {
	Time     time.Time `json:"time"`
	Outcome  string    `json:"outcome"`
	Reason   string    `json:"reason"`
	KeyID    string    `json:"key_id"`
	TenantID string    `json:"tenant_id"`
	// Message holds the line when Lambda's JSON log format wrapped it.
	Message json.RawMessage `json:"message"`
}

// WrongSecretFromDecision reads an authorizer log line: the key, tenant
// and time of a refused wrong secret for a real key, or false.
func WrongSecretFromDecision(line string) (keyID, tenantID string, at time.Time, ok bool) {
	if len(line) > maxLogLine {
		return "", "", time.Time{}, false
	}
	var l decisionLine
	if json.Unmarshal([]byte(line), &l) != nil {
		return "", "", time.Time{}, false
	}
	if l.Outcome == "" && len(l.Message) > 0 {
		var inner string
		if json.Unmarshal(l.Message, &inner) == nil {
			return WrongSecretFromDecision(inner)
		}
		msg := l.Message
		l = decisionLine{}
		if json.Unmarshal(msg, &l) != nil {
			return "", "", time.Time{}, false
		}
	}
	id, isKey := apikey.ParsePublicID(l.KeyID)
	if l.Outcome != "unauthorized" || l.Reason != "wrong_secret" || !isKey || l.TenantID == "" || l.Time.IsZero() {
		return "", "", time.Time{}, false
	}
	return id, l.TenantID, l.Time.UTC(), true
}
