package keyevents_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/keyward/keyward/pkg/keyevents"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/store/dynamo"
)

var at = time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)

func TestFromAudit(t *testing.T) {
	e := keyevents.FromAudit(store.AuditEntry{TenantID: "acme", ID: "a1", Time: at, Actor: "key_admin", Action: "key.revoked",
		KeyID: "AbCdEfGhIjKl", KeyDisplay: "sk_live_…wxyz", RequestID: "r1", Details: map[string]string{"reason": "x"}})
	want := keyevents.Event{ID: "evt_a1", Type: "key.revoked", TenantID: "acme", KeyID: "key_AbCdEfGhIjKl", KeyDisplay: "sk_live_…wxyz",
		Actor: "key_admin", Time: at, RequestID: "r1", Data: map[string]string{"reason": "x"}}
	if got, _ := json.Marshal(e); string(got) != string(must(json.Marshal(want))) {
		t.Fatalf("event %s", got)
	}
	sys := keyevents.FromAudit(store.AuditEntry{TenantID: store.SystemTenant, ID: "a2", Time: at, Actor: "system:pepper-rotation", Action: "pepper.rotated"})
	if sys.TenantID != "" || sys.KeyID != "" {
		t.Fatalf("system event %+v", sys)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// recordingBus records PutEvents calls and refuses entries: those of the
// detail types it is told to, for as many calls as it is told to (or
// always, when negative).
type recordingBus struct {
	calls  [][]ebtypes.PutEventsRequestEntry
	refuse map[string]int // detail type -> calls left to refuse it in
	fail   error
}

func (b *recordingBus) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	b.calls = append(b.calls, in.Entries)
	if b.fail != nil {
		return nil, b.fail
	}
	size := 0
	for _, e := range in.Entries {
		size += 14 + len(aws.ToString(e.Source)) + len(aws.ToString(e.DetailType)) + len(aws.ToString(e.Detail))
	}
	if len(in.Entries) > 10 || size > 256*1024 {
		return nil, fmt.Errorf("ValidationException: %d entries, %d bytes", len(in.Entries), size)
	}
	out := &eventbridge.PutEventsOutput{}
	for _, e := range in.Entries {
		res := ebtypes.PutEventsResultEntry{EventId: aws.String("eb-1")}
		if left := b.refuse[aws.ToString(e.DetailType)]; left != 0 {
			b.refuse[aws.ToString(e.DetailType)] = left - 1
			res = ebtypes.PutEventsResultEntry{ErrorCode: aws.String("InternalFailure"), ErrorMessage: aws.String("try again")}
			out.FailedEntryCount++
		}
		out.Entries = append(out.Entries, res)
	}
	return out, nil
}

// publisher is an EventBridge publisher on bus that records its waits
// instead of waiting.
func publisher(bus *recordingBus, waits *[]time.Duration) keyevents.EventBridge {
	return keyevents.EventBridge{Client: bus, Bus: "keyward-events", Sleep: func(_ context.Context, d time.Duration) error {
		*waits = append(*waits, d)
		return nil
	}}
}

func someEvents(n int, typeAt map[int]string) []keyevents.Event {
	var evs []keyevents.Event
	for i := range n {
		evs = append(evs, keyevents.Event{ID: fmt.Sprintf("evt_%02d", i), Type: cmp.Or(typeAt[i], "key.created"), Time: at, Actor: "x"})
	}
	return evs
}

// TestEventBridgeRetriesRefusedEntries: entries a successful PutEvents
// call refused (its FailedEntryCount) are offered again within the
// invocation, and only those never accepted are reported.
func TestEventBridgeRetriesRefusedEntries(t *testing.T) {
	evs := someEvents(23, map[int]string{12: "key.revoked"})
	bus := &recordingBus{refuse: map[string]int{"key.revoked": 2}}
	var waits []time.Duration
	failed, err := publisher(bus, &waits).Publish(t.Context(), evs)
	if err != nil || failed != nil {
		t.Fatalf("refused twice, then accepted: %v %v", failed, err)
	}
	if len(bus.calls) != 5 || len(bus.calls[0]) != 10 || len(bus.calls[2]) != 3 || len(bus.calls[3]) != 1 || len(bus.calls[4]) != 1 ||
		aws.ToString(bus.calls[4][0].DetailType) != "key.revoked" || len(waits) != 2 || waits[1] != 2*waits[0] {
		t.Fatalf("calls %d, waits %v", len(bus.calls), waits)
	}
	e := bus.calls[0][0]
	if aws.ToString(e.Source) != "keyward" || aws.ToString(e.EventBusName) != "keyward-events" || aws.ToString(e.DetailType) != "key.created" ||
		!strings.Contains(aws.ToString(e.Detail), `"id":"evt_00"`) {
		t.Fatalf("entry %+v", e)
	}

	bus = &recordingBus{refuse: map[string]int{"key.revoked": -1}}
	failed, err = publisher(bus, &waits).Publish(t.Context(), evs)
	if err == nil || len(failed) != 1 || failed[0] != evs[12].ID || !strings.Contains(err.Error(), "InternalFailure") {
		t.Fatalf("always refused: %v, %v", failed, err)
	}

	bus = &recordingBus{fail: errors.New("AccessDenied")}
	failed, err = publisher(bus, &waits).Publish(t.Context(), evs[:3])
	if err == nil || len(failed) != 3 || len(bus.calls) != 3 {
		t.Fatalf("failed calls: %v %v after %d calls", failed, err, len(bus.calls))
	}
}

// TestEventBridgeEntrySizes: calls stay within PutEvents' 256 KB, and an
// event larger than an entry may be is reported, never sent nor dropped.
func TestEventBridgeEntrySizes(t *testing.T) {
	evs := someEvents(6, nil)
	for i := range evs {
		evs[i].Data = map[string]string{"note": strings.Repeat("x", 100_000)}
	}
	evs[3].Data = map[string]string{"note": strings.Repeat("x", 300_000)}
	bus := &recordingBus{}
	var waits []time.Duration
	failed, err := publisher(bus, &waits).Publish(t.Context(), evs)
	if len(failed) != 1 || failed[0] != evs[3].ID || err == nil || !strings.Contains(err.Error(), "more than an EventBridge entry may be") {
		t.Fatalf("failed %v, %v", failed, err)
	}
	sent := 0
	for _, c := range bus.calls {
		sent += len(c)
	}
	if sent != 5 || len(bus.calls) != 3 {
		t.Fatalf("%d entries in %d calls", sent, len(bus.calls))
	}
}

// failingPublisher fails without naming any event.
type failingPublisher struct{}

func (failingPublisher) Publish(context.Context, []keyevents.Event) ([]string, error) {
	return nil, errors.New("encoding")
}

// TestStreamHandlerDropsNothing: an undecodable audit entry and a failure
// that names no event are batch item failures, so Lambda retries them and
// then sends them to the dead-letter queue.
func TestStreamHandlerDropsNothing(t *testing.T) {
	s := lambdaevents.NewStringAttribute
	audit := func(seq, id string) lambdaevents.DynamoDBEventRecord {
		return lambdaevents.DynamoDBEventRecord{EventName: "INSERT", Change: lambdaevents.DynamoDBStreamRecord{SequenceNumber: seq,
			NewImage: map[string]lambdaevents.DynamoDBAttributeValue{dynamo.AttrPK: s("AUDIT#acme"), "id": s(id), "action": s("key.created"),
				"tenant_id": s("acme"), "actor": s("x"), "time": s(at.Format(time.RFC3339Nano))}}}
	}
	broken := audit("2", "a2")
	broken.Change.NewImage["time"] = lambdaevents.NewBooleanAttribute(true)
	other := lambdaevents.DynamoDBEventRecord{EventName: "INSERT", Change: lambdaevents.DynamoDBStreamRecord{SequenceNumber: "4",
		NewImage: map[string]lambdaevents.DynamoDBAttributeValue{dynamo.AttrPK: s("KEY#abc")}}}
	batch := lambdaevents.DynamoDBEvent{Records: []lambdaevents.DynamoDBEventRecord{audit("1", "a1"), broken, audit("3", "a3"), other}}
	quiet := slog.New(slog.NewJSONHandler(io.Discard, nil))

	bus := &recordingBus{}
	resp, err := keyevents.StreamHandler{Decode: dynamo.AuditFromStream, Publisher: keyevents.EventBridge{Client: bus, Bus: "b"}, Logger: quiet}.Handle(t.Context(), batch)
	if err != nil || len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "2" || len(bus.calls) != 1 || len(bus.calls[0]) != 2 {
		t.Fatalf("an undecodable entry: %+v %v, %d calls", resp, err, len(bus.calls))
	}
	resp, err = keyevents.StreamHandler{Decode: dynamo.AuditFromStream, Publisher: failingPublisher{}, Logger: quiet}.Handle(t.Context(), batch)
	var got []string
	for _, f := range resp.BatchItemFailures {
		got = append(got, f.ItemIdentifier)
	}
	if err != nil || strings.Join(got, ",") != "2,1,3" {
		t.Fatalf("a failure naming no event: %v %v", got, err)
	}
}

func TestFilePublisher(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	f := &keyevents.File{Path: path, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	for range 2 {
		if failed, err := f.Publish(t.Context(), []keyevents.Event{{ID: "evt_1", Type: "key.created", Time: at}}); err != nil || failed != nil {
			t.Fatal(failed, err)
		}
	}
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `"type":"key.created"`) {
		t.Fatalf("file:\n%s", data)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", info.Mode())
	}
}

// TestFilePublisherDropsTornLine: a line a failed write left unfinished is
// cut before the next events are appended, so every line reads back as an
// event (the torn one is published again from the outbox).
func TestFilePublisherDropsTornLine(t *testing.T) {
	for name, before := range map[string]string{
		"torn after whole lines": `{"id":"evt_1","type":"key.created"}` + "\n" + `{"id":"evt_2","ty`,
		"only a torn line":       strings.Repeat("x", 5000),
		"whole lines":            `{"id":"evt_1","type":"key.created"}` + "\n",
	} {
		path := filepath.Join(t.TempDir(), "events.jsonl")
		if err := os.WriteFile(path, []byte(before), 0o600); err != nil {
			t.Fatal(err)
		}
		f := &keyevents.File{Path: path, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
		if _, err := f.Publish(t.Context(), []keyevents.Event{{ID: "evt_2", Type: "key.created", Time: at}}); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(path)
		for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			var ev keyevents.Event
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("%s: line %q", name, line)
			}
		}
		if !strings.HasSuffix(string(data), `"key.created","actor":"","time":"2026-09-01T08:00:00Z"}`+"\n") {
			t.Fatalf("%s: the new event is not the last line:\n%s", name, data)
		}
	}
}

