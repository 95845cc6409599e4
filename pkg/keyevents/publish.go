package keyevents

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	lambdaevents "github.com/aws/aws-lambda-go/events"

	"github.com/keyward/keyward/pkg/store"
)

// Publisher sends events and reports the ids it could not send.
type Publisher interface {
	Publish(ctx context.Context, evs []Event) (failed []string, err error)
}

// DecodeImage decodes the audit entry in a stream record's new image; ok
// is false for an image of any other item. The store that owns the table's
// layout provides it (dynamo.AuditFromStream).
type DecodeImage func(img map[string]lambdaevents.DynamoDBAttributeValue) (a store.AuditEntry, ok bool, err error)

// StreamHandler is the Lambda handler of the table's stream: it publishes
// the event of every new audit entry and reports the records whose event
// was not accepted, so Lambda retries exactly those (with
// ReportBatchItemFailures), at least once in all. A record that still
// fails when Lambda's retries run out goes to the mapping's dead-letter
// queue, which has an alarm: nothing is dropped without a person told.
type StreamHandler struct {
	Decode    DecodeImage
	Publisher Publisher
	Logger    *slog.Logger
}

// Handle publishes a batch of stream records.
func (h StreamHandler) Handle(ctx context.Context, batch lambdaevents.DynamoDBEvent) (lambdaevents.DynamoDBEventResponse, error) {
	var resp lambdaevents.DynamoDBEventResponse
	if h.Decode == nil {
		// An error, not a panic: Lambda retries the whole batch.
		return resp, errors.New("events: the stream handler has no image decoder")
	}
	fail := func(sequence string) {
		resp.BatchItemFailures = append(resp.BatchItemFailures, lambdaevents.DynamoDBBatchItemFailure{ItemIdentifier: sequence})
	}
	var evs []Event
	record := map[string]string{} // event id -> the record's sequence number
	for _, r := range batch.Records {
		if r.EventName != string(lambdaevents.DynamoDBOperationTypeInsert) {
			continue
		}
		a, ok, err := h.Decode(r.Change.NewImage)
		if err != nil {
			// Reported, not skipped: Lambda retries it, bisecting the
			// batch, and then sends it to the dead-letter queue, so a
			// person sees it while the stream still holds the record.
			h.Logger.ErrorContext(ctx, "undecodable audit entry in the stream", "sequence", r.Change.SequenceNumber, "error", err)
			fail(r.Change.SequenceNumber)
			continue
		}
		if !ok {
			continue
		}
		ev := FromAudit(a)
		evs = append(evs, ev)
		record[ev.ID] = r.Change.SequenceNumber
	}
	if len(evs) == 0 {
		return resp, nil
	}
	failed, err := h.Publisher.Publish(ctx, evs)
	if err != nil {
		h.Logger.ErrorContext(ctx, "publishing events failed", "failed", len(failed), "error", err)
		if len(failed) == 0 {
			// A failure that names no event leaves none known to be sent.
			failed = ids(evs)
		}
	}
	for _, id := range failed {
		// An id that is not the batch's is answered with an empty
		// identifier, which Lambda takes as the whole batch failing.
		fail(record[id])
	}
	return resp, nil
}

// File is the local stack's publisher: each event goes to the log and is
// appended to a JSON lines file (synced before Publish returns).
type File struct {
	Path   string
	Logger *slog.Logger

	mu sync.Mutex
}

// Publish appends evs to the file.
func (f *File) Publish(ctx context.Context, evs []Event) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out, err := os.OpenFile(f.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return ids(evs), fmt.Errorf("events: %w", err)
	}
	defer out.Close()
	if err := dropTornLine(out); err != nil {
		return ids(evs), fmt.Errorf("events: %s: %w", f.Path, err)
	}
	for _, ev := range evs {
		line, err := json.Marshal(ev)
		if err != nil {
			return ids(evs), fmt.Errorf("events: encoding %s: %w", ev.ID, err)
		}
		if _, err := out.Write(append(line, '\n')); err != nil {
			return ids(evs), fmt.Errorf("events: %w", err)
		}
		f.Logger.InfoContext(ctx, "event", "event_id", ev.ID, "type", ev.Type, "tenant_id", ev.TenantID, "key_id", ev.KeyID)
	}
	if err := out.Sync(); err != nil {
		return ids(evs), fmt.Errorf("events: %w", err)
	}
	return nil, nil
}

// dropTornLine cuts a line that a failed write (a full disk, a crash) left
// unfinished at the end of the file, and leaves the offset at the end: the
// events on it were never acknowledged, so they are published again.
func dropTornLine(f *os.File) error {
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil || end == 0 {
		return err
	}
	buf := make([]byte, 4096)
	for at := end; at > 0; {
		n := int64(len(buf))
		if at < n {
			n = at
		}
		at -= n
		if _, err := f.ReadAt(buf[:n], at); err != nil {
			return err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			if at+int64(i)+1 == end {
				return nil // ends with a whole line
			}
			at += int64(i) + 1
			end = at
			break
		}
		if at == 0 {
			end = 0
		}
	}
	if err := f.Truncate(end); err != nil {
		return err
	}
	_, err = f.Seek(end, io.SeekStart)
	return err
}

func ids(evs []Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

// FromAudits is the events of audit entries, in order.
func FromAudits(entries []store.AuditEntry) []Event {
	evs := make([]Event, len(entries))
	for i, a := range entries {
		evs[i] = FromAudit(a)
	}
	return evs
}
