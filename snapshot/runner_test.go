//go:build linux

package snapshot

import (
	"context"
	"testing"
)

func TestExecRunner(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantOut string
		wantErr []string // nil: no error
	}{
		{name: "output", args: []string{"-c", "echo out; echo noise >&2"}, wantOut: "out\n"},
		{name: "failure", args: []string{"-c", "echo out; echo it broke >&2; exit 3"}, wantOut: "out\n",
			wantErr: []string{"snapshot: sh -c echo out; echo it broke >&2; exit 3: exit status 3: it broke"}},
		{name: "failure without stderr", args: []string{"-c", "exit 4"},
			wantErr: []string{"snapshot: sh -c exit 4: exit status 4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := execRunner{}.run(context.Background(), "sh", tc.args...)
			if string(out) != tc.wantOut {
				t.Errorf("output %q; want %q", out, tc.wantOut)
			}
			if tc.wantErr == nil {
				must(t, err)
				return
			}
			assertError(t, err, tc.wantErr...)
		})
	}
}
