// Package config reads the YAML scenario file shared by `writecap master`
// and `writecap replica`, and turns it, or the same settings given as
// flags, into the agents' configurations.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/dustin/go-humanize"
	"go.yaml.in/yaml/v3"

	"github.com/writecap/writecap/resync"
)

// File is a scenario file. A master uses the scenarios with a source; a
// replica those with a root.
//
//	name: master-1
//	tls: {ca: /etc/writecap/ca.crt, cert: /etc/writecap/master-1.crt, key: /etc/writecap/master-1.key}
//	metrics: 127.0.0.1:9100
//	scenarios:
//	  - id: db
//	    source: /srv/db
//	    state: /var/lib/writecap/db
//	    compress: true
//	    bandwidth: 100MiB        # per second, to each replica
//	    spool: {memory: 256MiB, max: 20GiB, min_free: 1GiB}
//	    replicas: [{addr: "10.0.0.2:7070", name: replica-1}]
//
// and on the replica:
//
//	name: replica-1
//	listen: ":7070"
//	tls: {...}
//	scenarios:
//	  - {id: db, root: /srv/replica/db, state: /var/lib/writecap/replica/db, master: master-1}
type File struct {
	Name      string     `yaml:"name"`
	Listen    string     `yaml:"listen"`
	Metrics   string     `yaml:"metrics"`
	TLS       TLS        `yaml:"tls"`
	Scenarios []Scenario `yaml:"scenarios"`
	// Timeouts of the stream, both sides.
	Heartbeat Duration `yaml:"heartbeat"`
	Timeout   Duration `yaml:"timeout"`
}

// TLS names the PEM files of this node.
type TLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Scenario is one replicated tree.
type Scenario struct {
	ID    string `yaml:"id"`
	State string `yaml:"state"`
	// master side
	Source    string    `yaml:"source"`
	Replicas  []Replica `yaml:"replicas"`
	Compress  *bool     `yaml:"compress"` // default on
	Bandwidth Size      `yaml:"bandwidth"`
	Spool     Spool     `yaml:"spool"`
	RingSize  Size      `yaml:"ring_size"`
	MaxData   Size      `yaml:"max_data"`
	Drain     Duration  `yaml:"drain_timeout"`
	Slack     Duration  `yaml:"resume_slack"`
	// BlockSize is the block of comparisons with what a replica holds
	// (sync at scenario start, repairs, verify); default 64 KiB.
	BlockSize Size `yaml:"block_size"`
	// replica side
	Root   string `yaml:"root"`
	Master string `yaml:"master"` // the master identity it takes; "" any of the CA
}

// Replica is one destination of a master scenario.
type Replica struct {
	Addr string `yaml:"addr"`
	Name string `yaml:"name"`
}

// Spool limits.
type Spool struct {
	Memory  Size `yaml:"memory"`
	Max     Size `yaml:"max"`
	MinFree Size `yaml:"min_free"`
}

// Size is a byte count written as 1048576, "1MiB" or "1 MB".
type Size int64

func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = Size(v)
	return nil
}

// Set, String and Type make a Size a command-line flag.
func (s *Size) Set(v string) error {
	n, err := ParseSize(v)
	*s = Size(n)
	return err
}

func (s *Size) String() string { return humanize.IBytes(uint64(*s)) }
func (s *Size) Type() string   { return "size" }

// ParseSize reads a byte count such as "64MiB".
func ParseSize(v string) (int64, error) {
	n, err := humanize.ParseBytes(v)
	if err != nil || n > 1<<62 {
		return 0, fmt.Errorf("config: size %q: want a byte count such as 65536 or 64MiB", v)
	}
	return int64(n), nil
}

// Duration is written as "10s" or "1m30s".
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err == nil && v < 0 {
		err = errors.New("negative")
	}
	if err != nil {
		return fmt.Errorf("line %d: config: duration %q: %w", n.Line, n.Value, err)
	}
	*d = Duration(v)
	return nil
}

// ErrInvalid is wrapped by every error about a file's content.
var ErrInvalid = errors.New("config: invalid scenario file")

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Load reads and checks a scenario file. Unknown keys are errors: a typo
// must not silently fall back to a default.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("config: %s: %w: %w", path, err, ErrInvalid)
	}
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	return &f, nil
}

// LoadOr loads the file at path if one is named, and otherwise returns
// flags: the settings given on the command line.
func LoadOr(path string, flags *File) (*File, error) {
	if path == "" {
		return flags, flags.check()
	}
	return Load(path)
}

func (f *File) check() error {
	if f.Heartbeat < 0 || f.Timeout < 0 {
		return fmt.Errorf("heartbeat %v, timeout %v: durations cannot be negative: %w",
			time.Duration(f.Heartbeat), time.Duration(f.Timeout), ErrInvalid)
	}
	seen := map[string]bool{}
	for i, s := range f.Scenarios {
		if !idPattern.MatchString(s.ID) {
			return fmt.Errorf("scenario %d: id %q: letters, digits, '.', '-' and '_' only: %w", i+1, s.ID, ErrInvalid)
		}
		if seen[s.ID] {
			return fmt.Errorf("scenario %s listed twice: %w", s.ID, ErrInvalid)
		}
		seen[s.ID] = true
		if s.Source != "" && len(s.Replicas) == 0 {
			return fmt.Errorf("scenario %s: a source needs at least one replica: %w", s.ID, ErrInvalid)
		}
		if s.Drain < 0 || s.Slack < 0 {
			return fmt.Errorf("scenario %s: drain_timeout %v, resume_slack %v: durations cannot be negative: %w",
				s.ID, time.Duration(s.Drain), time.Duration(s.Slack), ErrInvalid)
		}
		if s.BlockSize > resync.MaxBlockSize {
			return fmt.Errorf("scenario %s: block_size %d: at most %d: %w", s.ID, s.BlockSize, resync.MaxBlockSize, ErrInvalid)
		}
		for j, r := range s.Replicas {
			if r.Addr == "" {
				return fmt.Errorf("scenario %s: replica %d: no addr: %w", s.ID, j+1, ErrInvalid)
			}
		}
	}
	return nil
}
