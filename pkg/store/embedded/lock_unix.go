//go:build unix

package embedded

import (
	"errors"
	"os"
	"syscall"
)

// errLocked: another process holds the database.
var errLocked = errors.New("locked")

// holdLock takes the lock bbolt takes (flock, exclusive) on the open file,
// without waiting, so that the file can be read before bbolt opens it
// while no other process writes it.
func holdLock(f *os.File) (release func(), err error) {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }, nil
}
