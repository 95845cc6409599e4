package embedded

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/keyward/keyward/pkg/store"
)

// entry is one journal line: the new version of every item one commit
// wrote, and the idempotency records and checkpoints it deleted (the only
// deletions). Replaying entries in order rebuilds the state.
type entry struct {
	Keys        []store.Key         `json:"keys,omitempty"`
	Tenants     []store.Tenant      `json:"tenants,omitempty"`
	Peppers     []store.Pepper      `json:"peppers,omitempty"`
	Audit       []store.AuditEntry  `json:"audit,omitempty"`
	Idempotency []store.Idempotency `json:"idempotency,omitempty"`
	Forget      []idemID            `json:"forget,omitempty"`
	// Checkpoints maps jobs to their new checkpoint; "" deletes one.
	Checkpoints map[string]string `json:"checkpoints,omitempty"`
}

// Open returns a store persisted in the journal file at path, creating it
// (and its directory) if missing. It holds an exclusive lock on the file
// until Close, so a second process cannot open it meanwhile.
//
// A torn last line, left by a crash in the middle of a write that was
// therefore never acknowledged, is dropped; any other unreadable line is
// corruption and fails Open, leaving the file as it is. Open then compacts
// the journal into one line of current state, leaving out expired records.
//
// If a journal write fails, the call fails with memory unchanged and the
// store refuses every later write (reads go on) until it is reopened.
// The lock is flock(2), so file mode needs a Unix system.
func Open(path string, opts ...Option) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	f, err := lockJournal(path)
	if err != nil {
		return nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	s := NewMemory(opts...)
	if err := s.load(f, path); err != nil {
		f.Close()
		return nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	return s, nil
}

// lockJournal opens the journal and locks it exclusively. Compaction
// replaces the file by rename, so a process that opened the old file just
// before may lock it after the rename; the check that the path still names
// the locked file catches that, and the loop then tries the new file.
func lockJournal(path string) (*os.File, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		current, err := lockedAt(f, path)
		if err == nil && current {
			return f, nil
		}
		f.Close()
		if err != nil {
			return nil, err
		}
	}
}

// lockedAt locks f and reports whether path still names it.
func lockedAt(f *os.File, path string) (bool, error) {
	if err := flock(f); err != nil {
		return false, err
	}
	held, err := f.Stat()
	if err != nil {
		return false, err
	}
	named, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(held, named), nil
}

// flock takes an exclusive lock on f without waiting for it.
func flock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return fmt.Errorf("already open in another process or Store: %w", err)
	}
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	return nil
}

// load replays the journal f, drops expired records and compacts.
func (s *Store) load(f *os.File, path string) error {
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	if err := s.replay(data); err != nil {
		return err
	}
	s.dropExpired(s.now())
	return s.compact(f, path)
}

// replay applies every journal line in data, ignoring a torn last line.
//
// Only an appended commit can be torn, by a crash before its write was
// acknowledged, and only as the last line and not as JSON. The first line
// is the snapshot that compaction renamed into place whole, and a complete
// JSON line that does not decode (say, from a newer version) is no tear:
// dropping either would silently lose acknowledged data.
func (s *Store) replay(data []byte) error {
	data = bytes.TrimSuffix(data, []byte("\n"))
	if len(data) == 0 {
		return nil
	}
	lines := bytes.Split(data, []byte("\n"))
	for i, line := range lines {
		e, err := decodeEntry(line)
		if err != nil {
			if i > 0 && i == len(lines)-1 && !json.Valid(line) {
				return nil
			}
			return fmt.Errorf("journal corrupt at line %d: %w", i+1, err)
		}
		s.apply(e)
	}
	return nil
}

// decodeEntry parses one line strictly: a field this version does not know
// (a journal from a newer version) is an error rather than silently lost.
func decodeEntry(line []byte) (entry, error) {
	var e entry
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return entry{}, err
	}
	if dec.InputOffset() != int64(len(line)) {
		return entry{}, errors.New("data after the entry")
	}
	for _, k := range e.Keys {
		if err := store.CheckKey(k); err != nil {
			return entry{}, err
		}
	}
	return e, nil
}

