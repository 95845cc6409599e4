package localstack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/keyward/keyward/pkg/admin"
	"github.com/keyward/keyward/pkg/config"
	"github.com/keyward/keyward/pkg/keyevents"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/store/embedded"
)

// Files of the data directory.
const (
	dbFile     = "keyward.db"
	eventsFile = "events.jsonl"
	// journalFile and plansFile are where earlier versions kept the store
	// and the usage plans; openStore carries them over once.
	journalFile = "keyward.journal"
	plansFile   = "usage-plans.json"
	// importedSuffix marks a file carried over, kept for a person to
	// delete.
	importedSuffix = ".imported"
)

// openStore opens the data directory's database, with its outbox, carries
// over what an earlier version left in the directory, and releases the
// Idempotency-Keys of requests that a killed process never answered.
func openStore(ctx context.Context, dir string, now func() time.Time, log *slog.Logger) (*embedded.Store, error) {
	st, err := embedded.Open(filepath.Join(dir, dbFile), embedded.WithClock(now), embedded.WithOutbox())
	if err != nil {
		return nil, err
	}
	if err := importEarlier(ctx, dir, st, log); err != nil {
		st.Close()
		return nil, err
	}
	// No request runs yet: claims still open were a killed process's.
	released, err := st.ReleaseClaims(ctx)
	if err != nil {
		st.Close()
		return nil, err
	}
	if released > 0 {
		log.Info("released the Idempotency-Keys of requests a stopped process left unanswered; their retries run again", "released", released)
	}
	return st, nil
}

// importEarlier carries an earlier version's journal and usage plans into
// the database, then renames them out of the way. Each step may run again
// after a start that died in it: the import is one transaction that
// records itself, and setting a plan twice changes nothing.
func importEarlier(ctx context.Context, dir string, st *embedded.Store, log *slog.Logger) error {
	journal := filepath.Join(dir, journalFile)
	if _, err := os.Stat(journal); err == nil {
		published, err := publishedEvents(filepath.Join(dir, eventsFile))
		if err != nil {
			return err
		}
		if err := embedded.ImportJournal(ctx, journal, st, func(id string) bool { return published["evt_"+id] }); err != nil {
			return fmt.Errorf("%w (the earlier version's %s is as it was; move %s away, or fix the line, and start again)", err, journal, dir)
		}
		if err := os.Rename(journal, journal+importedSuffix); err != nil {
			return err
		}
		log.Info("imported the store of an earlier version", "from", journal, "to", filepath.Join(dir, dbFile))
	}
	plans := filepath.Join(dir, plansFile)
	data, err := os.ReadFile(plans)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var tiers map[string]string
	if err := json.Unmarshal(data, &tiers); err != nil {
		return fmt.Errorf("localstack: usage plans %s: %w", plans, err)
	}
	for identity, tier := range tiers {
		if err := st.SetUsagePlan(ctx, identity, tier); err != nil {
			return err
		}
	}
	return os.Rename(plans, plans+importedSuffix)
}

// publishedEvents is the id of every event in the events file; a line an
// earlier version tore is passed over, as its event was never published.
func publishedEvents(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for line := range bytes.Lines(data) {
		var ev struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(line, &ev) == nil && ev.ID != "" {
			ids[ev.ID] = true
		}
	}
	return ids, nil
}

// plans is the local stand-in for API Gateway's API keys and usage plans:
// the gateway emulation enforces them in memory, and the store keeps them
// across restarts, as AWS keeps API keys.
type plans struct {
	store *embedded.Store
	next  admin.RateLimits // the gateway emulation
}

// loadPlans provisions every stored plan in the gateway, except those of
// keys that do not exist or are dead: a create provisions its key's plan
// before it writes the key, and a process killed in between leaves the
// plan alone, as API Gateway would keep an API key.
func loadPlans(ctx context.Context, st *embedded.Store, next admin.RateLimits) (*plans, error) {
	stored, err := st.UsagePlans(ctx)
	if err != nil {
		return nil, err
	}
	for identity, tier := range stored {
		if id, perKey := config.KeyOfRateLimitIdentity(identity); perKey {
			k, err := st.GetKey(ctx, id)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			if err != nil || k.Status == store.KeyRevoked || k.Status == store.KeyExpired {
				if err := st.DeleteUsagePlan(ctx, identity); err != nil {
					return nil, err
				}
				continue
			}
		}
		if err := next.Provision(ctx, identity, tier); err != nil {
			return nil, err
		}
	}
	return &plans{store: st, next: next}, nil
}

func (p *plans) Provision(ctx context.Context, identity, tier string) error {
	if err := p.next.Provision(ctx, identity, tier); err != nil {
		return err
	}
	return p.store.SetUsagePlan(ctx, identity, tier)
}

func (p *plans) Remove(ctx context.Context, identity string) error {
	if err := p.next.Remove(ctx, identity); err != nil {
		return err
	}
	return p.store.DeleteUsagePlan(ctx, identity)
}

// outboxBatch is how many events one publication takes from the outbox.
const outboxBatch = 100

// PublishEvents publishes the store's outbox, oldest first, until it is
// empty: the local stack's stand-in for the table's stream and the
// publisher function. An entry leaves the outbox only once its event is
// in the events file, so a crash in between publishes it again (at least
// once; consumers drop duplicates by event id). Serve calls it after
// every commit; tests call it to see events without waiting.
func (s *Stack) PublishEvents(ctx context.Context) error {
	for {
		batch, err := s.store.Outbox(ctx, outboxBatch)
		if err != nil || len(batch) == 0 {
			return err
		}
		evs := make([]keyevents.Event, len(batch))
		seqs := make([]uint64, len(batch))
		for i, e := range batch {
			evs[i], seqs[i] = keyevents.FromAudit(e.Entry), e.Seq
		}
		if _, err := s.Events.Publish(ctx, evs); err != nil {
			return err
		}
		if err := s.store.Published(ctx, seqs); err != nil {
			return err
		}
	}
}

// runPublisher publishes the outbox whenever a change commits, and retries
// every few seconds after a failure, until ctx ends.
func (s *Stack) runPublisher(ctx context.Context) {
	retry := time.NewTicker(5 * time.Second)
	defer retry.Stop()
	for {
		if err := s.PublishEvents(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("publishing events failed; retrying", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.store.Committed():
		case <-retry.C:
		}
	}
}
