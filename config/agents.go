package config

import (
	"crypto/tls"
	"fmt"
	"path/filepath"
	"time"

	"github.com/writecap/writecap/master"
	"github.com/writecap/writecap/replica"
	"github.com/writecap/writecap/stream"
)

// DefaultStateDir holds a scenario's spool and sequence numbers when the
// file does not say where.
const DefaultStateDir = "/var/lib/writecap"

func (f *File) files() (stream.TLSFiles, error) {
	t := stream.TLSFiles{CA: f.TLS.CA, Cert: f.TLS.Cert, Key: f.TLS.Key}
	if t.CA == "" || t.Cert == "" || t.Key == "" {
		return t, fmt.Errorf("config: tls needs a ca, a cert and a key file (writecap certs makes them): %w", ErrInvalid)
	}
	return t, nil
}

func stateDir(s Scenario, role string) string {
	if s.State != "" {
		return s.State
	}
	return filepath.Join(DefaultStateDir, role, s.ID)
}

// Masters returns one master configuration per scenario with a source.
func (f *File) Masters() ([]master.Config, error) {
	files, err := f.files()
	if err != nil {
		return nil, err
	}
	var out []master.Config
	for _, s := range f.Scenarios {
		if s.Source == "" {
			continue
		}
		c := master.Config{
			Scenario: s.ID, Name: f.Name, Source: s.Source, State: stateDir(s, "master"),
			TLS:       func(name string) (*tls.Config, error) { return stream.ClientConfig(files, name) },
			Compress:  s.Compress == nil || *s.Compress,
			Bandwidth: int64(s.Bandwidth), SpoolMem: int64(s.Spool.Memory), SpoolMax: int64(s.Spool.Max),
			MinFree: int64(s.Spool.MinFree), DrainTimeout: time.Duration(s.Drain), Metrics: f.Metrics,
			ResumeSlack: time.Duration(s.Slack), BlockSize: int(s.BlockSize),
		}
		c.Stream.Heartbeat, c.Stream.Timeout = time.Duration(f.Heartbeat), time.Duration(f.Timeout)
		c.Capture.RingSize, c.Capture.MaxData = int(s.RingSize), int64(s.MaxData)
		for _, r := range s.Replicas {
			c.Replicas = append(c.Replicas, master.Replica{Addr: r.Addr, Name: r.Name})
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("config: no scenario with a source to protect: %w", ErrInvalid)
	}
	if len(out) > 1 && f.Metrics != "" {
		return nil, fmt.Errorf("config: one metrics address serves one master scenario; run one master per scenario: %w", ErrInvalid)
	}
	return out, nil
}

// Replica returns the replica configuration for the scenarios with a root.
func (f *File) Replica() (replica.Config, error) {
	c := replica.Config{Listen: f.Listen, Name: f.Name, Metrics: f.Metrics}
	files, err := f.files()
	if err != nil {
		return c, err
	}
	if c.TLS, err = stream.ServerConfig(files); err != nil {
		return c, err
	}
	if c.Listen == "" {
		return c, fmt.Errorf("config: a replica needs a listen address: %w", ErrInvalid)
	}
	c.Heartbeat, c.Timeout = time.Duration(f.Heartbeat), time.Duration(f.Timeout)
	for _, s := range f.Scenarios {
		if s.Root == "" {
			continue
		}
		c.Scenarios = append(c.Scenarios, replica.Scenario{
			ID: s.ID, Root: s.Root, State: stateDir(s, "replica"), Master: s.Master,
			SpoolMax: int64(s.Spool.Max), MinFree: int64(s.Spool.MinFree),
		})
	}
	if len(c.Scenarios) == 0 {
		return c, fmt.Errorf("config: no scenario with a root to replicate into: %w", ErrInvalid)
	}
	return c, nil
}
