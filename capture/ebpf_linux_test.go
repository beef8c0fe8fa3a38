package capture

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/internal/testenv"
)

// writerEnv makes the test binary a writer: capture ignores its own process.
const writerEnv = "WRITECAP_CAPTURE_TEST_WRITE"

func TestMain(m *testing.M) {
	testenv.AsChild(writerEnv, func(spec string) (string, error) { return "", runChild(spec) })
	os.Exit(m.Run())
}

// runChild does what a spec names, as a process capture watches:
//
//	write PATH OFF LEN      64 KiB pwrites to an existing file, opened
//	                        without O_CREAT (that open is no event of its own)
//	create PATH             a new empty file
//	mkdir-rename DIR MODE NEW  a directory made under umask 022, renamed at once
func runChild(spec string) error {
	f := strings.Fields(spec)
	var err error
	switch {
	case len(f) == 4 && f[0] == "write":
		var off, n int64
		if off, err = strconv.ParseInt(f[2], 10, 64); err == nil {
			if n, err = strconv.ParseInt(f[3], 10, 64); err == nil {
				err = writeRange(f[1], off, n)
			}
		}
	case len(f) == 2 && f[0] == "create":
		err = os.WriteFile(f[1], nil, 0o644)
	case len(f) == 4 && f[0] == "mkdir-rename":
		var mode uint64
		if mode, err = strconv.ParseUint(f[2], 8, 32); err == nil {
			unix.Umask(0o022)
			if err = unix.Mkdir(f[1], uint32(mode)); err == nil {
				err = unix.Rename(f[1], f[3])
			}
		}
	default:
		return fmt.Errorf("child spec %q: unknown", spec)
	}
	if err != nil {
		return fmt.Errorf("child spec %q: %w", spec, err)
	}
	return nil
}

func writeRange(path string, off, n int64) error {
	fd, err := unix.Open(path, unix.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	chunk := bytes.Repeat([]byte{'x'}, 64<<10)
	for end := off + n; off < end; off += int64(len(chunk)) {
		if _, err := unix.Pwrite(fd, chunk[:min(int64(len(chunk)), end-off)], off); err != nil {
			return err
		}
	}
	return nil
}

// child runs one spec of runChild in another process.
func child(t *testing.T, format string, args ...any) {
	t.Helper()
	testenv.Child(t, writerEnv, fmt.Sprintf(format, args...))
}

func write(t *testing.T, path string, off, n int64) {
	t.Helper()
	child(t, "write %s %d %d", path, off, n)
}

// TestTakeLossesSinceLastTake: each take of the loss map yields only the
// ranges lost since the one before. When the map kept every range ever lost
// to a file, each repair read back the union again, from the first lost
// byte to the last: a long sequential write losing records now and then
// was read back over and over.
func TestTakeLossesSinceLastTake(t *testing.T) {
	testenv.RequireBPF(t)
	root := t.TempDir()
	path := filepath.Join(root, "f")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	// Nothing reads the ring: once its page is full, every record is lost.
	k, err := loadKernel([]string{root}, Config{RingSize: os.Getpagesize(), MaxData: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	take := func(t *testing.T) map[uint64][2]int64 {
		t.Helper()
		got := map[uint64][2]int64{}
		if err := k.takeLosses(func(key lossKey, lo, hi int64) { got[key.Ino] = [2]int64{lo, hi} }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	const mib = 1 << 20
	write(t, path, 0, mib)
	if got := take(t); len(got) != 1 || got[st.Ino][1] != mib || got[st.Ino][0] >= mib {
		t.Fatalf("first take: %v, want inode %d lost up to %d", got, st.Ino, mib)
	}
	tests := []struct {
		name    string
		off, n  int64
		wantLen int
	}{
		{name: "a later range alone", off: 8 * mib, n: mib, wantLen: 1},
		{name: "an earlier range alone", off: 2 * mib, n: mib / 2, wantLen: 1},
		{name: "nothing written since", wantLen: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.n > 0 {
				write(t, path, tc.off, tc.n)
			}
			got := take(t)
			if len(got) != tc.wantLen {
				t.Fatalf("took %v, want %d ranges", got, tc.wantLen)
			}
			if r, ok := got[st.Ino]; tc.wantLen > 0 && (!ok || r != [2]int64{tc.off, tc.off + tc.n}) {
				t.Fatalf("took %v for inode %d, want [%d, %d)", got, st.Ino, tc.off, tc.off+tc.n)
			}
		})
	}
}
