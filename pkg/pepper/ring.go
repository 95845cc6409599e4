package pepper

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/pkg/store"
)

// ErrUnknownVersion means a key names a pepper version this process cannot
// load even after reloading: verification must fail closed.
var ErrUnknownVersion = errors.New("pepper: unknown version")

// Source lists the stored pepper versions.
type Source interface {
	ListPeppers(ctx context.Context) ([]store.Pepper, error)
}

// maxTokenLen bounds what the pooled hashers copy; apikey tokens are at
// most 64 bytes, and anything longer is hashed without the pool.
const maxTokenLen = 64

// reloadInterval limits how often meeting an unknown version may cost a
// store read and KMS calls, so that a corrupt item cannot turn every
// request into a reload.
const reloadInterval = 5 * time.Second

// RefreshInterval bounds how stale a process's view of the versions gets:
// a rotation made elsewhere becomes this process's current version within
// it. Versions are retired only well after a rotation (see package jobs),
// so no process still hashes new keys with a version being retired.
const RefreshInterval = 5 * time.Minute

// Ring holds the plaintext peppers of one process: each version is
// unwrapped once and kept in memory. New hashes use the newest unretired
// version; verification uses whichever version the key was hashed with.
type Ring struct {
	src    Source
	unwrap Unwrapper
	now    func() time.Time

	// state is replaced whole, never modified, so that a verification
	// reads it without a lock; reloads, which replace it, hold reloadMu.
	state    atomic.Pointer[ringState]
	reloadMu sync.Mutex
}

type ringState struct {
	versions   map[int]*version
	current    int
	lastReload time.Time // the last reload attempt, successful or not
}

type version struct {
	pool sync.Pool // of *hasher
}

// hasher is an HMAC keyed with one pepper plus scratch space, reused so
// that verification allocates nothing.
type hasher struct {
	mac hash.Hash
	in  [maxTokenLen]byte
	sum [sha256.Size]byte
}

func newVersion(pepper []byte) *version {
	key := append([]byte(nil), pepper...)
	v := &version{}
	v.pool.New = func() any { return &hasher{mac: hmac.New(sha256.New, key)} }
	return v
}

// Load unwraps every unretired stored version. It fails if there is none,
// or if any cannot be unwrapped: a process that cannot verify every live
// key must not start.
func Load(ctx context.Context, src Source, unwrap Unwrapper, opts ...Option) (*Ring, error) {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return load(ctx, src, unwrap, o.now)
}

// Option configures a Ring.
type Option func(*options)

type options struct{ now func() time.Time }

// WithClock sets the clock that times reloads (tests use a fake one).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

