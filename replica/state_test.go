package replica

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestExchangeSettles: after a crash, an exchange recorded as about to be
// applied counts as applied exactly when the swap is on disk, so a replayed
// spool never swaps the names back.
func TestExchangeSettles(t *testing.T) {
	tests := []struct {
		name    string
		swapped bool
		applied uint64
		want    uint64
	}{
		{name: "swap happened before the crash", swapped: true, applied: 4, want: 5},
		{name: "crash before the swap", swapped: false, applied: 4, want: 4},
		{name: "checkpoint after the swap", swapped: true, applied: 7, want: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, n := range []string{"a", "b"} {
				if err := os.WriteFile(filepath.Join(root, n), []byte(n), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var b unix.Stat_t
			if err := unix.Lstat(filepath.Join(root, "b"), &b); err != nil {
				t.Fatal(err)
			}
			if tt.swapped {
				if err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(root, "a"), unix.AT_FDCWD, filepath.Join(root, "b"), unix.RENAME_EXCHANGE); err != nil {
					t.Fatal(err)
				}
			}
			dir := t.TempDir()
			st := state{Epoch: 1, Applied: tt.applied, Exchange: &exchange{Seq: 5, Path: "a", Ino: b.Ino}}
			if err := st.save(dir); err != nil {
				t.Fatal(err)
			}
			got, err := loadState(dir)
			if err != nil {
				t.Fatal(err)
			}
			got.settle(root)
			if got.Applied != tt.want {
				t.Errorf("applied after settling = %d, want %d", got.Applied, tt.want)
			}
		})
	}
}
