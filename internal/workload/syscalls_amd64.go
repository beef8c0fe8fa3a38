//go:build linux

package workload

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// x/sys/unix implements open, creat, rename, unlink, mkdir, rmdir, link,
// symlink, chmod and chown with their *at forms; the capture must also see
// the original system calls, which amd64 still has, so they are issued here.

func sysOpen(path string, flags int, mode uint32) (int, error) {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return -1, err
	}
	fd, _, e := unix.Syscall(unix.SYS_OPEN, uintptr(unsafe.Pointer(p)), uintptr(flags), uintptr(mode))
	return int(fd), errnoErr(e)
}

func sysCreat(path string, mode uint32) (int, error) {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return -1, err
	}
	fd, _, e := unix.Syscall(unix.SYS_CREAT, uintptr(unsafe.Pointer(p)), uintptr(mode), 0)
	return int(fd), errnoErr(e)
}

func sysRename(from, to string) error { return sysPath2(unix.SYS_RENAME, from, to) }
func sysLink(from, to string) error   { return sysPath2(unix.SYS_LINK, from, to) }

func sysSymlink(target, path string) error { return sysPath2(unix.SYS_SYMLINK, target, path) }

func sysUnlink(path string) error { return sysPath(unix.SYS_UNLINK, path, 0, 0) }
func sysRmdir(path string) error  { return sysPath(unix.SYS_RMDIR, path, 0, 0) }

func sysMkdir(path string, mode uint32) error {
	return sysPath(unix.SYS_MKDIR, path, uintptr(mode), 0)
}

func sysChmod(path string, mode uint32) error {
	return sysPath(unix.SYS_CHMOD, path, uintptr(mode), 0)
}

func sysChown(path string, uid, gid int) error {
	return sysPath(unix.SYS_CHOWN, path, uintptr(uid), uintptr(gid))
}

func sysPath(trap uintptr, path string, a1, a2 uintptr) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	_, _, e := unix.Syscall(trap, uintptr(unsafe.Pointer(p)), a1, a2)
	return errnoErr(e)
}

func sysPath2(trap uintptr, path1, path2 string) error {
	p1, err := unix.BytePtrFromString(path1)
	if err != nil {
		return err
	}
	p2, err := unix.BytePtrFromString(path2)
	if err != nil {
		return err
	}
	_, _, e := unix.Syscall(trap, uintptr(unsafe.Pointer(p1)), uintptr(unsafe.Pointer(p2)), 0)
	return errnoErr(e)
}
