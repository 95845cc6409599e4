// Package events turns keyward's audit entries into the key events it
// publishes (key.created, key.revoked, key.expiring, pepper.rotated, ...),
// and publishes them: to an EventBridge bus in AWS, to the log and a JSON
// lines file locally.
//
// The audit entry is the outbox: every change writes its entry in the same
// transaction as the change itself, and a change stream (DynamoDB Streams in
// AWS) delivers each new entry to the publisher at least once, so no event
// is lost when a function crashes after its write. Each event's id is its
// audit entry's, so consumers can drop duplicates.
package keyevents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/keyward/keyward/pkg/apikey"
	"github.com/keyward/keyward/pkg/clock"
	"github.com/keyward/keyward/pkg/store"
)

// Source is the EventBridge source of keyward's events.
const Source = "keyward"

// Event is one key event. It never carries a secret, a hash or a pepper:
// it is built only from an audit entry, which never holds one either.
type Event struct {
	ID         string            `json:"id"`
	Type       string            `json:"type"`
	TenantID   string            `json:"tenant_id,omitempty"`
	KeyID      string            `json:"key_id,omitempty"`
	KeyDisplay string            `json:"key_display,omitempty"`
	Actor      string            `json:"actor"`
	Time       time.Time         `json:"time"`
	RequestID  string            `json:"request_id,omitempty"`
	Data       map[string]string `json:"data,omitempty"`
}

// FromAudit is the event of an audit entry.
func FromAudit(a store.AuditEntry) Event {
	e := Event{ID: "evt_" + a.ID, Type: a.Action, Actor: a.Actor, Time: a.Time.UTC(), RequestID: a.RequestID,
		KeyDisplay: a.KeyDisplay, Data: a.Details}
	if a.TenantID != store.SystemTenant {
		e.TenantID = a.TenantID
	}
	if a.KeyID != "" {
		e.KeyID = apikey.PublicID(a.KeyID)
	}
	return e
}

// PutEventsAPI is the part of the EventBridge client the publisher calls.
type PutEventsAPI interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, opts ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// EventBridge publishes events to a custom bus.
type EventBridge struct {
	Client PutEventsAPI
	Bus    string
	// Sleep waits between attempts; clock.Sleep when nil.
	Sleep func(context.Context, time.Duration) error
}

// PutEvents' limits: entries per call, and bytes per call counted as
// EventBridge counts them (entrySize).
const (
	maxBatch        = 10
	maxRequestBytes = 256 * 1024
)

// putAttempts is how many times one invocation offers an event to
// EventBridge; the SDK retries each call's errors on its own, but not the
// entries a successful call refused (FailedEntryCount), which are often
// throttling or an internal failure that passes in moments. Lambda's
// retries of the stream records, and then the dead-letter queue, take over
// after the last attempt.
const putAttempts = 3

// retryAfter is the wait before the second attempt; it doubles after.
const retryAfter = 200 * time.Millisecond

// entry is one event ready for PutEvents.
type entry struct {
	id   string
	req  ebtypes.PutEventsRequestEntry
	size int
}

// entrySize is an entry's size as EventBridge computes it against its
// 256 KB limit: 14 bytes for the time, and the UTF-8 bytes of the source,
// the detail type and the detail ("Calculating PutEvents event entry
// size", EventBridge User Guide).
func entrySize(source, detailType, detail string) int {
	return 14 + len(source) + len(detailType) + len(detail)
}

// Publish sends events in calls of at most ten entries and 256 KB,
// offers the entries EventBridge refused again (putAttempts in all), and
// returns the ids of those never accepted, with the reasons, so the
// caller can retry exactly those. An event that cannot be sent at all (it
// does not encode, or is larger than an entry may be) is among them: it is
// never dropped here.
func (b EventBridge) Publish(ctx context.Context, evs []Event) ([]string, error) {
	var failed []string
	var errs []error
	pending := make([]entry, 0, len(evs))
	for _, ev := range evs {
		detail, err := json.Marshal(ev)
		if err != nil {
			failed, errs = append(failed, ev.ID), append(errs, fmt.Errorf("events: encoding %s: %w", ev.ID, err))
			continue
		}
		e := entry{id: ev.ID, size: entrySize(Source, ev.Type, string(detail)), req: ebtypes.PutEventsRequestEntry{
			EventBusName: aws.String(b.Bus), Source: aws.String(Source),
			DetailType: aws.String(ev.Type), Detail: aws.String(string(detail)), Time: aws.Time(ev.Time)}}
		if e.size > maxRequestBytes {
			failed, errs = append(failed, ev.ID), append(errs, fmt.Errorf("events: %s is %d bytes, more than an EventBridge entry may be (%d)", ev.ID, e.size, maxRequestBytes))
			continue
		}
		pending = append(pending, e)
	}
	sleep := b.Sleep
	if sleep == nil {
		sleep = clock.Sleep
	}
	var lastErr error
	for attempt := 0; attempt < putAttempts && len(pending) > 0; attempt++ {
		if attempt > 0 {
			if err := sleep(ctx, retryAfter<<(attempt-1)); err != nil {
				break
			}
		}
		var refused []entry
		for _, batch := range batches(pending) {
			r, err := b.put(ctx, batch)
			refused = append(refused, r...)
			if err != nil {
				lastErr = err
			}
		}
		pending = refused
	}
	for _, e := range pending {
		failed = append(failed, e.id)
	}
	if len(pending) > 0 {
		errs = append(errs, fmt.Errorf("events: %d events not accepted after %d attempts: %w", len(pending), putAttempts, lastErr))
	}
	return failed, errors.Join(errs...)
}

// batches splits entries into PutEvents calls within both limits.
func batches(entries []entry) [][]entry {
	var out [][]entry
	start, size := 0, 0
	for i, e := range entries {
		if i-start == maxBatch || size+e.size > maxRequestBytes {
			out = append(out, entries[start:i])
			start, size = i, 0
		}
		size += e.size
	}
	if start < len(entries) {
		out = append(out, entries[start:])
	}
	return out
}

// put makes one PutEvents call and returns the entries it did not accept:
// all of them when the call failed, else those with an error code.
func (b EventBridge) put(ctx context.Context, batch []entry) ([]entry, error) {
	reqs := make([]ebtypes.PutEventsRequestEntry, len(batch))
	for i, e := range batch {
		reqs[i] = e.req
	}
	out, err := b.Client.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: reqs})
	if err != nil {
		return batch, fmt.Errorf("events: put events: %w", err)
	}
	if len(out.Entries) != len(batch) {
		// The results are matched to entries by position; without one
		// each, nothing is known to be accepted.
		return batch, fmt.Errorf("events: put events answered %d results for %d entries", len(out.Entries), len(batch))
	}
	var refused []entry
	var first error
	for i, res := range out.Entries {
		if res.ErrorCode != nil || res.EventId == nil {
			refused = append(refused, batch[i])
			if first == nil {
				first = fmt.Errorf("events: %s refused: %s %s", batch[i].id, aws.ToString(res.ErrorCode), aws.ToString(res.ErrorMessage))
			}
		}
	}
	return refused, first
}
