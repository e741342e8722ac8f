//go:build linux

package regent

import (
	"syscall"
	"unsafe"
)

// clockMonotonic is CLOCK_MONOTONIC's id in <time.h> (Linux).
const clockMonotonic = 1

// MonotonicNs is now on CLOCK_MONOTONIC in ns: the clock of regent's deadline_monotonic_ns.
// Go's time.Now() reads the same clock for its monotonic reading but does not expose its
// value, so the library asks the kernel itself (clock_gettime(2), through package syscall).
func MonotonicNs() uint64 {
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic,
		uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		panic("clock_gettime(CLOCK_MONOTONIC): " + errno.Error())
	}
	return uint64(ts.Sec)*1e9 + uint64(ts.Nsec)
}
