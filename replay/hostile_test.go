//go:build linux

package replay

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
)

// TestHostilePaths applies each hostile record after a setup, and requires
// an escape error naming the record, nothing changed outside the root, and
// the Applier latched: the next valid record is refused and not applied.
//
// Layout: base/x and base/out/f are canaries; the root is base/root, where
// the setup plants "link" -> base/out (absolute), "rel" -> ../out,
// "sx" -> base/x, "sin" -> "a/file" and "up" -> "a/../..".
func TestHostilePaths(t *testing.T) {
	rec := func(o journal.Op, path, path2 string) journal.Record {
		return journal.Record{Op: o, Path: path, Path2: path2, Mode: 0o777, Length: 1, Flags: journal.SetMode}
	}
	tests := []struct {
		name string
		rec  journal.Record
	}{
		{"dot-dot", rec(journal.OpWrite, "../x", "")},
		{"absolute", rec(journal.OpWrite, "/etc/x", "")},
		{"absolute canary", rec(journal.OpWrite, "/BASE/x", "")},
		{"dot-dot inside", rec(journal.OpWrite, "a/../../x", "")},
		{"lone dot-dot", rec(journal.OpMkdir, "..", "")},
		{"dot component", rec(journal.OpWrite, "a/./b", "")},
		{"empty component", rec(journal.OpWrite, "a//b", "")},
		{"trailing slash", rec(journal.OpWrite, "a/", "")},
		{"empty", rec(journal.OpWrite, "", "")},
		{"empty unlink", rec(journal.OpUnlink, "", "")},
		{"NUL", rec(journal.OpWrite, "a\x00b", "")},
		{"longer than PATH_MAX", rec(journal.OpWrite, strings.Repeat("a/", unix.PathMax/2)+"f", "")},
		{"component longer than NAME_MAX", rec(journal.OpWrite, strings.Repeat("n", unix.NAME_MAX+1), "")},
		{"write through symlink", rec(journal.OpWrite, "link/f", "")},
		{"write through relative symlink", rec(journal.OpWrite, "rel/f", "")},
		{"write through climbing symlink", rec(journal.OpWrite, "up/x", "")},
		{"create through symlink", rec(journal.OpCreate, "link/f", "")},
		{"create new through symlink", rec(journal.OpCreate, "link/new", "")},
		{"mkdir through symlink", rec(journal.OpMkdir, "link/d", "")},
		{"truncate through symlink", rec(journal.OpTruncate, "link/f", "")},
		{"fallocate through symlink", rec(journal.OpFallocate, "link/f", "")},
		{"setattr through symlink", rec(journal.OpSetattr, "link/f", "")},
		{"unlink through symlink", rec(journal.OpUnlink, "link/f", "")},
		{"rmdir through symlink", rec(journal.OpRmdir, "rel/sub", "")},
		{"barrier through symlink", rec(journal.OpBarrier, "link/f", "")},
		{"rename from symlink", rec(journal.OpRename, "link/f", "g")},
		{"rename to symlink", rec(journal.OpRename, "a/file", "link/g")},
		{"rename to dot-dot", rec(journal.OpRename, "a/file", "../x")},
		{"link from symlink", rec(journal.OpLink, "link/f", "g")},
		{"link to symlink", rec(journal.OpLink, "a/file", "link/g")},
		{"link to absolute", rec(journal.OpLink, "a/file", "/BASE/y")},
		{"symlink through symlink", rec(journal.OpSymlink, "link/s", "anything")},
		{"write to final symlink", rec(journal.OpWrite, "sx", "")},
		{"truncate final symlink", rec(journal.OpTruncate, "sx", "")},
		{"fallocate final symlink", rec(journal.OpFallocate, "sx", "")},
		{"prune through symlink", rec(journal.OpPrune, "link", "")},
		{"prune through climbing symlink", rec(journal.OpPrune, "up", "")},
		{"prune dot-dot", rec(journal.OpPrune, "..", "")},
		{"prune absolute", rec(journal.OpPrune, "/BASE", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			root, out := filepath.Join(base, "root"), filepath.Join(base, "out")
			mustWrite(t, filepath.Join(base, "x"), "canary x")
			mustWrite(t, filepath.Join(out, "f"), "canary f")
			mustWrite(t, filepath.Join(out, "sub/g"), "canary g")
			outside := func() map[string]string {
				s := snapshot(t, base)
				for p := range s {
					if p == "root" || strings.HasPrefix(p, "root/") {
						delete(s, p)
					}
				}
				return s
			}
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			a := openT(t, root, Options{})
			setup := numbered([]journal.Record{
				wr("a/file", 0, "x"), // parent missing: skipped
				withMode(op(journal.OpMkdir, "a"), 0o755),
				wr("a/file", 0, "inside"),
				op2(journal.OpSymlink, "link", out),
				op2(journal.OpSymlink, "rel", "../out"),
				op2(journal.OpSymlink, "sx", filepath.Join(base, "x")),
				op2(journal.OpSymlink, "sin", "a/file"),
				op2(journal.OpSymlink, "up", "a/../.."),
			})
			applyAll(t, a, setup)
			before, inside := outside(), readFile(t, filepath.Join(root, "a/file"))

			bad := tt.rec
			bad.Seq = uint64(len(setup) + 1)
			bad.Path = strings.ReplaceAll(bad.Path, "/BASE", base)
			bad.Path2 = strings.ReplaceAll(bad.Path2, "/BASE", base)
			err := a.Apply(&bad)
			if !IsEscape(err) {
				t.Fatalf("Apply(%v) = %v, want an escape", &bad, err)
			}
			var re *RecordError
			if !errors.As(err, &re) || re.Seq != bad.Seq || !strings.Contains(err.Error(), bad.String()) {
				t.Errorf("error %q does not name the record %v", err, &bad)
			}

			next := wr("ok", 0, "ok")
			next.Seq = bad.Seq + 1
			if err2 := a.Apply(&next); err2 != err {
				t.Errorf("after the escape, Apply = %v, want the latched %v", err2, err)
			}
			if _, err := os.Lstat(filepath.Join(root, "ok")); !os.IsNotExist(err) {
				t.Errorf("record after the escape was applied")
			}
			if got := a.Applied(); got != uint64(len(setup)) {
				t.Errorf("Applied() = %d, want %d", got, len(setup))
			}
			if d := diffTrees(before, outside()); d != "" {
				t.Errorf("outside the root changed:\n%s", d)
			}
			if got := readFile(t, filepath.Join(root, "a/file")); got != inside {
				t.Errorf("symlink target inside the root changed: %q", got)
			}
		})
	}
}

