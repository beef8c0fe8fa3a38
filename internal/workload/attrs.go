//go:build linux

package workload

import "golang.org/x/sys/unix"

// Modes include setuid, setgid and sticky bits: a chown clears setuid and
// setgid, and a setgid directory passes its group on, which a replica must
// reproduce.
var (
	fileModes = []uint32{0o644, 0o600, 0o640, 0o755, 0o444, 0o4755, 0o2755}
	dirModes  = []uint32{0o755, 0o700, 0o750, 0o711, 0o2775, 0o1777}
	uids      = []int{-1, 0, 1000, 1001, 65534} // -1 leaves it unchanged
	gids      = []int{-1, 0, 100, 1000, 65534}
)

func (w *worker) dirMode() uint32 { return dirModes[w.rng.IntN(len(dirModes))] }

func (w *worker) mode(isDir bool) uint32 {
	if isDir {
		return w.dirMode()
	}
	return fileModes[w.rng.IntN(len(fileModes))]
}

func (w *worker) owner() (int, int) {
	return uids[w.rng.IntN(len(uids))], gids[w.rng.IntN(len(gids))]
}

// times returns explicit access and modification times, sometimes leaving
// the access time alone.
func (w *worker) times() [2]unix.Timespec {
	var ts [2]unix.Timespec
	for i := range ts {
		ts[i] = unix.NsecToTimespec((1_500_000_000+w.rng.Int64N(300_000_000))*1e9 + w.rng.Int64N(1e9))
	}
	if w.rng.IntN(4) == 0 {
		ts[0].Nsec = unix.UTIME_OMIT
	}
	return ts
}

// openNode opens a file or directory read-only (following a symlink) for
// the descriptor forms of the attribute calls.
func (w *worker) openNode() (int, bool, error) {
	rel, isDir := w.node()
	fd, err := unix.Openat(w.rootfd, rel, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	return fd, isDir, err
}

func (w *worker) chmod() error {
	rel, isDir := w.node()
	return sysChmod(w.abs(rel), w.mode(isDir))
}

func (w *worker) fchmod() error {
	fd, isDir, err := w.openNode()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fchmod(fd, w.mode(isDir))
}

func (w *worker) fchmodat() error {
	rel, isDir := w.node()
	a, err := w.at(rel)
	if err != nil {
		return err
	}
	defer a.release()
	return unix.Fchmodat(a.fd, a.path, w.mode(isDir), 0)
}

func (w *worker) chown() error {
	rel, _ := w.node()
	uid, gid := w.owner()
	return sysChown(w.abs(rel), uid, gid)
}

func (w *worker) fchown() error {
	fd, _, err := w.openNode()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	uid, gid := w.owner()
	return unix.Fchown(fd, uid, gid)
}

// lchown changes the owner of a symlink itself when the name holds one.
func (w *worker) lchown() error {
	rel, _ := w.node()
	uid, gid := w.owner()
	return unix.Lchown(w.abs(rel), uid, gid)
}

func (w *worker) fchownat() error {
	rel, _ := w.node()
	a, err := w.at(rel)
	if err != nil {
		return err
	}
	defer a.release()
	uid, gid := w.owner()
	flags := 0
	if w.rng.IntN(2) == 0 {
		flags = unix.AT_SYMLINK_NOFOLLOW
	}
	return unix.Fchownat(a.fd, a.path, uid, gid, flags)
}

// utimensatPath sets times by name, sometimes on a symlink itself.
func (w *worker) utimensatPath() error {
	rel, _ := w.node()
	a, err := w.at(rel)
	if err != nil {
		return err
	}
	defer a.release()
	flags := 0
	if w.rng.IntN(2) == 0 {
		flags = unix.AT_SYMLINK_NOFOLLOW
	}
	ts := w.times()
	return unix.UtimesNanoAt(a.fd, a.path, ts[:], flags)
}

// utimensatFd sets times through a descriptor: utimensat(fd, NULL, ...).
func (w *worker) utimensatFd() error {
	fd, _, err := w.openNode()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ts := w.times()
	return utimensatFd(fd, &ts)
}
