//go:build linux

package replay

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
)

// TestReplayIdempotent applies each scenario once, and again as replicas
// restarting at every point would (see checkReplay), and requires identical
// trees.
func TestReplayIdempotent(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 8<<10) // 128 KiB
	fall := func(path string, mode uint32, off, n int64) journal.Record {
		return journal.Record{Op: journal.OpFallocate, Path: path, Mode: mode, Offset: off, Length: n}
	}
	trunc := func(path string, n int64) journal.Record {
		return journal.Record{Op: journal.OpTruncate, Path: path, Length: n}
	}
	rename := func(from, to string, flags uint32) journal.Record {
		r := op2(journal.OpRename, from, to)
		r.Flags = flags
		return r
	}
	when := time.Date(2001, 2, 3, 4, 5, 6, 789, time.UTC).UnixNano()
	setattr := func(path string, flags, mode, uid, gid uint32) journal.Record {
		return journal.Record{Op: journal.OpSetattr, Path: path, Flags: flags, Mode: mode, UID: uid, GID: gid, Atime: when, Mtime: when + 1}
	}
	tests := []struct {
		name        string
		recs        []journal.Record
		reusesNames bool
		check       func(t *testing.T, root string)
	}{
		{name: "write", recs: []journal.Record{
			withMode(op(journal.OpMkdir, "d"), 0o755),
			wr("d/f", 0, "hello"),
			wr("d/f", 10, "world"), // leaves a hole
			wr("d/g", 0, big),
			wr("d/g", 4096, "overwrite"),
		}},
		{name: "write then parent removed", recs: []journal.Record{
			withMode(op(journal.OpMkdir, "d"), 0o755),
			wr("d/f", 0, "x"),
			op(journal.OpUnlink, "d/f"),
			op(journal.OpRmdir, "d"),
		}},
		{name: "truncate", recs: []journal.Record{
			wr("f", 0, big),
			trunc("f", 100),
			wr("f", 50, "tail"),
			trunc("f", 300),
			trunc("g", 5000), // creates
		}},
		{name: "fallocate", recs: []journal.Record{
			wr("f", 0, big),
			fall("f", unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 4096, 8192),
			fall("f", unix.FALLOC_FL_ZERO_RANGE, 20000, 10000),
			fall("f", unix.FALLOC_FL_ZERO_RANGE, int64(len(big))-100, 1000), // grows
			fall("f", unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, int64(len(big))+800, 1000),
			fall("f", unix.FALLOC_FL_WRITE_ZEROES, 1000, 500),
			fall("f", unix.FALLOC_FL_KEEP_SIZE, 0, 1<<20),
			fall("g", 0, 0, 12345), // creates, grows
		}},
		{name: "create", recs: []journal.Record{
			withMode(op(journal.OpCreate, "f"), 0o640),
			wr("f", 0, "data"),
			withMode(op(journal.OpCreate, "suid"), 0o4755), // exact bits, no umask
			withMode(op(journal.OpCreate, "open"), 0o666),
		}},
		{name: "mkdir", recs: []journal.Record{
			withMode(op(journal.OpMkdir, "d"), 0o755),
			withMode(op(journal.OpMkdir, "d/e"), 0o700),
			withMode(op(journal.OpMkdir, "tmp"), 0o1777),
			wr("d/e/f", 0, "x"),
		}},
		{name: "rmdir", recs: []journal.Record{
			withMode(op(journal.OpMkdir, "d"), 0o755),
			withMode(op(journal.OpMkdir, "d/e"), 0o755),
			wr("d/e/f", 0, "x"),
			op(journal.OpUnlink, "d/e/f"),
			op(journal.OpRmdir, "d/e"),
			op(journal.OpRmdir, "d"),
		}},
		{name: "unlink", recs: []journal.Record{
			wr("f", 0, "x"),
			wr("g", 0, "y"),
			op2(journal.OpLink, "g", "h"),
			op(journal.OpUnlink, "f"),
			op(journal.OpUnlink, "g"),
		}},
		{name: "rename over existing file", recs: []journal.Record{
			wr("a", 0, "A"),
			wr("b", 0, "B"),
			rename("a", "b", 0),
			wr("b", 1, "+"),
		}, reusesNames: true},
		{name: "rename noreplace", recs: []journal.Record{
			withMode(op(journal.OpMkdir, "d"), 0o755),
			wr("a", 0, "A"),
			rename("a", "d/c", unix.RENAME_NOREPLACE),
			wr("d/c", 1, "+"),
		}},
		{name: "rename chain", recs: []journal.Record{
			wr("a", 0, "1"),
			rename("a", "b", 0),
			rename("b", "c", 0),
			wr("c", 1, "2"),
		}},
		{name: "directory rename", recs: []journal.Record{
			withMode(op(journal.OpMkdir, "d"), 0o755),
			wr("d/f", 0, "f"),
			withMode(op(journal.OpMkdir, "d/s"), 0o750),
			wr("d/s/g", 0, "g"),
			rename("d", "e", 0),
			wr("e/f", 1, "+"),
			withMode(op(journal.OpMkdir, "top"), 0o755),
			rename("e/s", "top/s", unix.RENAME_NOREPLACE),
		}},
		{name: "link", recs: []journal.Record{
			withMode(op(journal.OpMkdir, "d"), 0o755),
			wr("a", 0, "A"),
			op2(journal.OpLink, "a", "d/b"),
			wr("d/b", 1, "B"), // one inode, both names
			op2(journal.OpLink, "d/b", "c"),
		}},
		{name: "symlink", recs: []journal.Record{
			op2(journal.OpSymlink, "s", "target/x"),
			op2(journal.OpSymlink, "abs", "/etc/passwd"), // data: may point anywhere
			op2(journal.OpSymlink, "up", "../../.."),
			withMode(op(journal.OpMkdir, "d"), 0o755),
			op2(journal.OpSymlink, "d/s", "../s"),
		}},
		{name: "setattr", recs: []journal.Record{
			wr("f", 0, "data"),
			setattr("f", journal.SetOwner|journal.SetMode|journal.SetAtime|journal.SetMtime, 0o4750, 1000, 2000),
			op2(journal.OpSymlink, "s", "f"),
			setattr("s", journal.SetOwner|journal.SetMode|journal.SetMtime, 0o777, 3000, 4000),
			withMode(op(journal.OpMkdir, "d"), 0o755),
			setattr("d", journal.SetMode|journal.SetOwner, 0o2711, 5, 6),
			setattr("f", journal.SetMtime, 0, 0, 0),
		}, check: func(t *testing.T, root string) {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(root, "f"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Atim.Nano() != when || st.Mtim.Nano() != when+1 {
				t.Errorf("f times %v %v, want %v %v", st.Atim.Nano(), st.Mtim.Nano(), when, when+1)
			}
			if err := unix.Lstat(filepath.Join(root, "s"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Mtim.Nano() != when+1 {
				t.Errorf("symlink mtime %v, want %v", st.Mtim.Nano(), when+1)
			}
		}},
		{name: "prune", recs: []journal.Record{
			withMode(op(journal.OpMkdir, "d"), 0o755),
			wr("d/a", 0, "a"),
			wr("d/b", 0, "b"),
			{Op: journal.OpPrune, Path: "d", Data: []byte("b\x00")},
			wr("d/a", 0, "again"),
		}, reusesNames: true},
		{name: "bookmark and barriers", recs: []journal.Record{
			wr("f", 0, "x"),
			op(journal.OpBarrier, "f"),
			op(journal.OpBookmark, "checkpoint 1"),
			op(journal.OpBarrier, ""),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkReplay(t, tt.recs, tt.reusesNames, tt.check)
		})
	}
}

// TestStaleReplica covers the tolerant paths for a replica whose tree
// differs from what the record expects: each record must leave the master's
// result, and the recursive removals must stay inside the root even when the
// stale tree holds symlinks pointing out.
func TestStaleReplica(t *testing.T) {
	tests := []struct {
		name  string
		stale func(t *testing.T, root, out string)
		rec   journal.Record
		want  func(t *testing.T, root string)
	}{
		{
			name:  "rmdir of a non-empty directory",
			stale: staleDir("d"),
			rec:   op(journal.OpRmdir, "d"),
			want:  absent("d"),
		},
		{
			name:  "rmdir of a file",
			stale: func(t *testing.T, root, _ string) { mustWrite(t, filepath.Join(root, "d"), "x") },
			rec:   op(journal.OpRmdir, "d"),
			want:  absent("d"),
		},
		{
			name:  "unlink of a directory",
			stale: staleDir("d"),
			rec:   op(journal.OpUnlink, "d"),
			want:  absent("d"),
		},
		{
			name: "rename over a non-empty directory",
			stale: func(t *testing.T, root, out string) {
				staleDir("d")(t, root, out)
				mustWrite(t, filepath.Join(root, "src/f"), "src")
			},
			rec:  op2(journal.OpRename, "src", "d"),
			want: content("d/f", "src"),
		},
		{
			name: "rename a file over a directory",
			stale: func(t *testing.T, root, out string) {
				staleDir("d")(t, root, out)
				mustWrite(t, filepath.Join(root, "f"), "file")
			},
			rec:  op2(journal.OpRename, "f", "d"),
			want: content("d", "file"),
		},
		{
			name: "rename a directory over a file",
			stale: func(t *testing.T, root, _ string) {
				mustWrite(t, filepath.Join(root, "d"), "file")
				mustWrite(t, filepath.Join(root, "src/f"), "src")
			},
			rec:  op2(journal.OpRename, "src", "d"),
			want: content("d/f", "src"),
		},
		{
			name: "rename noreplace onto an existing name",
			stale: func(t *testing.T, root, _ string) {
				mustWrite(t, filepath.Join(root, "a"), "new")
				mustWrite(t, filepath.Join(root, "b"), "stale")
			},
			rec:  journal.Record{Op: journal.OpRename, Path: "a", Path2: "b", Flags: unix.RENAME_NOREPLACE},
			want: all(content("b", "new"), absent("a")),
		},
		{
			name:  "rename with source gone and destination present",
			stale: func(t *testing.T, root, _ string) { mustWrite(t, filepath.Join(root, "b"), "b") },
			rec:   op2(journal.OpRename, "a", "b"),
			want:  content("b", "b"),
		},
		{
			name: "prune keeps what the master lists, removes the rest without following symlinks",
			stale: func(t *testing.T, root, out string) {
				staleDir("d/gone")(t, root, out)
				mustWrite(t, filepath.Join(root, "d/kept"), "kept")
				mustWrite(t, filepath.Join(root, "d/old"), "old")
				mustSymlink(t, out, filepath.Join(root, "d/outlink"))
			},
			rec:  journal.Record{Op: journal.OpPrune, Path: "d", Data: []byte("kept\x00absent\x00")},
			want: all(content("d/kept", "kept"), absent("d/gone"), absent("d/old"), absent("d/outlink")),
		},
		{
			name: "prune of the root",
			stale: func(t *testing.T, root, out string) {
				staleDir("x")(t, root, out)
				mustWrite(t, filepath.Join(root, "y"), "y")
			},
			rec:  journal.Record{Op: journal.OpPrune, Data: []byte("y\x00")},
			want: all(content("y", "y"), absent("x")),
		},
		{
			name:  "create over a directory",
			stale: staleDir("f"),
			rec:   withMode(op(journal.OpCreate, "f"), 0o600),
			want:  content("f", ""),
		},
		{
			name:  "mkdir over a file",
			stale: func(t *testing.T, root, _ string) { mustWrite(t, filepath.Join(root, "d"), "x") },
			rec:   withMode(op(journal.OpMkdir, "d"), 0o755),
			want:  isDir("d"),
		},
		{
			name:  "mkdir over a symlink to a directory",
			stale: func(t *testing.T, root, out string) { mustSymlink(t, out, filepath.Join(root, "d")) },
			rec:   withMode(op(journal.OpMkdir, "d"), 0o700),
			want:  isDir("d"),
		},
		{
			name: "link over another file",
			stale: func(t *testing.T, root, _ string) {
				mustWrite(t, filepath.Join(root, "a"), "a")
				mustWrite(t, filepath.Join(root, "b"), "b")
			},
			rec:  op2(journal.OpLink, "a", "b"),
			want: content("b", "a"),
		},
		{
			name:  "link with source gone",
			stale: func(*testing.T, string, string) {},
			rec:   op2(journal.OpLink, "a", "b"),
			want:  absent("b"),
		},
		{
			name: "symlink over a different symlink",
			stale: func(t *testing.T, root, out string) {
				mustSymlink(t, out, filepath.Join(root, "s"))
			},
			rec:  op2(journal.OpSymlink, "s", "inside"),
			want: linkTo("s", "inside"),
		},
		{
			name:  "symlink over a directory",
			stale: staleDir("s"),
			rec:   op2(journal.OpSymlink, "s", "inside"),
			want:  linkTo("s", "inside"),
		},
		{
			name:  "write under a missing parent",
			stale: func(*testing.T, string, string) {},
			rec:   wr("no/f", 0, "x"),
			want:  absent("no"),
		},
		{
			name:  "write to a directory",
			stale: staleDir("f"),
			rec:   wr("f", 0, "x"),
			want:  isDir("f"),
		},
		{
			name:  "setattr of a missing file",
			stale: func(*testing.T, string, string) {},
			rec:   journal.Record{Op: journal.OpSetattr, Path: "f", Flags: journal.SetMode, Mode: 0o600},
			want:  absent("f"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			root, out := filepath.Join(base, "root"), filepath.Join(base, "out")
			mustWrite(t, filepath.Join(out, "canary"), "canary")
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			tt.stale(t, root, out)
			before := snapshot(t, out)
			a := openT(t, root, Options{})
			rec := tt.rec
			rec.Seq = 1
			if err := a.Apply(&rec); err != nil {
				t.Fatal(err)
			}
			tt.want(t, root)
			if d := diffTrees(before, snapshot(t, out)); d != "" {
				t.Errorf("outside the root changed:\n%s", d)
			}
		})
	}
}

// staleDir makes a directory holding a file, a subdirectory and symlinks
// pointing out of the root, which a removal must not follow.
func staleDir(name string) func(t *testing.T, root, out string) {
	return func(t *testing.T, root, out string) {
		t.Helper()
		d := filepath.Join(root, name)
		mustWrite(t, filepath.Join(d, "f"), "stale")
		mustWrite(t, filepath.Join(d, "sub/deeper/g"), "stale")
		mustSymlink(t, out, filepath.Join(d, "out"))
		mustSymlink(t, filepath.Join(out, "canary"), filepath.Join(d, "sub/canary"))
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func absent(name string) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		t.Helper()
		if _, err := os.Lstat(filepath.Join(root, name)); !os.IsNotExist(err) {
			t.Errorf("%s: want absent, got %v", name, err)
		}
	}
}

func content(name, want string) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		t.Helper()
		if got := readFile(t, filepath.Join(root, name)); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func isDir(name string) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(root, name))
		if err != nil || !fi.IsDir() {
			t.Errorf("%s: want a directory, got %v %v", name, fi, err)
		}
	}
}

