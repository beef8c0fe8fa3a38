//go:build linux

package replay

import (
	"bytes"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ValidPath reports whether p is a clean relative path: not empty, not
// absolute, no empty, "." or ".." component, no NUL, no component longer
// than NAME_MAX, and shorter than PATH_MAX (which counts the terminating NUL).
// It runs before any system call so that a malformed path never reaches the
// kernel.
func ValidPath(p string) bool {
	if p == "" || len(p) >= unix.PathMax || p[0] == '/' {
		return false
	}
	start := 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			if p[i] == 0 {
				return false
			}
			continue
		}
		if c := p[start:i]; c == "" || c == "." || c == ".." || len(c) > unix.NAME_MAX {
			return false
		}
		start = i + 1
	}
	return true
}

// validTarget reports whether t can be stored as a symlink's target. A target
// is data, kept verbatim and never resolved by the applier, so it may point
// anywhere; it only has to be something the kernel accepts.
func validTarget(t string) bool {
	return t != "" && len(t) < unix.PathMax && strings.IndexByte(t, 0) < 0
}

// isAncestor reports whether dir is a strict ancestor of p.
func isAncestor(dir, p string) bool {
	return len(p) > len(dir) && p[len(dir)] == '/' && strings.HasPrefix(p, dir)
}

// split returns the parent directory ("" for the root) and final name of a
// valid path.
func split(p string) (dir, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

// openBeneath opens path relative to dirfd with openat2(2). RESOLVE_BENEATH
// makes the kernel refuse any resolution that would leave dirfd's tree, by
// "..", an absolute symlink or a symlink climbing out (EXDEV);
// RESOLVE_NO_MAGICLINKS refuses /proc-style links. Both failures, and ELOOP
// (a symlink where O_NOFOLLOW forbids one, or a symlink loop), are reported as
// ErrEscape. Other failures are returned as the bare errno.
func openBeneath(dirfd int, path string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(dirfd, path, &how)
		switch {
		case err == nil:
			return fd, nil
		case err == unix.EAGAIN && try < 16:
			// A concurrent rename raced with ".." in a symlink's target;
			// the kernel asks for a retry rather than risk an escape.
			continue
		case err == unix.EXDEV || err == unix.ELOOP:
			return -1, ErrEscape
		}
		return -1, err
	}
}

// sysErr names the system call that failed; ErrEscape and nil pass through.
func sysErr(call string, err error) error {
	if _, ok := err.(unix.Errno); ok {
		return os.NewSyscallError(call, err)
	}
	return err
}

// pruneNames parses a prune record's list: names, each ended by a NUL. Each
// must be a single valid path component.
func pruneNames(b []byte) (map[string]bool, bool) {
	keep := map[string]bool{}
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return nil, false
		}
		name := string(b[:i])
		if strings.IndexByte(name, '/') >= 0 || !ValidPath(name) {
			return nil, false
		}
		keep[name] = true
		b = b[i+1:]
	}
	return keep, true
}
