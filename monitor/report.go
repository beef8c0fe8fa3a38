// Package monitor serves an agent's Prometheus metrics and status document
// over HTTP, and reads and prints the status for `writecap status`.
package monitor

import (
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
	"time"
)

// Report is an agent's status document, served at /status as JSON.
type Report struct {
	Role      string     `json:"role"` // "master" or "replica"
	Name      string     `json:"name"`
	Time      time.Time  `json:"time"`
	Scenarios []Scenario `json:"scenarios"`
}

// Scenario is one protected (master) or replicated (replica) root.
type Scenario struct {
	ID    string `json:"id"`
	Root  string `json:"root"`
	State string `json:"state"`
	Epoch uint64 `json:"epoch"`
	// Captured is the last sequence number the master captured; Received,
	// Applied and Durable what a replica holds, applied and made durable.
	Captured   uint64  `json:"captured,omitempty"`
	Received   uint64  `json:"received,omitempty"`
	Applied    uint64  `json:"applied,omitempty"`
	Durable    uint64  `json:"durable,omitempty"`
	SpoolBytes int64   `json:"spool_bytes"`
	Throughput float64 `json:"throughput_bytes_per_second"`
	LastError  string  `json:"last_error,omitempty"`
	Peers      []Peer  `json:"peers,omitempty"` // a master's replicas
}

// Peer is a master's view of one replica.
type Peer struct {
	Addr       string  `json:"addr"`
	Connected  bool    `json:"connected"`
	Sent       uint64  `json:"sent"`
	Received   uint64  `json:"received"`
	Applied    uint64  `json:"applied"`
	Durable    uint64  `json:"durable"`
	LagSeconds float64 `json:"lag_seconds"`
	LagBytes   int64   `json:"lag_bytes"`
	Reconnects uint64  `json:"reconnects"`
	LastError  string  `json:"last_error,omitempty"`
}

// Print writes r as a table for a person.
func (r *Report) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s %s at %s\n", r.Role, r.Name, r.Time.Format(time.RFC3339))
	for _, s := range r.Scenarios {
		fmt.Fprintf(tw, "scenario %s\troot %s\tstate %s\tepoch %d\n", s.ID, s.Root, s.State, s.Epoch)
		if r.Role == "master" {
			fmt.Fprintf(tw, "  captured #%d\tspool %s\tthroughput %s/s\n", s.Captured, size(s.SpoolBytes), size(int64(s.Throughput)))
		} else {
			fmt.Fprintf(tw, "  received #%d\tdurable #%d\tapplied #%d\tspool %s\tthroughput %s/s\n",
				s.Received, s.Durable, s.Applied, size(s.SpoolBytes), size(int64(s.Throughput)))
		}
		if s.LastError != "" {
			fmt.Fprintf(tw, "  last error: %s\n", s.LastError)
		}
		for _, p := range s.Peers {
			state := "disconnected"
			if p.Connected {
				state = "connected"
			}
			fmt.Fprintf(tw, "  replica %s\t%s\tsent #%d\tdurable #%d\tapplied #%d\tlag %.3fs %s\treconnects %d\n",
				p.Addr, state, p.Sent, p.Durable, p.Applied, p.LagSeconds, size(p.LagBytes), p.Reconnects)
			if p.LastError != "" {
				fmt.Fprintf(tw, "    last error: %s\n", p.LastError)
			}
		}
	}
	return tw.Flush()
}

func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Rate turns a growing count into a rate over the interval between two
// readings, for status documents read every few seconds.
type Rate struct {
	mu    sync.Mutex
	at    time.Time
	count uint64
	rate  float64
}

// PerSecond returns the rate of count since the last reading that was at
// least a second ago (the rate is kept between such readings).
func (r *Rate) PerSecond(count uint64) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.at.IsZero() {
		r.at, r.count = now, count
		return 0
	}
	if d := now.Sub(r.at); d >= time.Second {
		r.rate = float64(count-r.count) / d.Seconds()
		r.at, r.count = now, count
	}
	return r.rate
}