func linkTo(name, want string) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		t.Helper()
		if got, err := os.Readlink(filepath.Join(root, name)); err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", name, got, err, want)
		}
	}
}

func all(checks ...func(*testing.T, string)) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		t.Helper()
		for _, c := range checks {
			c(t, root)
		}
	}
}

// TestFallocateZeroFallback runs zero range and punch hole on tmpfs, which
// lacks FALLOC_FL_ZERO_RANGE, so the applier must write zeros, respecting
// KEEP_SIZE.
func TestFallocateZeroFallback(t *testing.T) {
	root := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=16m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(root, 0) })
	a := openT(t, root, Options{})
	data := bytes.Repeat([]byte{0xAA}, 10000)
	recs := numbered([]journal.Record{
		wr("f", 0, string(data)),
		{Op: journal.OpFallocate, Path: "f", Mode: unix.FALLOC_FL_ZERO_RANGE, Offset: 100, Length: 200},
		{Op: journal.OpFallocate, Path: "f", Mode: unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE, Offset: 9900, Length: 5000},
		{Op: journal.OpFallocate, Path: "f", Mode: unix.FALLOC_FL_ZERO_RANGE, Offset: 11000, Length: 1000},
		{Op: journal.OpFallocate, Path: "f", Mode: unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE, Offset: 5000, Length: 100},
	})
	applyAll(t, a, recs)
	if !a.zeroLog {
		t.Fatal("tmpfs accepted ZERO_RANGE: the fallback was not exercised")
	}
	want := make([]byte, 12000)
	copy(want, data)
	clear(want[100:300])
	clear(want[9900:])
	clear(want[5000:5100])
	if got := readFile(t, filepath.Join(root, "f")); got != string(want) {
		t.Errorf("content differs: len %d, want %d", len(got), len(want))
	}
}

// TestChmodViaProc covers the fallback for kernels without fchmodat2.
func TestChmodViaProc(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "f"), "x")
	mustWrite(t, filepath.Join(root, "target"), "x")
	mustSymlink(t, "target", filepath.Join(root, "s"))
	dir, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dir)
	if err := chmodViaProc(dir, "f", 0o4711); err != nil {
		t.Fatal(err)
	}
	chmodViaProc(dir, "s", 0o777) // fails or changes the link itself
	for _, c := range []struct {
		name string
		want os.FileMode
	}{{"f", 0o711 | os.ModeSetuid}, {"target", 0o644}} {
		if fi, err := os.Stat(filepath.Join(root, c.name)); err != nil || fi.Mode()&(os.ModePerm|os.ModeSetuid) != c.want {
			t.Errorf("%s: mode %v (%v), want %v", c.name, fi.Mode(), err, c.want)
		}
	}
}
