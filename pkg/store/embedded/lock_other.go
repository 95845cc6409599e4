//go:build !unix

package embedded

import (
	"errors"
	"os"
)

// errLocked: another process holds the database.
var errLocked = errors.New("locked")

// holdLock takes no lock where flock does not exist; bbolt's own lock still
// guards the file once it opens it.
func holdLock(*os.File) (func(), error) { return func() {}, nil }
