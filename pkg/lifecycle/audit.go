package lifecycle

import (
	"maps"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/store"
)

// entry builds an audit entry; keyed entries also name the key as people
// see it, for the events built from them.
func (s *Service) entry(tenant, action string, k *store.Key, actor Actor, at time.Time, details map[string]string) (store.AuditEntry, error) {
	id, err := apikey.RandomString(20)
	if err != nil {
		return store.AuditEntry{}, err
	}
	e := store.AuditEntry{TenantID: tenant, ID: id, Time: at, Actor: actor.ID, Action: action,
		RequestID: actor.RequestID, Details: boundDetails(details)}
	if k != nil {
		e.KeyID, e.Environment, e.KeyDisplay = k.ID, k.Environment, apikey.Display(k.Prefix, k.Environment, k.Last4)
	}
	if s.auditTTL > 0 {
		e.ExpiresAt = at.Add(s.auditTTL)
	}
	return e, nil
}

// maxDetailLen bounds each audit detail value, whoever supplied it, so that
// an entry always fits a DynamoDB item (400 KB) and its event an
// EventBridge entry (256 KB): a report from outside (GitHub's may be 1 MB)
// must never make the revocation it causes fail to write.
const maxDetailLen = 2048

// truncatedMark ends a detail value cut at maxDetailLen.
const truncatedMark = "…(truncated)"

// boundDetails cuts each value longer than maxDetailLen at a character
// boundary and marks it.
func boundDetails(details map[string]string) map[string]string {
	var out map[string]string
	for k, v := range details {
		if len(v) <= maxDetailLen {
			continue
		}
		if out == nil {
			out = maps.Clone(details)
		}
		cut := maxDetailLen - len(truncatedMark)
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		out[k] = v[:cut] + truncatedMark
	}
	if out == nil {
		return details
	}
	return out
}

// audit builds the audit entry of a change to key k.
func (s *Service) audit(action string, k store.Key, actor Actor, at time.Time, details map[string]string) (store.AuditEntry, error) {
	return s.entry(k.TenantID, action, &k, actor, at, details)
}
