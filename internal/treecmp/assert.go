//go:build linux

package treecmp

import "testing"

// maxReported bounds the output of AssertEqual: past the first few
// differences the rest are usually consequences of the same fault.
const maxReported = 20

// AssertEqual fails t when the trees at a and b differ, reporting at most
// the first 20 differences.
func AssertEqual(t testing.TB, a, b string, opts Options) {
	t.Helper()
	diffs, err := Compare(a, b, opts)
	if err != nil {
		t.Errorf("treecmp: %v", err)
		return
	}
	for i, d := range diffs {
		if i == maxReported {
			t.Errorf("treecmp: ... and %d more differences", len(diffs)-maxReported)
			return
		}
		t.Errorf("treecmp: %s", d)
	}
}
