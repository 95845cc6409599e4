// Package storetest runs a test against every store backend: the embedded
// store in memory and the DynamoDB store on DynamoDB Local. Packages that
// use it call dynamolocal.Main from their TestMain.
package storetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/dynamolocal"
	"github.com/keyward/keyward/pkg/pepper"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/store/dynamo"
	"github.com/keyward/keyward/pkg/store/embedded"
)

// ForEach runs test once per backend, each in a subtest named after it,
// with a fresh, empty store whose TTL filtering reads time from now.
func ForEach(t *testing.T, now func() time.Time, test func(t *testing.T, s store.Store)) {
	t.Run("embedded", func(t *testing.T) {
		test(t, Temp(t, embedded.WithClock(now)))
	})
	t.Run("dynamodb", func(t *testing.T) {
		client, table := dynamolocal.NewTable(t)
		test(t, dynamo.New(client, table, dynamo.WithClock(now)))
	})
}

// IndexLag is how far the indexes of a Lagging store trail its table:
// longer than DynamoDB's usual propagation, a fraction of a second.
const IndexLag = 300 * time.Millisecond

// LaggingStore is a DynamoDB store whose indexes lag its table; Settle
// waits until they show every write so far (conformance.Settler).
type LaggingStore struct {
	*dynamo.Store
	indexes *dynamolocal.LaggingIndexes
}

// Settle implements conformance.Settler.
func (s LaggingStore) Settle() { s.indexes.Settle() }

// PauseIndexes implements conformance.Pauser.
func (s LaggingStore) PauseIndexes() (resume func()) { return s.indexes.Pause() }

// Lagging is a DynamoDB Local store whose indexes lag its table by
// IndexLag, as the service's may: code that must not miss a key written a
// moment ago is tested on it.
func Lagging(t *testing.T, now func() time.Time) LaggingStore {
	client, table := dynamolocal.NewTable(t)
	indexes := dynamolocal.NewLaggingIndexes(client, IndexLag)
	return LaggingStore{Store: dynamo.New(indexes, table, dynamo.WithClock(now)), indexes: indexes}
}

// Temp is an embedded store in a temporary file, closed (and removed)
// when the test ends.
func Temp(t testing.TB, opts ...embedded.Option) *embedded.Store {
	t.Helper()
	s, err := embedded.OpenTemp(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Peppers gives st a first pepper version, made at now under a local key
// ring, and loads the ring that hashes and verifies with it.
func Peppers(t testing.TB, st store.Store, now time.Time, opts ...pepper.Option) (*pepper.LocalKeyring, *pepper.Ring) {
	t.Helper()
	kr, err := pepper.NewLocalKeyring(bytes.Repeat([]byte{7}, pepper.Size))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pepper.Create(t.Context(), st, kr, now); err != nil {
		t.Fatal(err)
	}
	ring, err := pepper.Load(t.Context(), st, kr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return kr, ring
}
