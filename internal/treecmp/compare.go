//go:build linux

// Package treecmp compares two directory trees: names, types, sizes, bytes,
// permission bits, symlink targets, optionally owners, and hard-link
// structure. Tests use it to check that a replica matches its master.
package treecmp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// Options tunes Compare.
type Options struct {
	// Ignore lists slash paths relative to the roots (e.g. "postmaster.pid")
	// that are skipped on both sides; an ignored directory is skipped whole.
	Ignore []string
	// Owners also compares uid and gid.
	Owners bool
}

// chunk is how much of each file is read at a time.
const chunk = 128 << 10

// Compare walks the trees rooted at a and b without following symlinks and
// returns their differences in walk order, hard-link differences last. The
// roots themselves are only checked to be directories: callers create them,
// so their permissions and owners say nothing about the trees' contents.
func Compare(a, b string, opts Options) ([]Diff, error) {
	c := &comparer{
		opts:   opts,
		ignore: make(map[string]bool, len(opts.Ignore)),
		a:      newTree(a),
		b:      newTree(b),
		bufA:   make([]byte, chunk),
		bufB:   make([]byte, chunk),
	}
	for _, p := range opts.Ignore {
		c.ignore[path.Clean(p)] = true
	}
	for _, root := range []string{a, b} {
		var st unix.Stat_t
		if err := unix.Lstat(root, &st); err != nil {
			return nil, &os.PathError{Op: "lstat", Path: root, Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil, fmt.Errorf("treecmp: %s is not a directory", root)
		}
	}
	if err := c.dir("."); err != nil {
		return nil, err
	}
	c.hardLinks()
	return c.diffs, nil
}

type comparer struct {
	opts       Options
	ignore     map[string]bool
	a, b       *tree
	bufA, bufB []byte
	diffs      []Diff
}

func (c *comparer) add(p, format string, args ...any) {
	c.diffs = append(c.diffs, Diff{Path: p, What: fmt.Sprintf(format, args...)})
}

// dir compares the entries of directory rel, present in both trees.
func (c *comparer) dir(rel string) error {
	namesA, err := readNames(c.a.abs(rel))
	if err != nil {
		return err
	}
	namesB, err := readNames(c.b.abs(rel))
	if err != nil {
		return err
	}
	for _, name := range union(namesA, namesB) {
		p := path.Join(rel, name)
		if c.ignore[p] {
			continue
		}
		_, inA := slices.BinarySearch(namesA, name)
		_, inB := slices.BinarySearch(namesB, name)
		switch {
		case !inB:
			c.add(p, "missing in b")
			if err := c.record(c.a, p); err != nil {
				return err
			}
		case !inA:
			c.add(p, "missing in a")
			if err := c.record(c.b, p); err != nil {
				return err
			}
		default:
			if err := c.entry(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// entry compares path p, present in both trees.
func (c *comparer) entry(p string) error {
	sa, err := c.a.lstat(p)
	if err != nil {
		return err
	}
	sb, err := c.b.lstat(p)
	if err != nil {
		return err
	}
	ka, kb := kind(sa.Mode), kind(sb.Mode)
	if ka != kb {
		c.add(p, "type %s vs %s", ka, kb)
		// Not compared further, but their inodes still shape the link groups.
		return errors.Join(c.record(c.a, p), c.record(c.b, p))
	}
	// A symlink's own permission bits are always 0777 and never used.
	if ka != "symlink" && sa.Mode&07777 != sb.Mode&07777 {
		c.add(p, "mode %04o vs %04o", sa.Mode&07777, sb.Mode&07777)
	}
	if c.opts.Owners && (sa.Uid != sb.Uid || sa.Gid != sb.Gid) {
		c.add(p, "owner %d:%d vs %d:%d", sa.Uid, sa.Gid, sb.Uid, sb.Gid)
	}
	switch ka {
	case "dir":
		return c.dir(p)
	case "file":
		if sa.Size != sb.Size {
			c.add(p, "size %d vs %d", sa.Size, sb.Size)
		}
		if err := c.bytes(p, min(sa.Size, sb.Size)); err != nil {
			return err
		}
	case "symlink":
		ta, err := os.Readlink(c.a.abs(p))
		if err != nil {
			return err
		}
		tb, err := os.Readlink(c.b.abs(p))
		if err != nil {
			return err
		}
		if ta != tb {
			c.add(p, "symlink target %q vs %q", ta, tb)
		}
	}
	c.a.link(p, sa)
	c.b.link(p, sb)
	return nil
}

// bytes reports the first differing offset within the first n bytes of the
// two files, reading them a chunk at a time.
func (c *comparer) bytes(p string, n int64) error {
	fa, err := openNoFollow(c.a.abs(p))
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := openNoFollow(c.b.abs(p))
	if err != nil {
		return err
	}
	defer fb.Close()
	for off := int64(0); off < n; off += chunk {
		k := int(min(chunk, n-off))
		if _, err := io.ReadFull(fa, c.bufA[:k]); err != nil {
			return fmt.Errorf("treecmp: read %s: %w", fa.Name(), err)
		}
		if _, err := io.ReadFull(fb, c.bufB[:k]); err != nil {
			return fmt.Errorf("treecmp: read %s: %w", fb.Name(), err)
		}
		if bytes.Equal(c.bufA[:k], c.bufB[:k]) {
			continue
		}
		for i := range k {
			if c.bufA[i] != c.bufB[i] {
				c.add(p, "bytes differ at offset %d", off+int64(i))
				return nil
			}
		}
	}
	return nil
}

func openNoFollow(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// union merges two sorted name lists.
func union(a, b []string) []string {
	return slices.Compact(slices.Sorted(slices.Values(append(slices.Clip(a), b...))))
}

func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "char device"
	case unix.S_IFBLK:
		return "block device"
	}
	return fmt.Sprintf("mode %#o", mode&unix.S_IFMT)
}

// tree is one side of the comparison and the inodes seen in it.
type tree struct {
	root   string
	inodes map[string]inode   // non-directory path -> inode
	groups map[inode][]string // inode with more than one link -> its paths here
}

type inode struct{ dev, ino uint64 }

func newTree(root string) *tree {
	return &tree{root: root, inodes: map[string]inode{}, groups: map[inode][]string{}}
}

func (t *tree) abs(p string) string {
	return filepath.Join(t.root, filepath.FromSlash(p))
}

func (t *tree) lstat(p string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Lstat(t.abs(p), &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: t.abs(p), Err: err}
	}
	return &st, nil
}

// link notes the inode of non-directory p for the hard-link comparison.
func (t *tree) link(p string, st *unix.Stat_t) {
	if kind(st.Mode) == "dir" {
		return
	}
	id := inode{dev: uint64(st.Dev), ino: st.Ino}
	t.inodes[p] = id
	if st.Nlink > 1 {
		t.groups[id] = append(t.groups[id], p)
	}
}

// record notes the inodes of p in t and, for a directory, of everything
// beneath it: entries present on one side only still belong to that side's
// link groups.
func (c *comparer) record(t *tree, p string) error {
	return filepath.WalkDir(t.abs(p), func(name string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(t.root, name)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if c.ignore[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		st, err := t.lstat(rel)
		if err != nil {
			return err
		}
		t.link(rel, st)
		return nil
	})
}
