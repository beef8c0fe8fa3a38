//go:build linux

package treecmp

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// base builds the same small tree under root: a file linked twice, a larger
// file, a symlink and nested directories.
func base(t *testing.T, root string) {
	t.Helper()
	mkdir(t, filepath.Join(root, "d"), 0o755)
	mkdir(t, filepath.Join(root, "d/e"), 0o700)
	write(t, filepath.Join(root, "f"), []byte("hello"), 0o644)
	write(t, filepath.Join(root, "d/g"), pattern(300000), 0o644)
	must(t, os.Link(filepath.Join(root, "f"), filepath.Join(root, "d/h")))
	must(t, os.Symlink("f", filepath.Join(root, "l")))
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, name string, mode os.FileMode) {
	t.Helper()
	must(t, os.Mkdir(name, mode))
	must(t, os.Chmod(name, mode))
}

func write(t *testing.T, name string, data []byte, mode os.FileMode) {
	t.Helper()
	must(t, os.WriteFile(name, data, mode))
	must(t, os.Chmod(name, mode))
}

func flipByte(t *testing.T, name string, off int64) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	b := []byte{0}
	_, err = f.ReadAt(b, off)
	must(t, err)
	b[0]++
	_, err = f.WriteAt(b, off)
	must(t, err)
}

