// Package embedded is the store backend of the local stack and of tests:
// one bbolt database file (etcd's B+tree), in which every change the store
// contract makes atomic is one database transaction.
//
// What bbolt gives: ACID transactions with one writer and readers that
// never block it, an fsync before a commit returns, crash recovery to the
// last commit, ordered keys (so every listing is a range read, O(page + log
// N)), a file lock, and checksummed meta pages. What it does not give is a
// checksum over data pages, so every value here carries a CRC-32C of its
// bucket, its key and itself, checked on every read: damage is an error
// naming the file, never a silently changed key. Faults that damage makes
// bbolt raise (a panic, a fault on the memory-mapped file) are turned into
// the same error. Expired audit entries and idempotency records are deleted
// through a TTL index; nothing is ever rewritten whole.
//
// The semantics are those of the DynamoDB backend: same sentinel errors,
// ordering, TTL filtering and transaction size limit (package conformance).
package embedded

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/keyward/keyward/pkg/store"
)

var _ store.Store = (*Store)(nil)

// errClosed is returned by every call after Close.
var errClosed = errors.New("embedded: store is closed")

// ErrDamaged: the database file does not read back as written. Nothing
// read from it is served.
var ErrDamaged = errors.New("embedded: damaged database")

// formatVersion is the layout this code writes; a database of a newer
// layout is refused.
const formatVersion = 1

// Buckets.
var (
	bMeta        = []byte("meta")
	bKeys        = []byte("keys")        // id → key
	bTenantKeys  = []byte("tenant_keys") // tenant \0 store.KeyOrder → id
	bExpiry      = []byte("expiry")      // store.ExpiryOrder → id, for active or expiring keys with an expiry
	bTenants     = []byte("tenants")     // id → tenant
	bPeppers     = []byte("peppers")     // version, 8 bytes big-endian → pepper
	bAudit       = []byte("audit")       // tenant \0 store.AuditOrder → entry
	bAuditKeys   = []byte("audit_keys")  // tenant \0 key id \0 store.AuditOrder → ""
	bIdempotency = []byte("idempotency") // tenant \0 key → record
	bCheckpoints = []byte("checkpoints") // job → cursor
	bTTL         = []byte("ttl")         // store.SortTime(expiry) \0 bucket \0 key → "": what DropExpired deletes
	bOutbox      = []byte("outbox")      // sequence, 8 bytes big-endian → audit entry not yet published
	bUsagePlans  = []byte("usage_plans") // rate-limit identity → tier (the local stand-in for API Gateway's API keys)
	bMemberKeys  = []byte("member_keys") // tenant \0 member → how many keys the member created (store.MemberKeyCount)
	bUsage       = []byte("usage")       // key id \0 store.SortTime(hour) → store.UsageHour
	bKeyWatch    = []byte("key_watch")   // key id → store.KeyWatch

	allBuckets = [][]byte{bMeta, bKeys, bTenantKeys, bExpiry, bTenants, bPeppers, bAudit, bAuditKeys, bIdempotency,
		bCheckpoints, bTTL, bOutbox, bUsagePlans, bMemberKeys, bUsage, bKeyWatch}
	metaFormat = []byte("format")
	// metaJournalImported is set by the transaction that imports an
	// earlier version's journal (ImportJournal).
	metaJournalImported = []byte("journal_imported")
)

// Store is the embedded backend. It is safe for concurrent use.
type Store struct {
	db     *bolt.DB
	path   string
	temp   string // OpenTemp's directory, removed by Close
	now    func() time.Time
	outbox bool
	// durable stores keep a record of their clean closing (sameAsClosed);
	// temporary ones are never reopened.
	durable bool
	closed  atomic.Bool
	// committed is signalled after each commit that adds to the outbox.
	committed   chan struct{}
	boltOptions func(*bolt.Options)
	keys        keyCache
	// writes counts write transactions, each counted once it has ended:
	// a key cached before a count is current while the count is.
	writes atomic.Uint64
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock that decides which audit entries and idempotency
// records have expired (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// WithOutbox keeps every audit entry in an outbox, in the transaction of
// its change, until the publisher acknowledges it (Outbox, Published): the
// local stack's stand-in for DynamoDB Streams.
func WithOutbox() Option {
	return func(s *Store) { s.outbox = true }
}

// Open opens the database at path, creating it (and its directory) if
// missing, and holds its lock until Close. It fails, naming the file and
// what to do, if another process holds the database, if it is damaged, or
// if a newer version of keyward wrote it.
func Open(path string, opts ...Option) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("embedded: creating the directory of %s: %w", path, err)
	}
	return open(path, false, opts)
}

