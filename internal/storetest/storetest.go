// Package storetest runs a test against every store backend: the embedded
// store in memory and the DynamoDB store on DynamoDB Local. Packages that
// use it call dynamolocal.Main from their TestMain.
package storetest

import (
	"testing"
	"time"

	"github.com/keyward/keyward/internal/dynamolocal"
	"github.com/keyward/keyward/pkg/store"
	"github.com/keyward/keyward/pkg/store/dynamo"
	"github.com/keyward/keyward/pkg/store/embedded"
)

// ForEach runs test once per backend, each in a subtest named after it,
// with a fresh, empty store whose TTL filtering reads time from now.
func ForEach(t *testing.T, now func() time.Time, test func(t *testing.T, s store.Store)) {
	t.Run("embedded", func(t *testing.T) {
		s := embedded.NewMemory(embedded.WithClock(now))
		t.Cleanup(func() { _ = s.Close() })
		test(t, s)
	})
	t.Run("dynamodb", func(t *testing.T) {
		client, table := dynamolocal.NewTable(t)
		test(t, dynamo.New(client, table, dynamo.WithClock(now)))
	})
}
