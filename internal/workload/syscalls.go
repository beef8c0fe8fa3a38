//go:build linux

package workload

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// utimensatFd sets the times of the file open on fd with utimensat(fd, NULL,
// times, 0), the futimens form, which x/sys/unix does not offer.
func utimensatFd(fd int, ts *[2]unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	return errnoErr(e)
}

func errnoErr(e unix.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}
