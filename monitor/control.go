package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// ControlSocket is the name of a master scenario's control socket in its
// state directory.
const ControlSocket = "control.sock"

// An Action is an operator's request to an agent, served on its control
// socket as POST /NAME?QUERY; its result is answered as JSON.
type Action func(ctx context.Context, query url.Values) (any, error)

// ServeControl answers the actions on a Unix socket at path until ctx ends.
// Only the socket's owner may connect: an action can start a full copy of
// the tree, which the metrics address, often open to a scraper on the
// network, must not let anyone ask for. A socket left by an agent that
// was killed is replaced.
func ServeControl(ctx context.Context, path string, actions map[string]Action, log *slog.Logger) error {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return fmt.Errorf("monitor: control socket %s: something else is there", path)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("monitor: control socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("monitor: control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("monitor: control socket: %w", err)
	}
	mux := http.NewServeMux()
	for name, act := range actions {
		mux.HandleFunc("POST /"+name, func(w http.ResponseWriter, r *http.Request) {
			out, err := act(r.Context(), r.URL.Query())
			if err != nil {
				log.Warn("monitor: action failed", "action", name, "query", r.URL.RawQuery, "err", err)
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(out)
		})
	}
	serve(ctx, ln, mux, log)
	return nil
}

// Call runs an action on the agent whose control socket is at path, or in
// the state directory path, and decodes its answer into out.
func Call(ctx context.Context, path, action string, query url.Values, out any) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, ControlSocket)
	}
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	defer c.CloseIdleConnections()
	// The host is not used: the dial goes to the socket.
	u := "http://control/" + action + "?" + query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("monitor: %s on %s: %w", action, path, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("monitor: %s on %s: %w", action, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("monitor: %s on %s: %s: %s", action, path, resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("monitor: %s on %s: %w", action, path, err)
	}
	return nil
}
