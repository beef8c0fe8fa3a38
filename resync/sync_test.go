package resync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/writecap/writecap/internal/treecmp"
)

func syncT(t *testing.T, src, dst string, o Options) Stats {
	t.Helper()
	st, err := Sync(context.Background(), src, dst, o)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return st
}

func assertSame(t *testing.T, src, dst string) {
	t.Helper()
	treecmp.AssertEqual(t, src, dst, treecmp.Options{Owners: os.Geteuid() == 0})
	r, err := Verify(context.Background(), src, dst, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range r.Differences {
		t.Errorf("verify: %s", d)
	}
}

func TestSyncFresh(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	sampleTree(t, src)
	st := syncT(t, src, dst, Options{})
	assertSame(t, src, dst)
	if st.Copied != 6 || st.Linked != 1 || st.Symlinks != 3 {
		t.Errorf("stats %+v: want 6 files copied, 1 link made, 3 symlinks", st)
	}
	// Times are carried, so the next run trusts them.
	for _, rel := range []string{"small.txt", "big/db.img", "dir"} {
		a, _ := os.Lstat(filepath.Join(src, rel))
		b, _ := os.Lstat(filepath.Join(dst, rel))
		if !a.ModTime().Equal(b.ModTime()) {
			t.Errorf("%s: time %v, want %v", rel, b.ModTime(), a.ModTime())
		}
	}
	if _, err := os.Lstat(filepath.Join(dst, CheckpointName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the checkpoint outlived a completed sync: %v", err)
	}
	again := syncT(t, src, dst, Options{})
	if again.Copied != 0 || again.Patched != 0 || again.BlocksSent != 0 {
		t.Errorf("second sync of equal trees sent something: %+v", again)
	}
}

// TestSyncMostlyMatching: only what differs crosses, at the granularity the
// method promises.
func TestSyncMostlyMatching(t *testing.T) {
	const bs = 4096
	src, dst := t.TempDir(), t.TempDir()
	sampleTree(t, src)
	syncT(t, src, dst, Options{BlockSize: bs})
	// Three blocks of the large file, one small file, one new file, one
	// removed, a mode, and an extra file on the target.
	for _, off := range []int64{0, 100 * bs, 3<<20 + 100} {
		flip(t, src, "big/db.img", off)
	}
	write(t, src, "small.txt", []byte("HELLO"), 0o644)
	write(t, src, "new", []byte("new file"), 0o644)
	os.Remove(filepath.Join(src, "big/other.img"))
	os.Chmod(filepath.Join(src, "dir/sub"), 0o700)
	write(t, dst, "dir/extra", []byte("only on the target"), 0o644)

	st := syncT(t, src, dst, Options{BlockSize: bs})
	assertSame(t, src, dst)
	if st.BlocksSent != 3 || st.Patched != 1 || st.Copied != 2 || st.Removed != 2 {
		t.Errorf("stats %+v: want 3 blocks of one patched file, 2 copied, 2 removed", st)
	}
	hashes := int64((3<<20+123+bs-1)/bs) * HashSize
	if max := 3*bs + hashes + int64(len("HELLO")+len("new file")); st.BytesSent > max {
		t.Errorf("sent %d bytes, want at most %d", st.BytesSent, max)
	}
}

func TestSyncMethods(t *testing.T) {
	tests := []struct {
		name        string
		o           Options
		copied      int64
		blocksSent  int64
		patched     int64
		wantCompare bool
	}{
		{name: "auto patches large files", o: Options{BlockSize: 4096}, copied: 1, blocksSent: 1, patched: 1},
		{name: "file sends whole files", o: Options{Method: MethodFile}, copied: 2},
		{name: "block patches every file", o: Options{Method: MethodBlock, BlockSize: 4096}, blocksSent: 2, patched: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			write(t, src, "large", randBytes(7, 2<<20), 0o644)
			write(t, src, "small", randBytes(8, 10_000), 0o644)
			syncT(t, src, dst, Options{})
			flip(t, src, "large", 5000)
			flip(t, src, "small", 5000)
			st := syncT(t, src, dst, tt.o)
			assertSame(t, src, dst)
			if st.Copied != tt.copied || st.BlocksSent != tt.blocksSent || st.Patched != tt.patched {
				t.Errorf("stats %+v: want %d copied, %d patched, %d blocks sent", st, tt.copied, tt.patched, tt.blocksSent)
			}
		})
	}
}

// TestSyncReplacesKinds: whatever kind the target holds at a name, it ends
// as the source's, and nothing is written through a target's symlink.
func TestSyncReplacesKinds(t *testing.T) {
	tests := []struct {
		name   string
		source func(t *testing.T, root string)
		target func(t *testing.T, root, outside string)
	}{
		{
			name:   "file where a directory was",
			source: func(t *testing.T, r string) { write(t, r, "x", []byte("file"), 0o644) },
			target: func(t *testing.T, r, _ string) { write(t, r, "x/inner", []byte("old"), 0o644) },
		},
		{
			name:   "directory where a file was",
			source: func(t *testing.T, r string) { write(t, r, "x/inner", []byte("new"), 0o644) },
			target: func(t *testing.T, r, _ string) { write(t, r, "x", []byte("old"), 0o644) },
		},
		{
			name:   "directory where a symlink out of the tree was",
			source: func(t *testing.T, r string) { write(t, r, "x/inner", []byte("new"), 0o644) },
			target: func(t *testing.T, r, out string) { os.Symlink(out, filepath.Join(r, "x")) },
		},
		{
			name:   "file where a symlink out of the tree was",
			source: func(t *testing.T, r string) { write(t, r, "x", randBytes(1, 2<<20), 0o644) },
			target: func(t *testing.T, r, out string) { os.Symlink(filepath.Join(out, "victim"), filepath.Join(r, "x")) },
		},
		{
			name: "hard links made and broken",
			source: func(t *testing.T, r string) {
				write(t, r, "a", []byte("shared"), 0o644)
				os.Link(filepath.Join(r, "a"), filepath.Join(r, "b"))
				write(t, r, "c", []byte("alone"), 0o644)
				write(t, r, "d", []byte("alone too"), 0o644)
			},
			target: func(t *testing.T, r, _ string) {
				write(t, r, "a", []byte("shared"), 0o644)
				write(t, r, "b", []byte("shared"), 0o644)
				write(t, r, "c", []byte("alone"), 0o644)
				os.Link(filepath.Join(r, "c"), filepath.Join(r, "d"))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst, out := t.TempDir(), t.TempDir(), t.TempDir()
			write(t, out, "victim", []byte("outside"), 0o644)
			tt.source(t, src)
			tt.target(t, dst, out)
			syncT(t, src, dst, Options{})
			assertSame(t, src, dst)
			equalBytes(t, "file outside the target", read(t, out, "victim"), []byte("outside"))
			if ents, _ := os.ReadDir(out); len(ents) != 1 {
				t.Errorf("sync wrote outside the target: %v", ents)
			}
		})
	}
}

func TestSyncRefusesNested(t *testing.T) {
	src := t.TempDir()
	for _, dst := range []string{src, filepath.Join(src, "inner")} {
		if _, err := Sync(context.Background(), src, dst, Options{}); !errors.Is(err, ErrNested) {
			t.Errorf("sync into %s: %v, want ErrNested", dst, err)
		}
	}
}

// TestSyncInterrupted: a sync stopped part way leaves a checkpoint; the next
// run skips the files it names, and ends exact.
func TestSyncInterrupted(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	const files = 8
	for i := range files {
		write(t, src, filepath.Join("f", string(rune('a'+i))), randBytes(uint64(i), 1<<20+i), 0o644)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var done int
	_, err := Sync(ctx, src, dst, Options{fileDone: func(string) {
		if done++; done == 3 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted sync: %v, want context.Canceled", err)
	}
	recs := parseCheckpoint(read(t, dst, CheckpointName))
	if len(recs) < 3 || len(recs) == files {
		t.Fatalf("checkpoint holds %d files, want at least the 3 completed and not all %d", len(recs), files)
	}
	st := syncT(t, src, dst, Options{})
	assertSame(t, src, dst)
	if st.Resumed != int64(len(recs)) || st.Copied != int64(files-len(recs)) {
		t.Errorf("resumed sync %+v: want %d resumed from the checkpoint, %d copied", st, len(recs), files-len(recs))
	}
}

func TestParseNames(t *testing.T) {
	for _, s := range []string{"auto", "file", "block"} {
		if _, err := ParseMethod(s); err != nil {
			t.Error(err)
		}
	}
	if _, err := ParseMethod("rsync"); err == nil {
		t.Error("ParseMethod accepted rsync")
	}
	if _, err := ParseTrust("sometimes"); err == nil {
		t.Error("ParseTrust accepted sometimes")
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte(`{"p":"a/b","s":10,"m":5,"i":7}` + "\n" + `{"p":"c"`))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for p, r := range parseCheckpoint(b) {
			if p == "" || r.Path != p {
				t.Fatalf("record %q under %q", r.Path, p)
			}
		}
	})
}

// TestSyncChangedHardLinks: a file with two names on both sides whose
// content changed keeps both names on one inode with the new content,
// whatever the method.
func TestSyncChangedHardLinks(t *testing.T) {
	for _, m := range []Method{MethodAuto, MethodFile, MethodBlock} {
		t.Run(fmt.Sprint(m), func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			write(t, src, "a", []byte("old content"), 0o644)
			os.Link(filepath.Join(src, "a"), filepath.Join(src, "b"))
			syncT(t, src, dst, Options{})
			write(t, src, "a", []byte("new content!"), 0o644)
			syncT(t, src, dst, Options{Method: m})
			assertSame(t, src, dst)
			equalBytes(t, "b", read(t, dst, "b"), []byte("new content!"))
		})
	}
}