// TestStreamHandlerDecodesWithItsDecoder: the handler knows no table
// layout; it publishes what the injected decoder makes of each inserted
// image, and without one it fails the batch rather than drop it.
func TestStreamHandlerDecodesWithItsDecoder(t *testing.T) {
	quiet := slog.New(slog.NewJSONHandler(io.Discard, nil))
	batch := lambdaevents.DynamoDBEvent{Records: []lambdaevents.DynamoDBEventRecord{
		{EventName: "INSERT", Change: lambdaevents.DynamoDBStreamRecord{SequenceNumber: "1",
			NewImage: map[string]lambdaevents.DynamoDBAttributeValue{"entry": lambdaevents.NewStringAttribute("a1")}}},
		{EventName: "MODIFY", Change: lambdaevents.DynamoDBStreamRecord{SequenceNumber: "2",
			NewImage: map[string]lambdaevents.DynamoDBAttributeValue{"entry": lambdaevents.NewStringAttribute("a2")}}},
	}}
	var decoded []string
	decode := func(img map[string]lambdaevents.DynamoDBAttributeValue) (store.AuditEntry, bool, error) {
		id := img["entry"].String()
		decoded = append(decoded, id)
		return store.AuditEntry{TenantID: "acme", ID: id, Time: at, Actor: "x", Action: "key.created"}, true, nil
	}
	bus := &recordingBus{}
	resp, err := keyevents.StreamHandler{Decode: decode, Publisher: keyevents.EventBridge{Client: bus, Bus: "b"}, Logger: quiet}.Handle(t.Context(), batch)
	if err != nil || len(resp.BatchItemFailures) != 0 || strings.Join(decoded, ",") != "a1" || len(bus.calls) != 1 || len(bus.calls[0]) != 1 {
		t.Fatalf("%+v %v: decoded %v, %d calls", resp, err, decoded, len(bus.calls))
	}
	if _, err := (keyevents.StreamHandler{Publisher: failingPublisher{}, Logger: quiet}).Handle(t.Context(), batch); err == nil {
		t.Fatal("a handler without a decoder accepted a batch")
	}
}
