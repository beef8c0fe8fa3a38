package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Serve answers /metrics from reg and /status from report on addr until
// ctx ends. It returns the address it listens on once listening. Both only
// read: an operator's requests go to the control socket (ServeControl).
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, report func() Report, log *slog.Logger) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("monitor: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		r := report()
		r.Time = time.Now()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(&r)
	})
	serve(ctx, ln, mux, log)
	return ln.Addr(), nil
}

func serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("monitor: serving stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	context.AfterFunc(ctx, func() { srv.Close() })
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
