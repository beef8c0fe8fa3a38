//go:build linux

package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// runner runs system commands (btrfs, lvm2, mount); the LVM tests replace it
// with a recording fake because this machine has no device-mapper.
type runner interface {
	run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// execRunner runs commands for real.
type execRunner struct{}

// run returns the command's standard output; its error names the command
// line and carries what the command printed on standard error.
func (execRunner) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		line := strings.Join(append([]string{name}, args...), " ")
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return out, fmt.Errorf("snapshot: %s: %w: %s", line, err, msg)
		}
		return out, fmt.Errorf("snapshot: %s: %w", line, err)
	}
	return out, nil
}