// dropExpired forgets the records whose TTL has passed: no read can see
// them, so the journal need not keep them.
func (s *Store) dropExpired(now time.Time) {
	for _, entries := range s.audit {
		for id, e := range entries {
			if expired(e.ExpiresAt, now) {
				delete(entries, id)
			}
		}
	}
	for id, r := range s.idem {
		if expired(r.ExpiresAt, now) {
			delete(s.idem, id)
		}
	}
}

// compact writes the state as a new journal next to path, makes it durable
// and renames it over path, then makes it the journal in place of old.
func (s *Store) compact(old *os.File, path string) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name()) // fails harmlessly once renamed
		}
	}()
	// Locked before the rename, so no other process can lock the new file
	// between the rename and the old file's close.
	if err := flock(f); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	line, err := json.Marshal(s.snapshot())
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	old.Close() // read only, and its lock is superseded by f's
	s.journal = f
	return nil
}

// snapshot is the whole state as one entry.
func (s *Store) snapshot() entry {
	var e entry
	for _, k := range s.keys {
		e.Keys = append(e.Keys, k)
	}
	for _, t := range s.tenants {
		e.Tenants = append(e.Tenants, t)
	}
	for _, p := range s.peppers {
		e.Peppers = append(e.Peppers, p)
	}
	for _, entries := range s.audit {
		for _, a := range entries {
			e.Audit = append(e.Audit, a)
		}
	}
	for _, r := range s.idem {
		e.Idempotency = append(e.Idempotency, r)
	}
	e.Checkpoints = maps.Clone(s.checkpoint)
	return e
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// commit makes e durable (in file mode) and only then applies it to
// memory, so a failed write changes nothing and an acknowledged one
// survives a crash. Callers hold the write lock.
func (s *Store) commit(e entry) error {
	if s.journal != nil {
		if s.failed != nil {
			return fmt.Errorf("embedded: journal failed earlier, reopen the store: %w", s.failed)
		}
		line, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("embedded: encode journal entry: %w", err)
		}
		if _, err = s.journal.Write(append(line, '\n')); err == nil {
			err = s.journal.Sync()
		}
		if err != nil {
			// Part of the line may be on disk: appending after it would
			// corrupt the middle of the journal, whereas as the last line
			// it is dropped as torn on the next Open.
			s.failed = err
			return fmt.Errorf("embedded: write journal: %w", err)
		}
	}
	s.apply(e)
	if s.onAudit != nil && len(e.Audit) > 0 {
		s.onAudit(slices.Clone(e.Audit))
	}
	return nil
}

// apply stores the versions in e, for live commits and replay alike.
func (s *Store) apply(e entry) {
	for _, k := range e.Keys {
		if _, ok := s.keys[k.ID]; !ok {
			s.tenantKeys[k.TenantID] = append(s.tenantKeys[k.TenantID], k.ID)
		}
		s.keys[k.ID] = k
	}
	for _, t := range e.Tenants {
		s.tenants[t.ID] = t
	}
	for _, p := range e.Peppers {
		s.peppers[p.Version] = p
	}
	for _, a := range e.Audit {
		if s.audit[a.TenantID] == nil {
			s.audit[a.TenantID] = make(map[string]store.AuditEntry)
		}
		s.audit[a.TenantID][store.AuditOrder(a)] = a
	}
	for _, r := range e.Idempotency {
		s.idem[idemID{r.TenantID, r.Key}] = r
	}
	for _, id := range e.Forget {
		delete(s.idem, id)
	}
	for job, cursor := range e.Checkpoints {
		if cursor == "" {
			delete(s.checkpoint, job)
		} else {
			s.checkpoint[job] = cursor
		}
	}
}
