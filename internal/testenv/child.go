package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// AsChild, called first thing in TestMain, makes a test binary that Child
// started with env set run fn on the value instead of its tests, print
// what fn returns and exit: capture ignores its own process, so writers it
// must see run in another.
func AsChild(env string, fn func(spec string) (string, error)) {
	spec := os.Getenv(env)
	if spec == "" {
		return
	}
	out, err := fn(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Print(out)
	os.Exit(0)
}

// Child runs the test binary again with env=spec, no tests, and returns
// what it printed (see AsChild).
func Child(t testing.TB, env, spec string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+spec)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s=%q: %v %s", env, spec, err, stderr.Bytes())
	}
	return string(out)
}
