package monitor

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestControl: an action is answered on the socket, reached by its path or
// its directory; it has mode 0600, so only its owner may connect; a socket a killed agent left
// is replaced, and anything else in its place is not.
func TestControl(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	path := filepath.Join(dir, ControlSocket)
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	actions := map[string]Action{"echo": func(_ context.Context, q url.Values) (any, error) { return q.Get("v"), nil }}
	if err := ServeControl(ctx, path, actions, log); err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v %v, want 0600", fi, err)
	}
	for _, at := range []string{path, dir} {
		var got string
		if err := Call(ctx, at, "echo", url.Values{"v": {"hi"}}, &got); err != nil || got != "hi" {
			t.Errorf("Call(%s) = %q, %v; want hi", at, got, err)
		}
	}
	var got string
	if err := Call(ctx, dir, "nothing", nil, &got); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("an unknown action: %v, want 404", err)
	}

	other := filepath.Join(t.TempDir(), ControlSocket)
	if err := os.WriteFile(other, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ServeControl(ctx, other, actions, log); err == nil || !strings.Contains(err.Error(), "something else is there") {
		t.Errorf("over a regular file: %v, want it refused", err)
	}
	if b, err := os.ReadFile(other); err != nil || string(b) != "data" {
		t.Errorf("the file in the socket's place was changed: %q %v", b, err)
	}
}