func TestEscapeMessage(t *testing.T) {
	a := openT(t, t.TempDir(), Options{})
	r := op2(journal.OpRename, "a", "../x")
	r.Seq = 12
	err := a.Apply(&r)
	const want = `replay: record #12 rename "a" -> "../x": path escapes root`
	if err == nil || err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func TestValidPath(t *testing.T) {
	tests := []struct {
		name string
		path string
		ok   bool
	}{
		{"simple", "a", true},
		{"nested", "a/b/c", true},
		{"dots in names", "a/..b/.c/...", true},
		{"longest", strings.Repeat("a/", (unix.PathMax-2)/2) + "b", true},
		{"longest name", strings.Repeat("n", unix.NAME_MAX), true},
		{"empty", "", false},
		{"absolute", "/a", false},
		{"dot", ".", false},
		{"dot-dot", "..", false},
		{"inner dot-dot", "a/../b", false},
		{"final dot-dot", "a/..", false},
		{"inner dot", "a/./b", false},
		{"double slash", "a//b", false},
		{"trailing slash", "a/", false},
		{"NUL", "a\x00", false},
		{"PATH_MAX", strings.Repeat("a", unix.PathMax), false},
		{"NAME_MAX+1", strings.Repeat("n", unix.NAME_MAX+1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidPath(tt.path); got != tt.ok {
				t.Errorf("ValidPath(%q) = %v, want %v", tt.path, got, tt.ok)
			}
		})
	}
}

// TestSymlinkInsideRoot: a symlink that stays beneath the root is an
// ordinary directory on the way, even with ".." in its target.
func TestSymlinkInsideRoot(t *testing.T) {
	root := t.TempDir()
	a := openT(t, root, Options{})
	applyAll(t, a, numbered([]journal.Record{
		withMode(op(journal.OpMkdir, "a"), 0o755),
		withMode(op(journal.OpMkdir, "d"), 0o755),
		op2(journal.OpSymlink, "d/up", "../a"),
		wr("d/up/f", 0, "through"),
	}))
	if got := readFile(t, filepath.Join(root, "a/f")); got != "through" {
		t.Errorf("a/f = %q", got)
	}
}

// TestStaleSymlinkReplaced: a symlink pointing inside the root where the
// master has a regular file is stale replica state, not an escape. The write
// replaces the link; the link's target keeps its bytes.
func TestStaleSymlinkReplaced(t *testing.T) {
	root := t.TempDir()
	a := openT(t, root, Options{})
	applyAll(t, a, numbered([]journal.Record{
		withMode(op(journal.OpMkdir, "a"), 0o755),
		wr("a/file", 0, "target"),
		op2(journal.OpSymlink, "sin", "a/file"),
		wr("sin", 0, "regular"),
	}))
	if got := readFile(t, filepath.Join(root, "a/file")); got != "target" {
		t.Fatalf("write followed the stale symlink: a/file = %q", got)
	}
	fi, err := os.Lstat(filepath.Join(root, "sin"))
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("sin is %v (%v), want a regular file", fi.Mode(), err)
	}
	if got := readFile(t, filepath.Join(root, "sin")); got != "regular" {
		t.Fatalf("sin = %q, want %q", got, "regular")
	}
}
