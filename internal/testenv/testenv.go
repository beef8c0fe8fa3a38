// Package testenv holds what privileged tests share about the machine they
// run on.
package testenv

import (
	"os"
	"testing"
)

// RequireBPF skips the test when the machine cannot load capture's
// programs (not root, or a kernel without BTF), unless
// WRITECAP_REQUIRE_BPF=1, which CI sets: then the test fails instead, since
// a skipped core test is not a passed one.
func RequireBPF(t testing.TB) {
	t.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "needs root"
	default:
		if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
			why = "kernel has no BTF"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("WRITECAP_REQUIRE_BPF") == "1" {
		t.Fatalf("WRITECAP_REQUIRE_BPF=1 but this test cannot run: %s", why)
	}
	t.Skip(why)
}
