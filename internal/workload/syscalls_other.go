//go:build linux && !amd64

package workload

import "golang.org/x/sys/unix"

// Other architectures have only the *at forms of these system calls.

func sysOpen(path string, flags int, mode uint32) (int, error) {
	return unix.Openat(unix.AT_FDCWD, path, flags, mode)
}

func sysCreat(path string, mode uint32) (int, error) {
	return unix.Openat(unix.AT_FDCWD, path, unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC, mode)
}

func sysRename(from, to string) error {
	return unix.Renameat(unix.AT_FDCWD, from, unix.AT_FDCWD, to)
}

func sysLink(from, to string) error {
	return unix.Linkat(unix.AT_FDCWD, from, unix.AT_FDCWD, to, 0)
}

func sysSymlink(target, path string) error { return unix.Symlinkat(target, unix.AT_FDCWD, path) }
func sysUnlink(path string) error          { return unix.Unlinkat(unix.AT_FDCWD, path, 0) }

func sysRmdir(path string) error {
	return unix.Unlinkat(unix.AT_FDCWD, path, unix.AT_REMOVEDIR)
}

func sysMkdir(path string, mode uint32) error { return unix.Mkdirat(unix.AT_FDCWD, path, mode) }

func sysChmod(path string, mode uint32) error { return unix.Fchmodat(unix.AT_FDCWD, path, mode, 0) }

func sysChown(path string, uid, gid int) error {
	return unix.Fchownat(unix.AT_FDCWD, path, uid, gid, 0)
}