// OpenTemp returns a store in a new temporary file that Close removes,
// written without fsync: for tests and benchmarks, which need no
// durability.
func OpenTemp(opts ...Option) (*Store, error) {
	dir, err := os.MkdirTemp("", "keyward-store-")
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	s, err := open(filepath.Join(dir, "keyward.db"), true, opts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.temp = dir
	return s, nil
}

func open(path string, temp bool, opts []Option) (_ *Store, err error) {
	s := &Store{path: path, now: time.Now, committed: make(chan struct{}, 1), durable: !temp}
	for _, o := range opts {
		o(s)
	}
	// Damage can make bbolt panic, or fault on its memory map, while it
	// opens and checks the file: both become ErrDamaged, and the file is
	// released.
	defer func() {
		if err != nil && s.db != nil {
			s.db.Close()
		}
	}()
	defer s.guard(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	o := &bolt.Options{
		Timeout:      200 * time.Millisecond,
		NoSync:       temp,
		FreelistType: bolt.FreelistMapType,
		// Readers block a writer only when the map must grow; 1 GiB of
		// address space holds about a million keys before it does.
		InitialMmapSize: 1 << 30,
	}
	if s.boltOptions != nil {
		s.boltOptions(o)
	}
	switch problem, err := verifyPages(path); {
	case errors.Is(err, errLocked):
		return nil, lockedError(path)
	case err != nil:
		return nil, fmt.Errorf("embedded: reading %s: %w", path, err)
	case problem != "":
		return nil, s.damagedFile(problem)
	}
	s.db, err = bolt.Open(path, 0o600, o)
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, lockedError(path)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, s.damagedFile(err.Error())
	case err != nil:
		return nil, fmt.Errorf("embedded: opening %s: %w", path, err)
	}
	if err := s.sameAsClosed(); err != nil {
		return nil, err
	}
	if err := s.init(); err != nil {
		return nil, err
	}
	// The check read every page through the memory map, which would keep
	// the whole file resident for the process's life (a gigabyte at a
	// million keys): the file is mapped afresh, with no page in memory
	// until a request reads it.
	if err := s.db.Close(); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	if s.db, err = bolt.Open(path, 0o600, o); err != nil {
		s.db = nil
		if errors.Is(err, berrors.ErrTimeout) { // taken in the moment it was free
			return nil, lockedError(path)
		}
		return nil, fmt.Errorf("embedded: reopening %s after its check: %w", path, err)
	}
	return s, nil
}

// cleanSuffix names the file Close leaves beside the database with the
// last transaction it committed.
const cleanSuffix = ".clean"

// sameAsClosed compares the database with what Close recorded, then
// forgets the record: bbolt keeps two meta pages and silently uses the
// older when the newer is damaged, which would undo the last acknowledged
// write. After a crash there is no record, and falling back is right (the
// newer page is then one a write left torn, never acknowledged); after a
// clean stop it is damage.
func (s *Store) sameAsClosed() error {
	if !s.durable {
		return nil
	}
	marker := s.path + cleanSuffix
	raw, err := os.ReadFile(marker)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	closed, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return fmt.Errorf("embedded: %s: %w (delete it if %s is known to be sound)", marker, err, s.path)
	}
	if now := s.txID(); now < closed {
		return s.damagedFile(fmt.Sprintf("it went back from transaction %d, where it was closed, to %d: its newest meta page is damaged", closed, now))
	}
	if err := os.Remove(marker); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	return syncDir(filepath.Dir(s.path))
}

