// Package replica runs the replica agent: it takes masters' sessions,
// stores what they send durably in a spool per scenario, applies it in order
// beneath the scenario's root and acknowledges every step.
package replica

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/writecap/writecap/monitor"
	"github.com/writecap/writecap/stream"
)

// Scenario is one replicated root.
type Scenario struct {
	ID    string
	Root  string // where the master's tree is replayed
	State string // spool and sequence numbers; outside Root
	// Master, if set, is the only master identity (certificate common
	// name) this scenario takes.
	Master   string
	SpoolMax int64 // bytes the spool may hold; 0: no limit
	MinFree  int64 // bytes the spool leaves free on its file system
}

// Config is what `writecap replica` needs.
type Config struct {
	Listen    string
	Name      string      // this replica's identity; masters may ask for it
	TLS       *tls.Config // from stream.ServerConfig
	Scenarios []Scenario
	Metrics   string // address of the /metrics and /status endpoint; "" none
	// Heartbeat and Timeout of the stream; defaults in stream.ServerConfig.
	Heartbeat, Timeout time.Duration
	Logger             *slog.Logger
	// Ready is called with the listening address once sessions are taken.
	Ready func(addr net.Addr)
}

// Run serves until ctx ends, then makes what was applied durable.
func Run(ctx context.Context, cfg Config) (err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if len(cfg.Scenarios) == 0 {
		return errors.New("replica: no scenario to serve")
	}
	byID := map[string]*scenario{}
	defer func() {
		for _, s := range byID {
			err = errors.Join(err, s.close())
		}
	}()
	for _, sc := range cfg.Scenarios {
		if byID[sc.ID] != nil {
			return fmt.Errorf("replica: scenario %q listed twice", sc.ID)
		}
		if err := checkDirs(sc); err != nil {
			return err
		}
		s, err := openScenario(sc, cfg.Name, log)
		if err != nil {
			return err
		}
		byID[sc.ID] = s
	}
	if cfg.Metrics != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(&collector{byID: byID})
		report := func() monitor.Report {
			r := monitor.Report{Role: "replica", Name: cfg.Name}
			for _, sc := range cfg.Scenarios {
				r.Scenarios = append(r.Scenarios, byID[sc.ID].status())
			}
			return r
		}
		addr, err := monitor.Serve(ctx, cfg.Metrics, reg, report, log)
		if err != nil {
			return err
		}
		log.Info("metrics and status", "addr", addr.String())
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("replica: listen %s: %w", cfg.Listen, err)
	}
	srv := stream.NewReceiver(stream.ReceiverConfig{
		TLS: cfg.TLS, Heartbeat: cfg.Heartbeat, Timeout: cfg.Timeout,
		Logger: log,
		Accept: func(_ context.Context, h *stream.Hello, peer string) (stream.Target, *stream.Welcome, error) {
			s := byID[h.Scenario]
			if s == nil {
				return nil, nil, fmt.Errorf("replica: no scenario %q here", h.Scenario)
			}
			return s.accept(h, peer)
		},
	})
	log.Info("replica listening", "addr", ln.Addr().String(), "scenarios", len(byID))
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}
	return srv.Serve(ctx, ln)
}

// checkDirs refuses a state directory inside the root: the replica would
// replicate over its own spool.
func checkDirs(sc Scenario) error {
	if sc.ID == "" || sc.Root == "" || sc.State == "" {
		return fmt.Errorf("replica: scenario %q needs an id, a root and a state directory", sc.ID)
	}
	root, err := filepath.Abs(sc.Root)
	if err != nil {
		return err
	}
	state, err := filepath.Abs(sc.State)
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(root, state); err == nil && filepath.IsLocal(rel) || root == state {
		return fmt.Errorf("replica: scenario %s: state directory %s is inside the root %s", sc.ID, state, root)
	}
	return nil
}
