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
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/keyward/keyward/pkg/apikey"
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
}

// maxBatch is PutEvents' limit of entries per call.
const maxBatch = 10

// Publish sends events in batches and returns the ids of those EventBridge
// did not accept, with the first failure's reason, so the caller can retry
// exactly those.
func (b EventBridge) Publish(ctx context.Context, evs []Event) ([]string, error) {
	var failed []string
	var firstErr error
	for start := 0; start < len(evs); start += maxBatch {
		batch := evs[start:min(start+maxBatch, len(evs))]
		entries := make([]ebtypes.PutEventsRequestEntry, len(batch))
		for i, ev := range batch {
			detail, err := json.Marshal(ev)
			if err != nil {
				return nil, fmt.Errorf("events: encoding %s: %w", ev.ID, err)
			}
			entries[i] = ebtypes.PutEventsRequestEntry{EventBusName: aws.String(b.Bus), Source: aws.String(Source),
				DetailType: aws.String(ev.Type), Detail: aws.String(string(detail)), Time: aws.Time(ev.Time)}
		}
		out, err := b.Client.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: entries})
		if err != nil {
			for _, ev := range batch {
				failed = append(failed, ev.ID)
			}
			if firstErr == nil {
				firstErr = fmt.Errorf("events: put events: %w", err)
			}
			continue
		}
		for i, res := range out.Entries {
			if res.ErrorCode != nil && i < len(batch) {
				failed = append(failed, batch[i].ID)
				if firstErr == nil {
					firstErr = fmt.Errorf("events: %s refused: %s %s", batch[i].ID, aws.ToString(res.ErrorCode), aws.ToString(res.ErrorMessage))
				}
			}
		}
	}
	return failed, firstErr
}
