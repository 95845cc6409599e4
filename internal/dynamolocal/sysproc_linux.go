package dynamolocal

import "syscall"

// sysProcAttr kills java with the test binary, even if it dies before Main
// gets to stop it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
