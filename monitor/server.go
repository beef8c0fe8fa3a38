package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// An Action is an operator's request to an agent, served as POST
// /NAME?QUERY; its result is answered as JSON.
type Action func(ctx context.Context, query url.Values) (any, error)

// Serve answers /metrics from reg, /status from report and the actions on
// addr until ctx ends. It returns the address it listens on once listening.
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, report func() Report, log *slog.Logger, actions map[string]Action) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("monitor: listen %s: %w", addr, err)
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
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		r := report()
		r.Time = time.Now()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(&r)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("monitor: serving stopped", "addr", addr, "err", err)
		}
	}()
	context.AfterFunc(ctx, func() { srv.Close() })
	return ln.Addr(), nil
}

// Fetch reads an agent's status document from its monitor address.
func Fetch(ctx context.Context, addr string) (*Report, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return nil, fmt.Errorf("monitor: status %s: %w", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("monitor: status %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("monitor: status %s: %s", addr, resp.Status)
	}
	var r Report
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("monitor: status %s: %w", addr, err)
	}
	return &r, nil
}

// Call runs an action on the agent at addr and decodes its answer into out.
func Call(ctx context.Context, addr, action string, query url.Values, out any) error {
	u := "http://" + addr + "/" + action + "?" + query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("monitor: %s on %s: %w", action, addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("monitor: %s on %s: %w", action, addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("monitor: %s on %s: %s: %s", action, addr, resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("monitor: %s on %s: %w", action, addr, err)
	}
	return nil
}
