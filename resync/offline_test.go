package resync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExportImport(t *testing.T) {
	const bs = 4096
	tests := []struct {
		name   string
		tamper func(t *testing.T, media string)
		want   string // in the refusal; "" imports
	}{
		{name: "intact"},
		{name: "a flipped byte", tamper: func(t *testing.T, d string) { flip(t, d, "big/db.img", 5*bs+1) },
			want: "big/db.img differs at block 5 (bytes 20480 to 24575)"},
		{name: "a missing file", tamper: func(t *testing.T, d string) { os.Remove(filepath.Join(d, "small.txt")) },
			want: "small.txt is missing"},
		{name: "an added file", tamper: func(t *testing.T, d string) { write(t, d, "dir/planted", []byte("x"), 0o644) },
			want: "dir/planted in"},
		{name: "a truncated file", tamper: func(t *testing.T, d string) { os.Truncate(filepath.Join(d, "big/other.img"), 100) },
			want: "big/other.img holds 100 bytes, the manifest says 2097152"},
		{name: "a changed mode", tamper: func(t *testing.T, d string) { os.Chmod(filepath.Join(d, "small.txt"), 0o755) },
			want: "small.txt has mode 0755, the manifest says 0644"},
		{name: "a changed owner", tamper: func(t *testing.T, d string) {
			if err := os.Lchown(filepath.Join(d, "small.txt"), 4242, 4343); err != nil {
				t.Skipf("chown needs root: %v", err)
			}
		}, want: "small.txt is owned by 4242:4343, the manifest says 0:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, media, dst := t.TempDir(), filepath.Join(t.TempDir(), "media"), t.TempDir()
			sampleTree(t, src)
			if _, err := Export(context.Background(), src, media, Options{BlockSize: bs}); err != nil {
				t.Fatal(err)
			}
			if tt.tamper != nil {
				tt.tamper(t, filepath.Join(media, ExportData))
			}
			_, err := Import(context.Background(), media, dst, Options{})
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				assertSame(t, src, dst)
				return
			}
			if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("import: %v, want a mismatch naming %q", err, tt.want)
			}
			if ents, _ := os.ReadDir(dst); len(ents) != 0 {
				t.Errorf("a refused import touched the target: %d entries", len(ents))
			}
		})
	}
}

func TestImportCorruptManifest(t *testing.T) {
	src, media, dst := t.TempDir(), filepath.Join(t.TempDir(), "media"), t.TempDir()
	sampleTree(t, src)
	if _, err := Export(context.Background(), src, media, Options{}); err != nil {
		t.Fatal(err)
	}
	flip(t, media, ExportManifest, 40)
	if _, err := Import(context.Background(), media, dst, Options{}); !IsCorruptManifest(err) {
		t.Fatalf("import with a damaged manifest: %v, want a corrupt manifest error", err)
	}
}