// txID is the last committed transaction.
func (s *Store) txID() uint64 {
	var id int
	_ = s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	return uint64(id)
}

// syncDir makes a directory's entries (a file created or removed) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("embedded: syncing %s: %w", dir, err)
	}
	return nil
}

// init creates the buckets of a new database, refuses one of a newer
// layout, and checks the file's structure.
func (s *Store) init() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		raw := meta.Get(metaFormat)
		if raw == nil {
			return s.put(tx, bMeta, metaFormat, formatVersion)
		}
		var v int
		if err := s.decode(bMeta, metaFormat, raw, &v); err != nil {
			return err
		}
		if v > formatVersion {
			return fmt.Errorf("embedded: %s was written by a newer keyward (format %d, this one reads %d): use that version, or move the file away to start afresh", s.path, v, formatVersion)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.check()
}

// check runs bbolt's consistency check, which finds damage to the file's
// structure (pages leaked or used twice, keys out of order) before any
// request does; damage within a value is found by its checksum when it is
// read. The check runs on a goroutine of bbolt's, where a fault could not
// be caught: verifyPages has made sure first that every page it follows
// is inside the file. Every problem it finds is reported.
func (s *Store) check() error {
	return s.db.View(func(tx *bolt.Tx) error {
		var problems []string
		for err := range tx.Check() {
			problems = append(problems, err.Error())
		}
		if len(problems) > 0 {
			return s.damagedFile(strings.Join(problems, "; "))
		}
		return nil
	})
}

// Close releases the database and its lock (and removes a temporary one).
// Every later call fails.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return errClosed
	}
	last := s.txID()
	err := s.db.Close()
	if err == nil && s.durable {
		err = s.markClean(last)
	}
	if s.temp != "" {
		os.RemoveAll(s.temp)
	}
	if err != nil {
		return fmt.Errorf("embedded: closing %s: %w", s.path, err)
	}
	return nil
}

// markClean records, durably, the last transaction of a database closed
// cleanly (sameAsClosed).
func (s *Store) markClean(tx uint64) error {
	marker := s.path + cleanSuffix
	f, err := os.OpenFile(marker, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(strconv.FormatUint(tx, 10) + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(s.path))
}

// view runs fn in a read transaction.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	return s.run(ctx, s.db.View, fn)
}

// update runs fn in a write transaction, committed if fn returns nil.
func (s *Store) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	defer s.writes.Add(1) // committed or not: a miss costs only a read
	return s.run(ctx, s.db.Update, fn)
}

func (s *Store) run(ctx context.Context, tx func(func(*bolt.Tx) error) error, fn func(tx *bolt.Tx) error) (err error) {
	if err := s.usable(ctx); err != nil {
		return err
	}
	defer s.guard(&err)
	// A damaged page can send bbolt outside its memory map: a fault, which
	// this turns into a panic that guard recovers.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	err = tx(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return errClosed
	}
	return err
}

// usable refuses a call whose context is done, or on a closed store.
func (s *Store) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	if s.closed.Load() {
		return errClosed
	}
	return nil
}

// guard turns a panic inside bbolt, which damage to the file can cause,
// into ErrDamaged.
func (s *Store) guard(err *error) {
	if r := recover(); r != nil {
		*err = s.damagedFile(fmt.Sprint(r))
	}
}

// damagedFile is the error for damage found in the file.
func (s *Store) damagedFile(what string) error {
	return fmt.Errorf("%w %s (%s): keyward will not serve from it; restore it from a backup, or move it away to start afresh (docs/design.md, Damage)",
		ErrDamaged, s.path, what)
}

// withBoltOptions adjusts bbolt's options, for tests that limit the file.
func withBoltOptions(fn func(*bolt.Options)) Option {
	return func(s *Store) { s.boltOptions = fn }
}

// lockedError: another process holds the file's lock, which a keyward
// holds as long as it runs on the file.
func lockedError(path string) error {
	return fmt.Errorf("embedded: %s is open in another process (another keyward running on this data directory? stop it first)", path)
}
