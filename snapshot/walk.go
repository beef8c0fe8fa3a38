//go:build linux

package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// entry is one path of a walk.
type entry struct {
	rel    string // relative to the walked directory; "." is the directory itself
	st     unix.Stat_t
	target string // a symlink's target
}

func (e *entry) kind() uint32 { return e.st.Mode & unix.S_IFMT }

// walk is a listing of a directory tree, parents before their children.
type walk struct {
	entries []entry
	began   time.Time
}

type devIno struct{ dev, ino uint64 }

// walkTree lists dir, on a frozen filesystem, without following symlinks,
// calling check before each entry and stopping at its error. Directories on
// another device (mounts, and nested btrfs subvolumes, which btrfs snapshots
// leave out too) are listed but not entered, so they come out empty; other
// entries on another device are left out, and so is the directory skip (the
// staging directory).
func walkTree(dir string, skip devIno, check func() error) (*walk, error) {
	w := &walk{began: time.Now()}
	var top unix.Stat_t
	if err := unix.Lstat(dir, &top); err != nil {
		return nil, fmt.Errorf("snapshot: lstat %s: %w", dir, err)
	}
	w.entries = append(w.entries, entry{rel: ".", st: top})
	for i := 0; i < len(w.entries); i++ {
		parent := w.entries[i]
		if parent.kind() != unix.S_IFDIR || parent.st.Dev != top.Dev {
			continue
		}
		names, err := readNames(filepath.Join(dir, parent.rel))
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		for _, name := range names {
			if err := check(); err != nil {
				return nil, err
			}
			e := entry{rel: filepath.Join(parent.rel, name)}
			full := filepath.Join(dir, e.rel)
			if err := unix.Lstat(full, &e.st); err != nil {
				return nil, fmt.Errorf("snapshot: lstat %s: %w", full, err)
			}
			if (devIno{uint64(e.st.Dev), e.st.Ino}) == skip {
				continue
			}
			if e.st.Dev != top.Dev && e.kind() != unix.S_IFDIR {
				continue
			}
			if e.kind() == unix.S_IFLNK {
				if e.target, err = os.Readlink(full); err != nil {
					return nil, fmt.Errorf("snapshot: %w", err)
				}
			}
			w.entries = append(w.entries, e)
		}
	}
	return w, nil
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