func TestCompare(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		change func(t *testing.T, a, b string)
		want   []Diff
	}{
		{
			name:   "identical",
			change: func(t *testing.T, a, b string) {},
		},
		{
			name: "missing in b",
			change: func(t *testing.T, a, b string) {
				must(t, os.Remove(filepath.Join(b, "d/g")))
			},
			want: []Diff{{"d/g", "missing in b"}},
		},
		{
			name: "missing directory in a",
			change: func(t *testing.T, a, b string) {
				must(t, os.RemoveAll(filepath.Join(a, "d/e")))
			},
			want: []Diff{{"d/e", "missing in a"}},
		},
		{
			name: "type file vs dir",
			change: func(t *testing.T, a, b string) {
				must(t, os.Remove(filepath.Join(b, "d/g")))
				mkdir(t, filepath.Join(b, "d/g"), 0o644)
			},
			want: []Diff{{"d/g", "type file vs dir"}},
		},
		{
			name: "type symlink vs fifo",
			change: func(t *testing.T, a, b string) {
				must(t, os.Remove(filepath.Join(b, "l")))
				must(t, unix.Mkfifo(filepath.Join(b, "l"), 0o644))
			},
			want: []Diff{{"l", "type symlink vs fifo"}},
		},
		{
			name: "size",
			change: func(t *testing.T, a, b string) {
				write(t, filepath.Join(b, "d/g"), append(pattern(300000), 1, 2, 3), 0o644)
			},
			want: []Diff{{"d/g", "size 300000 vs 300003"}},
		},
		{
			name: "bytes at 4096",
			change: func(t *testing.T, a, b string) {
				flipByte(t, filepath.Join(b, "d/g"), 4096)
			},
			want: []Diff{{"d/g", "bytes differ at offset 4096"}},
		},
		{
			name: "bytes past the first chunk",
			change: func(t *testing.T, a, b string) {
				flipByte(t, filepath.Join(a, "d/g"), 200001)
			},
			want: []Diff{{"d/g", "bytes differ at offset 200001"}},
		},
		{
			name: "size and bytes",
			change: func(t *testing.T, a, b string) {
				must(t, os.Truncate(filepath.Join(b, "d/g"), 5000))
				flipByte(t, filepath.Join(b, "d/g"), 4999)
			},
			want: []Diff{{"d/g", "size 300000 vs 5000"}, {"d/g", "bytes differ at offset 4999"}},
		},
		{
			name: "file mode",
			change: func(t *testing.T, a, b string) {
				must(t, os.Chmod(filepath.Join(b, "d/g"), 0o600))
			},
			want: []Diff{{"d/g", "mode 0644 vs 0600"}},
		},
		{
			name: "setuid bit",
			change: func(t *testing.T, a, b string) {
				must(t, unix.Chmod(filepath.Join(a, "d/g"), 0o4644))
			},
			want: []Diff{{"d/g", "mode 4644 vs 0644"}},
		},
		{
			name: "directory mode",
			change: func(t *testing.T, a, b string) {
				must(t, os.Chmod(filepath.Join(b, "d/e"), 0o755))
			},
			want: []Diff{{"d/e", "mode 0700 vs 0755"}},
		},
		{
			name: "symlink target",
			change: func(t *testing.T, a, b string) {
				must(t, os.Remove(filepath.Join(b, "l")))
				must(t, os.Symlink("d/g", filepath.Join(b, "l")))
			},
			want: []Diff{{"l", `symlink target "f" vs "d/g"`}},
		},
		{
			name: "owner",
			opts: Options{Owners: true},
			change: func(t *testing.T, a, b string) {
				must(t, os.Lchown(filepath.Join(b, "d/g"), 1000, 1001))
				must(t, os.Lchown(filepath.Join(b, "l"), 1000, 1001))
			},
			want: []Diff{{"d/g", "owner 0:0 vs 1000:1001"}, {"l", "owner 0:0 vs 1000:1001"}},
		},
		{
			name: "owner not compared",
			change: func(t *testing.T, a, b string) {
				must(t, os.Lchown(filepath.Join(b, "d/g"), 1000, 1001))
			},
		},
		{
			name: "hard link broken",
			change: func(t *testing.T, a, b string) {
				must(t, os.Remove(filepath.Join(b, "d/h")))
				write(t, filepath.Join(b, "d/h"), []byte("hello"), 0o644)
			},
			want: []Diff{{"d/h", "hard links: {d/h,f} vs {d/h}"}},
		},
		{
			name: "hard link joined",
			change: func(t *testing.T, a, b string) {
				for _, root := range []string{a, b} {
					write(t, filepath.Join(root, "d/k"), []byte("hello"), 0o644)
				}
				must(t, os.Remove(filepath.Join(b, "d/k")))
				must(t, os.Link(filepath.Join(b, "f"), filepath.Join(b, "d/k")))
			},
			want: []Diff{{"d/h", "hard links: {d/h,f} vs {d/h,d/k,f}"}},
		},
		{
			name: "hard link to a path missing in a",
			change: func(t *testing.T, a, b string) {
				mkdir(t, filepath.Join(b, "n"), 0o755)
				must(t, os.Link(filepath.Join(b, "f"), filepath.Join(b, "n/k")))
			},
			want: []Diff{{"n", "missing in a"}, {"d/h", "hard links: {d/h,f} vs {d/h,f,n/k}"}},
		},
		{
			name: "ignored paths",
			opts: Options{Ignore: []string{"postmaster.pid", "d/e", "d/g"}},
			change: func(t *testing.T, a, b string) {
				write(t, filepath.Join(b, "postmaster.pid"), []byte("42"), 0o600)
				write(t, filepath.Join(a, "d/e/x"), []byte("x"), 0o600)
				flipByte(t, filepath.Join(b, "d/g"), 0)
			},
		},
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := t.TempDir(), t.TempDir()
			base(t, a)
			base(t, b)
			tt.change(t, a, b)
			got, err := Compare(a, b, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Compare:\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestCompareErrors(t *testing.T) {
	tests := []struct {
		name string
		a    func(t *testing.T) string
	}{
		{name: "missing root", a: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }},
		{name: "root is a file", a: func(t *testing.T) string {
			name := filepath.Join(t.TempDir(), "f")
			write(t, name, nil, 0o644)
			return name
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Compare(tt.a(t), t.TempDir(), Options{}); err == nil {
				t.Error("Compare succeeded")
			}
		})
	}
}

func TestDiffString(t *testing.T) {
	d := Diff{Path: "a/b", What: "size 10 vs 12"}
	if got, want := d.String(), "a/b: size 10 vs 12"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// recorder stands in for testing.TB to see what AssertEqual reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestAssertEqual(t *testing.T) {
	tests := []struct {
		name    string
		extra   int // files only in b
		missing bool
		want    int
		last    string // the last report
	}{
		{name: "equal"},
		{name: "few differences", extra: 3, want: 3, last: "treecmp: C: missing in a"},
		{name: "capped at 20", extra: 25, want: 21, last: "treecmp: ... and 5 more differences"},
		{name: "compare error", missing: true, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := t.TempDir(), t.TempDir()
			for i := range tt.extra {
				write(t, filepath.Join(b, string(rune('A'+i))), nil, 0o644)
			}
			if tt.missing {
				a = filepath.Join(a, "nope")
			}
			r := &recorder{TB: t}
			AssertEqual(r, a, b, Options{})
			if len(r.errs) != tt.want {
				t.Fatalf("AssertEqual reported %d errors, want %d: %q", len(r.errs), tt.want, r.errs)
			}
			if tt.last != "" && r.errs[len(r.errs)-1] != tt.last {
				t.Errorf("last report %q, want %q", r.errs[len(r.errs)-1], tt.last)
			}
		})
	}
}
