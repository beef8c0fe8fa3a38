package resync

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// randBytes returns n bytes from a seeded generator.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func write(t *testing.T, root, rel string, data []byte, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, fileMode(uint32(mode))); err != nil { // raw bits: 0o4755 means setuid
		t.Fatal(err)
	}
}

func read(t *testing.T, root, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// flip changes one byte of a file in place.
func flip(t *testing.T, root, rel string, off int64) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(root, rel), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// sampleTree makes a tree with every kind sync carries: small and large
// files, an empty one, nested directories, symlinks (one dangling, one
// pointing out of the tree), hard links, special modes and another owner.
func sampleTree(t *testing.T, root string) {
	t.Helper()
	write(t, root, "small.txt", []byte("hello"), 0o644)
	write(t, root, "empty", nil, 0o600)
	write(t, root, "dir/sub/deep.bin", randBytes(1, 70_000), 0o640)
	write(t, root, "big/db.img", randBytes(2, 3<<20+123), 0o600)
	write(t, root, "big/other.img", randBytes(3, 2<<20), 0o644)
	write(t, root, "suid", []byte("#!/bin/sh\n"), 0o4755)
	for _, l := range [][2]string{{"small.txt", "link-to-small"}, {"/etc/hostname", "dir/out"}, {"missing", "dangling"}} {
		if err := os.Symlink(l[0], filepath.Join(root, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(root, "dir/sub/deep.bin"), filepath.Join(root, "dir/hard")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(root, "dir/sub/deep.bin"), 1234, 5678); err != nil && os.Geteuid() == 0 {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "emptydir"), 0o1777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(root, "emptydir"), fileMode(0o1777))
}

func equalBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes differ from the %d wanted", what, len(got), len(want))
	}
}