func load(ctx context.Context, src Source, unwrap Unwrapper, now func() time.Time) (*Ring, error) {
	r := &Ring{src: src, unwrap: unwrap, now: now}
	r.state.Store(&ringState{versions: map[int]*version{}})
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	if err := r.reload(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// reload reads the stored versions and unwraps those it does not hold
// yet. The caller holds reloadMu.
func (r *Ring) reload(ctx context.Context) error {
	old := r.state.Load()
	attempted := *old
	attempted.lastReload = r.now()
	r.state.Store(&attempted)
	peppers, err := r.src.ListPeppers(ctx)
	if err != nil {
		return fmt.Errorf("pepper: listing versions: %w", err)
	}
	next := ringState{versions: maps.Clone(old.versions), lastReload: attempted.lastReload}
	for _, p := range peppers {
		if !p.RetiredAt.IsZero() {
			continue
		}
		next.current = max(next.current, p.Version)
		if next.versions[p.Version] != nil {
			continue
		}
		plain, err := r.unwrap.Unwrap(ctx, p.Ciphertext, p.Version)
		if err != nil {
			return err
		}
		next.versions[p.Version] = newVersion(plain)
		clear(plain)
	}
	if next.current == 0 {
		return errors.New("pepper: no active pepper version; create one first")
	}
	r.state.Store(&next)
	return nil
}

// Current is the version new hashes use. Every RefreshInterval one caller
// reloads the stored versions first; if that fails, the ring keeps what
// it holds and tries again after the next interval.
func (r *Ring) Current() int {
	if r.now().Sub(r.state.Load().lastReload) >= RefreshInterval && r.reloadMu.TryLock() {
		// Another caller may have reloaded since the check.
		if r.now().Sub(r.state.Load().lastReload) >= RefreshInterval {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = r.reload(ctx)
			cancel()
		}
		r.reloadMu.Unlock()
	}
	return r.state.Load().current
}

// Refresh reloads the stored versions, so a long-lived process picks up a
// rotation before it meets a key hashed under the new version.
func (r *Ring) Refresh(ctx context.Context) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	return r.reload(ctx)
}

func (r *Ring) version(ctx context.Context, v int) (*version, error) {
	if entry := r.state.Load().versions[v]; entry != nil {
		return entry, nil
	}
	// Meeting an unknown version reloads once, then fails closed.
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	st := r.state.Load()
	if entry := st.versions[v]; entry != nil {
		return entry, nil
	}
	if r.now().Sub(st.lastReload) < reloadInterval {
		return nil, fmt.Errorf("%w %d", ErrUnknownVersion, v)
	}
	if err := r.reload(ctx); err != nil {
		return nil, err
	}
	if entry := r.state.Load().versions[v]; entry != nil {
		return entry, nil
	}
	return nil, fmt.Errorf("%w %d", ErrUnknownVersion, v)
}

// Hash returns HMAC-SHA256(pepper, token) under the current version, for
// storing with a new key.
func (r *Ring) Hash(ctx context.Context, token string) (int, []byte, error) {
	v := r.Current()
	sum, err := r.HashVersion(ctx, v, token)
	return v, sum, err
}

// HashVersion returns HMAC-SHA256(pepper, token) under version v.
func (r *Ring) HashVersion(ctx context.Context, v int, token string) ([]byte, error) {
	entry, err := r.version(ctx, v)
	if err != nil {
		return nil, err
	}
	h := entry.get()
	defer entry.pool.Put(h)
	return append([]byte(nil), h.compute(token)...), nil
}

// Verify reports whether want is the HMAC of token under version v, in
// time independent of where they differ. An unloadable version is an
// error, never a match.
func (r *Ring) Verify(ctx context.Context, v int, token string, want []byte) (bool, error) {
	entry, err := r.version(ctx, v)
	if err != nil {
		return false, err
	}
	h := entry.get()
	ok := hmac.Equal(h.compute(token), want)
	entry.pool.Put(h)
	return ok, nil
}

func (v *version) get() *hasher { return v.pool.Get().(*hasher) }

// compute returns the HMAC of token in the hasher's scratch space; the
// result is valid until the hasher is used again.
func (h *hasher) compute(token string) []byte {
	h.mac.Reset()
	if len(token) <= maxTokenLen {
		n := copy(h.in[:], token)
		h.mac.Write(h.in[:n])
	} else {
		h.mac.Write([]byte(token))
	}
	return h.mac.Sum(h.sum[:0])
}

// VersionStore is where Create reads and adds versions.
type VersionStore interface {
	Source
	CreatePepper(ctx context.Context, p store.Pepper) error
}

// Create stores a new pepper version, one above the highest stored, and
// returns it. The generator never reveals the plaintext. Two concurrent
// creations cannot both win: the loser gets store.ErrAlreadyExists.
func Create(ctx context.Context, s VersionStore, gen Generator, now time.Time) (store.Pepper, error) {
	peppers, err := s.ListPeppers(ctx)
	if err != nil {
		return store.Pepper{}, fmt.Errorf("pepper: listing versions: %w", err)
	}
	next := 1
	for _, p := range peppers {
		next = max(next, p.Version+1)
	}
	ct, keyID, err := gen.GenerateWrapped(ctx, next)
	if err != nil {
		return store.Pepper{}, err
	}
	p := store.Pepper{Version: next, Ciphertext: ct, KeyID: keyID, CreatedAt: now}
	if err := s.CreatePepper(ctx, p); err != nil {
		return store.Pepper{}, fmt.Errorf("pepper: storing version %d: %w", next, err)
	}
	return p, nil
}
