//go:build linux

package workload

import (
	"path"

	"golang.org/x/sys/unix"
)

// atPath is a (dirfd, path) pair for the *at system calls.
type atPath struct {
	fd    int
	path  string
	owned bool // fd was opened for this call and must be closed
}

// at addresses rel in one of three ways: relative to the root's descriptor,
// relative to a descriptor of its parent directory (which follows the
// directory if another thread renames it meanwhile), or absolute with
// AT_FDCWD.
func (w *worker) at(rel string) (atPath, error) {
	if w.rng.IntN(3) == 0 {
		return atPath{fd: unix.AT_FDCWD, path: w.abs(rel)}, nil
	}
	return w.atDir(rel)
}

// atDir addresses rel relative to a real directory descriptor, as openat2
// with RESOLVE_BENEATH needs.
func (w *worker) atDir(rel string) (atPath, error) {
	dir := path.Dir(rel)
	if dir == "." || w.rng.IntN(2) == 0 {
		return atPath{fd: w.rootfd, path: rel}, nil
	}
	flags := unix.O_RDONLY
	if w.rng.IntN(2) == 0 {
		flags = unix.O_PATH
	}
	fd, err := unix.Openat(w.rootfd, dir, flags|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return atPath{}, err
	}
	return atPath{fd: fd, path: path.Base(rel), owned: true}, nil
}

func (a atPath) release() {
	if a.owned {
		unix.Close(a.fd)
	}
}

// at2 addresses two paths, each in its own way, releasing the first if the
// second fails.
func (w *worker) at2(rel1, rel2 string) (atPath, atPath, error) {
	a, err := w.at(rel1)
	if err != nil {
		return atPath{}, atPath{}, err
	}
	b, err := w.at(rel2)
	if err != nil {
		a.release()
		return atPath{}, atPath{}, err
	}
	return a, b, nil
}
