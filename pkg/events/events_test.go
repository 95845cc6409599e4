package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/store"
)

var at = time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)

func TestFromAudit(t *testing.T) {
	e := events.FromAudit(store.AuditEntry{TenantID: "acme", ID: "a1", Time: at, Actor: "key_admin", Action: "key.revoked",
		KeyID: "AbCdEfGhIjKl", KeyDisplay: "sk_live_…wxyz", RequestID: "r1", Details: map[string]string{"reason": "x"}})
	want := events.Event{ID: "evt_a1", Type: "key.revoked", TenantID: "acme", KeyID: "key_AbCdEfGhIjKl", KeyDisplay: "sk_live_…wxyz",
		Actor: "key_admin", Time: at, RequestID: "r1", Data: map[string]string{"reason": "x"}}
	if got, _ := json.Marshal(e); string(got) != string(must(json.Marshal(want))) {
		t.Fatalf("event %s", got)
	}
	sys := events.FromAudit(store.AuditEntry{TenantID: store.SystemTenant, ID: "a2", Time: at, Actor: "system:pepper-rotation", Action: "pepper.rotated"})
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

// recordingBus records PutEvents calls and refuses the entries it is told to.
type recordingBus struct {
	calls  [][]ebtypes.PutEventsRequestEntry
	refuse map[string]bool // detail types to refuse
	fail   error
}

func (b *recordingBus) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	b.calls = append(b.calls, in.Entries)
	if b.fail != nil {
		return nil, b.fail
	}
	out := &eventbridge.PutEventsOutput{}
	for _, e := range in.Entries {
		res := ebtypes.PutEventsResultEntry{EventId: aws.String("eb-1")}
		if b.refuse[aws.ToString(e.DetailType)] {
			res = ebtypes.PutEventsResultEntry{ErrorCode: aws.String("InternalFailure"), ErrorMessage: aws.String("try again")}
			out.FailedEntryCount++
		}
		out.Entries = append(out.Entries, res)
	}
	return out, nil
}

func TestEventBridgeBatchesAndReportsFailures(t *testing.T) {
	bus := &recordingBus{refuse: map[string]bool{"key.revoked": true}}
	var evs []events.Event
	for i := range 23 {
		typ := "key.created"
		if i == 12 {
			typ = "key.revoked"
		}
		evs = append(evs, events.Event{ID: "evt_" + string(rune('a'+i)), Type: typ, Time: at, Actor: "x"})
	}
	failed, err := events.EventBridge{Client: bus, Bus: "keyward-events"}.Publish(t.Context(), evs)
	if len(bus.calls) != 3 || len(bus.calls[0]) != 10 || len(bus.calls[2]) != 3 {
		t.Fatalf("batches %d", len(bus.calls))
	}
	if err == nil || len(failed) != 1 || failed[0] != evs[12].ID {
		t.Fatalf("failed %v, %v", failed, err)
	}
	e := bus.calls[0][0]
	if aws.ToString(e.Source) != "keyward" || aws.ToString(e.EventBusName) != "keyward-events" || aws.ToString(e.DetailType) != "key.created" ||
		!strings.Contains(aws.ToString(e.Detail), `"id":"evt_a"`) {
		t.Fatalf("entry %+v", e)
	}
	bus = &recordingBus{fail: errors.New("AccessDenied")}
	failed, err = events.EventBridge{Client: bus, Bus: "b"}.Publish(t.Context(), evs[:3])
	if err == nil || len(failed) != 3 {
		t.Fatalf("a failed call: %v %v", failed, err)
	}
}

func TestFilePublisher(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	f := &events.File{Path: path, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	for range 2 {
		if failed, err := f.Publish(t.Context(), []events.Event{{ID: "evt_1", Type: "key.created", Time: at}}); err != nil || failed != nil {
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
