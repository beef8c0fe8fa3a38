//go:build linux

package replay

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
)

// openT opens an Applier on root, closed when the test ends. Its log, down
// to debug, goes to the test's output.
func openT(t testing.TB, root string, opts Options) *Applier {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := Open(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// numbered gives recs the sequence numbers 1, 2, ...
func numbered(recs []journal.Record) []journal.Record {
	out := make([]journal.Record, len(recs))
	for i, r := range recs {
		r.Seq = uint64(i + 1)
		out[i] = r
	}
	return out
}

// applyAll applies recs, failing the test on any error.
func applyAll(t testing.TB, a *Applier, recs []journal.Record) {
	t.Helper()
	for i := range recs {
		if err := a.Apply(&recs[i]); err != nil {
			t.Fatalf("apply %v: %v", &recs[i], err)
		}
	}
}

// run applies recs with a fresh Applier, as a replica (re)starting would.
func run(t testing.TB, root string, recs []journal.Record) {
	t.Helper()
	a := openT(t, root, Options{})
	applyAll(t, a, recs)
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}

// snapshot describes every entry under root (type, permission bits, owner,
// size, content hash, link target, hard-link group), times excluded.
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("type=%o perm=%04o owner=%d:%d", st.Mode&unix.S_IFMT, st.Mode&0o7777, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			group, ok := inodes[st.Ino]
			if !ok {
				inodes[st.Ino], group = rel, rel
			}
			desc += fmt.Sprintf(" size=%d sha=%x nlink=%d inode-of=%s", st.Size, sha256.Sum256(data), st.Nlink, group)
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diffTrees lists the differences between two snapshots, or "".
func diffTrees(want, got map[string]string) string {
	var lines []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			lines = append(lines, fmt.Sprintf("missing %s (%s)", p, w))
		} else if g != w {
			lines = append(lines, fmt.Sprintf("%s:\n  want %s\n  got  %s", p, w, g))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			lines = append(lines, fmt.Sprintf("extra %s (%s)", p, g))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// checkReplay applies recs once, then replays them as a replica resuming
// after a crash would: recs[:n] applied, a restart, then recs[k:] for k < n.
// Every (n, k) must leave the same tree. When names are reused for another
// object, a replay starting before the reuse on a tree already past it cannot
// be reconciled record by record, so only the single-record re-apply
// (k = n-1) and the whole sequence twice are checked. check, if set,
// inspects each tree before it is read.
func checkReplay(t *testing.T, recs []journal.Record, reusesNames bool, check func(t *testing.T, root string)) {
	t.Helper()
	recs = numbered(recs)
	once := t.TempDir()
	run(t, once, recs)
	if check != nil {
		check(t, once)
	}
	want := snapshot(t, once)
	for n := 1; n <= len(recs); n++ {
		for k := range n {
			if reusesNames && k != n-1 && (k != 0 || n != len(recs)) {
				continue
			}
			root := t.TempDir()
			run(t, root, recs[:n])
			run(t, root, recs[k:])
			if check != nil {
				check(t, root)
			}
			if d := diffTrees(want, snapshot(t, root)); d != "" {
				t.Errorf("applied to #%d, replayed from %v: tree differs:\n%s", n, &recs[k], d)
			}
		}
	}
}

func mustWrite(t testing.TB, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Record constructors, to keep tables short.

func wr(path string, off int64, data string) journal.Record {
	return journal.Record{Op: journal.OpWrite, Path: path, Offset: off, Data: []byte(data)}
}

func op(o journal.Op, path string) journal.Record { return journal.Record{Op: o, Path: path} }

func op2(o journal.Op, path, path2 string) journal.Record {
	return journal.Record{Op: o, Path: path, Path2: path2}
}

func withMode(r journal.Record, mode uint32) journal.Record { r.Mode = mode; return r }
