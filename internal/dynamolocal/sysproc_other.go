//go:build !linux

package dynamolocal

import "syscall"

// sysProcAttr is nil where there is no parent-death signal; Main still
// stops java when the tests end normally.
func sysProcAttr() *syscall.SysProcAttr { return nil }
