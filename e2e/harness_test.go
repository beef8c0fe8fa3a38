package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/writecap/writecap/internal/testenv"
)

// binary is the writecap executable built once for the package.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "writecap-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "writecap")
	out, err := exec.Command("go", "build", "-o", binary, "../cmd/writecap").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build writecap: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// requireBPF skips when the machine cannot run capture, unless CI demands it.
func requireBPF(t *testing.T) {
	t.Helper()
	testenv.RequireBPF(t)
}

// agent is a running writecap subcommand.
type agent struct {
	name   string
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
	ended  bool // stopped or killed by the test
}

// startMirror runs the mirror and returns once it printed "ready", that is
// once capture is attached.
func startMirror(t *testing.T, src, dst string, extra ...string) *agent {
	t.Helper()
	return startAgent(t, append([]string{"mirror", "--source", src, "--target", dst}, extra...)...)
}

// startAgent runs writecap with args and returns once it printed "ready".
func startAgent(t *testing.T, args ...string) *agent {
	t.Helper()
	if os.Getenv("WRITECAP_TRACE") != "" {
		args = append(args, "-v")
	}
	cmd := exec.Command(binary, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &agent{name: args[0], cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			if !ok && sc.Text() == "ready" {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
		io.Copy(io.Discard, stdout)
		p.done <- cmd.Wait()
	}()
	if !<-ready {
		err := <-p.done
		t.Fatalf("%s exited before ready: %v\n%s", p.name, err, p.stderr)
	}
	t.Cleanup(func() {
		if !p.ended {
			select {
			case err := <-p.done:
				t.Errorf("%s exited before it was stopped: %v\n%s", p.name, err, lastLines(p.stderr.String(), 80))
				return
			default:
			}
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s log at the failure:\n%s", p.name, lastLines(p.stderr.String(), 80))
			p.trace()
		}
	})
	return p
}

// stop sends SIGINT and requires a clean exit: everything captured applied.
func (p *agent) stop(t *testing.T) {
	t.Helper()
	p.ended = true
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatalf("%s: %v (exit %v)\n%s", p.name, err, <-p.done, lastLines(p.stderr.String(), 40))
	}
	if err := <-p.done; err != nil {
		t.Fatalf("%s did not exit cleanly: %v\n%s", p.name, err, lastLines(p.stderr.String(), 80))
	}
	t.Logf("%s log:\n%s", p.name, lastLines(p.stderr.String(), 40))
	p.trace()
}

// trace keeps the agent's whole log where WRITECAP_TRACE says.
func (p *agent) trace() {
	if f := os.Getenv("WRITECAP_TRACE"); f != "" {
		os.WriteFile(f+"."+p.name, p.stderr.Bytes(), 0o644)
	}
}

// kill ends the agent with SIGKILL, as a crash would.
func (p *agent) kill(t *testing.T) {
	t.Helper()
	p.ended = true
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// syncBuffer is a log buffer read while the agent writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *syncBuffer) Bytes() []byte { return []byte(b.String()) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// exitCode runs writecap expecting failure and returns its code and stderr.
func exitCode(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stderr.String()
}
