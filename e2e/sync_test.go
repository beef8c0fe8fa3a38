package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/writecap/writecap/internal/treecmp"
)

// TestSyncKilled: writecap sync killed with SIGKILL part way leaves its
// checkpoint; run again, it skips the files the checkpoint names and ends
// with identical trees.
func TestSyncKilled(t *testing.T) {
	requireBPF(t) // root: owners are carried
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	const files = 12
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range files {
		writeStale(t, filepath.Join(src, fmt.Sprintf("f%02d", i)), filepath.Join(base, "scratch"), uint64(i), 32<<20)
	}
	cmd := exec.Command(binary, "sync", "--source", src, "--target", dst)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The checkpoint names each file once it is durable: kill after one.
	ckpt := filepath.Join(dst, ".writecap-sync")
	for deadline := time.Now().Add(time.Minute); ; {
		if lines(t, ckpt) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no file completed within a minute:\n%s", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	done := lines(t, ckpt)
	if done == 0 || done == files {
		t.Fatalf("killed with %d of %d files done: the kill must fall in the middle", done, files)
	}
	again, err := exec.Command(binary, "sync", "--source", src, "--target", dst).CombinedOutput()
	if err != nil {
		t.Fatalf("sync after the kill: %v\n%s", err, again)
	}
	m := regexp.MustCompile(`(\d+) resumed`).FindSubmatch(again)
	if m == nil {
		t.Fatalf("no count of resumed files:\n%s", again)
	}
	if n, _ := strconv.Atoi(string(m[1])); n < done {
		t.Errorf("the second run resumed %d files, the checkpoint named %d:\n%s", n, done, again)
	}
	treecmp.AssertEqual(t, src, dst, treecmp.Options{Owners: true})
}

// lines counts the complete lines of a file, 0 when it does not exist.
func lines(t *testing.T, p string) int {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	n := 0
	for sc := bufio.NewScanner(bytes.NewReader(b)); sc.Scan(); {
		n++
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		n--
	}
	return n
}
