package config_test

import (
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/writecap/writecap/certs"
	"github.com/writecap/writecap/config"
	"github.com/writecap/writecap/master"
	"github.com/writecap/writecap/replica"
)

// testCerts makes a CA and the certificates of nodes "master" and "replica"
// and returns their directory.
func testCerts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := certs.Create(certs.Options{Dir: dir, Nodes: []string{"master", "replica"}, Days: 1}); err != nil {
		t.Fatalf("certs.Create: %v", err)
	}
	return dir
}

// tlsLine is the tls setting of node in certDir.
func tlsLine(certDir, node string) string {
	return "tls: {ca: " + filepath.Join(certDir, "ca.crt") +
		", cert: " + filepath.Join(certDir, node+".crt") +
		", key: " + filepath.Join(certDir, node+".key") + "}\n"
}

// writeFile writes a scenario file, its lines given without the leading tab
// that keeps them readable in the tests, and returns its path.
func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "writecap.yaml")
	text = strings.ReplaceAll(strings.TrimPrefix(text, "\n"), "\n\t\t", "\n")
	text = strings.TrimPrefix(text, "\t\t")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustLoad(t *testing.T, text string) *config.File {
	t.Helper()
	f, err := config.Load(writeFile(t, text))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return f
}

func TestLoadMasterFile(t *testing.T) {
	certDir := testCerts(t)
	f := mustLoad(t, `
		name: master-1
		`+tlsLine(certDir, "master")+`
		metrics: 127.0.0.1:9100
		heartbeat: 2s
		timeout: 1m30s
		scenarios:
		  - id: db
		    source: /srv/db
		    state: /var/lib/writecap/db
		    compress: true
		    bandwidth: 100MiB        # per second, to each replica
		    spool: {memory: 256MiB, max: 20GiB, min_free: 1GiB}
		    ring_size: 64MiB
		    max_data: 1 MB
		    drain_timeout: 45s
		    replicas: [{addr: "10.0.0.2:7070", name: replica-1}, {addr: "[fd00::3]:7070"}]
		  - {id: replica.side_only-2, root: /srv/replica/x}
		`)
	got, err := f.Masters()
	if err != nil {
		t.Fatalf("Masters: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("%d master configurations, want 1 (the scenario with a root is the replica's)", len(got))
	}
	c := got[0]
	checkClientTLS(t, c, "replica-1")
	c.TLS = nil
	want := master.Config{
		Scenario: "db", Name: "master-1", Source: "/srv/db", State: "/var/lib/writecap/db",
		Replicas:     []master.Replica{{Addr: "10.0.0.2:7070", Name: "replica-1"}, {Addr: "[fd00::3]:7070"}},
		Compress:     true,
		Bandwidth:    100 << 20,
		SpoolMem:     256 << 20,
		SpoolMax:     20 << 30,
		MinFree:      1 << 30,
		DrainTimeout: 45 * time.Second,
		Metrics:      "127.0.0.1:9100",
	}
	want.Stream.Heartbeat, want.Stream.Timeout = 2*time.Second, 90*time.Second
	want.Capture.RingSize, want.Capture.MaxData = 64<<20, 1_000_000
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("master configuration:\n got %+v\nwant %+v", c, want)
	}
}

// checkClientTLS checks that c's TLS function builds a TLS 1.3 client
// configuration with the node's certificate that checks serverName.
func checkClientTLS(t *testing.T, c master.Config, serverName string) {
	t.Helper()
	if c.TLS == nil {
		t.Fatal("no TLS function")
	}
	tc, err := c.TLS(serverName)
	if err != nil {
		t.Fatalf("TLS(%q): %v", serverName, err)
	}
	if tc.MinVersion != tls.VersionTLS13 || len(tc.Certificates) != 1 || tc.RootCAs == nil || tc.ServerName != serverName {
		t.Fatalf("client TLS: min version %#x, %d certificates, roots %v, server name %q", tc.MinVersion, len(tc.Certificates), tc.RootCAs != nil, tc.ServerName)
	}
}

func TestLoadMasterDefaults(t *testing.T) {
	certDir := testCerts(t)
	f := mustLoad(t, `
		name: m
		`+tlsLine(certDir, "master")+`
		scenarios:
		  - {id: db, source: /srv/db, replicas: [{addr: "r:7070"}]}
		  - {id: web_2, source: /srv/web, compress: false, replicas: [{addr: "r:7071"}]}
		`)
	got, err := f.Masters()
	if err != nil {
		t.Fatalf("Masters: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("%d master configurations, want 2", len(got))
	}
	tests := []struct {
		name string
		got  master.Config
		want master.Config
	}{
		{
			name: "compress on, state under the default directory",
			got:  got[0],
			want: master.Config{Scenario: "db", Name: "m", Source: "/srv/db", State: filepath.Join(config.DefaultStateDir, "master", "db"),
				Replicas: []master.Replica{{Addr: "r:7070"}}, Compress: true},
		},
		{
			name: "compress off",
			got:  got[1],
			want: master.Config{Scenario: "web_2", Name: "m", Source: "/srv/web", State: filepath.Join(config.DefaultStateDir, "master", "web_2"),
				Replicas: []master.Replica{{Addr: "r:7071"}}, Compress: false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkClientTLS(t, tt.got, "")
			tt.got.TLS = nil
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Fatalf("master configuration:\n got %+v\nwant %+v", tt.got, tt.want)
			}
		})
	}
}

func TestLoadReplicaFile(t *testing.T) {
	certDir := testCerts(t)
	f := mustLoad(t, `
		name: replica-1
		listen: ":7070"
		`+tlsLine(certDir, "replica")+`
		metrics: 127.0.0.1:9101
		heartbeat: 3s
		timeout: 20s
		scenarios:
		  - {id: db, root: /srv/replica/db, state: /var/lib/writecap/replica/db, master: master-1, spool: {max: 20GiB, min_free: 512MiB}}
		  - {id: logs, root: /srv/replica/logs}
		  - {id: theirs, source: /srv/theirs, replicas: [{addr: "x:1"}]}
		`)
	c, err := f.Replica()
	if err != nil {
		t.Fatalf("Replica: %v", err)
	}
	if c.TLS == nil || c.TLS.MinVersion != tls.VersionTLS13 || len(c.TLS.Certificates) != 1 ||
		c.TLS.ClientAuth != tls.RequireAndVerifyClientCert || c.TLS.ClientCAs == nil {
		t.Fatalf("server TLS %+v: want TLS 1.3, the node's certificate, client certificates required and checked", c.TLS)
	}
	c.TLS = nil
	want := replica.Config{
		Listen: ":7070", Name: "replica-1", Metrics: "127.0.0.1:9101",
		Heartbeat: 3 * time.Second, Timeout: 20 * time.Second,
		Scenarios: []replica.Scenario{
			{ID: "db", Root: "/srv/replica/db", State: "/var/lib/writecap/replica/db", Master: "master-1", SpoolMax: 20 << 30, MinFree: 512 << 20},
			{ID: "logs", Root: "/srv/replica/logs", State: filepath.Join(config.DefaultStateDir, "replica", "logs")},
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("replica configuration:\n got %+v\nwant %+v", c, want)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{name: "bytes", in: "65536", want: 65536},
		{name: "zero", in: "0", want: 0},
		{name: "binary unit", in: "64MiB", want: 64 << 20},
		{name: "binary unit lower case", in: "64mib", want: 64 << 20},
		{name: "decimal unit with a space", in: "1 MB", want: 1_000_000},
		{name: "gibibytes", in: "20GiB", want: 20 << 30},
		{name: "fraction", in: "1.5KiB", want: 1536},
		{name: "thousands separator", in: "1,048,576", want: 1 << 20},
		{name: "the largest", in: "4EiB", want: 1 << 62},
		{name: "too large", in: "5EiB", wantErr: true},
		{name: "past 64 bits", in: "20EiB", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "negative", in: "-1MiB", wantErr: true},
		{name: "words", in: "lots", wantErr: true},
		{name: "unknown unit", in: "10 potatoes", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.ParseSize(tt.in)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), `"`+tt.in+`"`) {
					t.Fatalf("ParseSize(%q) = %d, %v; want an error naming the value", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestLoadRejects(t *testing.T) {
	const tlsOK = "tls: {ca: ca.crt, cert: n.crt, key: n.key}\n"
	tests := []struct {
		name string
		text string
		want []string // each in the error's text, besides the file's path
	}{
		{
			name: "a misspelt scenario key",
			text: `
		name: m
		scenarios:
		  - id: db
		    source: /srv/db
		    compres: false
		    replicas: [{addr: "r:1"}]
		`,
			want: []string{"line 5", "compres"},
		},
		{
			name: "a misspelt top-level key",
			text: "name: m\nheartbaet: 2s\n",
			want: []string{"line 2", "heartbaet"},
		},
		{
			name: "a misspelt spool key",
			text: "scenarios:\n  - {id: db, source: /s, spool: {maximum: 1GiB}, replicas: [{addr: \"r:1\"}]}\n",
			want: []string{"line 2", "maximum"},
		},
		{
			name: "a misspelt replica key",
			text: "scenarios:\n  - id: db\n    source: /s\n    replicas:\n      - {adress: \"r:1\"}\n",
			want: []string{"line 5", "adress"},
		},
		{
			name: "a bad size",
			text: "scenarios:\n  - id: db\n    bandwidth: 100 potatoes\n",
			want: []string{"line 3", "100 potatoes"},
		},
		{
			name: "a negative size",
			text: "scenarios:\n  - id: db\n    spool: {max: -1GiB}\n",
			want: []string{"line 3", "-1GiB"},
		},
		{
			name: "a block size too large",
			text: "scenarios:\n  - {id: db, source: /s, block_size: 1GiB, replicas: [{addr: \"r:1\"}]}\n",
			want: []string{"scenario db", "block_size 1073741824"},
		},
		{
			name: "a size too large",
			text: "scenarios:\n  - id: db\n    ring_size: 5EiB\n",
			want: []string{"line 3", "5EiB"},
		},
		{
			name: "a bad duration",
			text: "name: m\n" + tlsOK + "heartbeat: 10 seconds\n",
			want: []string{"line 3", "10 seconds"},
		},
		{
			name: "a duration without a unit",
			text: "scenarios:\n  - id: db\n    drain_timeout: 30\n",
			want: []string{"line 3", `"30"`},
		},
		{
			// stream.NewSender and the receiver pass Heartbeat to
			// time.NewTicker, which panics on a negative interval.
			name: "a negative heartbeat",
			text: "name: m\nheartbeat: -1s\n",
			want: []string{"line 2", "-1s"},
		},
		{
			name: "a negative timeout",
			text: "name: m\ntimeout: -10s\n",
			want: []string{"line 2", "-10s"},
		},
		{
			name: "a negative drain timeout",
			text: "scenarios:\n  - id: db\n    drain_timeout: -1m\n",
			want: []string{"line 3", "-1m"},
		},
		{
			name: "a scenario listed twice",
			text: "scenarios:\n  - {id: db, root: /a}\n  - {id: web, root: /b}\n  - {id: db, root: /c}\n",
			want: []string{"db", "twice"},
		},
		{
			name: "a slash in an id",
			text: "scenarios:\n  - {id: db/1, root: /a}\n",
			want: []string{"scenario 1", `"db/1"`},
		},
		{
			name: "a space in an id",
			text: "scenarios:\n  - {id: db, root: /a}\n  - {id: db 2, root: /b}\n",
			want: []string{"scenario 2", `"db 2"`},
		},
		{
			name: "an id starting with a dot",
			text: "scenarios:\n  - {id: ..., root: /a}\n",
			want: []string{"scenario 1", `"..."`},
		},
		{
			name: "no id",
			text: "scenarios:\n  - {root: /a}\n",
			want: []string{"scenario 1", `""`},
		},
		{
			name: "a source without replicas",
			text: "scenarios:\n  - {id: db, source: /srv/db}\n",
			want: []string{"db", "replica"},
		},
		{
			name: "a source with an empty list of replicas",
			text: "scenarios:\n  - {id: db, source: /srv/db, replicas: []}\n",
			want: []string{"db", "replica"},
		},
		{
			name: "a replica without addr",
			text: "scenarios:\n  - {id: db, source: /srv/db, replicas: [{addr: \"r:1\"}, {name: replica-2}]}\n",
			want: []string{"db", "replica 2", "addr"},
		},
		{
			name: "a map where a list goes",
			text: "scenarios: {id: db}\n",
			want: []string{"line 1"},
		},
		{
			name: "not YAML",
			text: "scenarios: [\n",
			want: []string{"yaml"},
		},
		{
			name: "an empty file",
			text: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.text)
			f, err := config.Load(path)
			if err == nil {
				t.Fatalf("loaded %+v", f)
			}
			t.Log(err)
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("error %q does not wrap ErrInvalid", err)
			}
			for _, w := range append(tt.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nowhere.yaml")
	_, err := config.Load(path)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load of a missing file: %v", err)
	}
	if errors.Is(err, config.ErrInvalid) {
		t.Fatalf("a missing file is not an invalid one: %v", err)
	}
}

// roleError runs what an agent of role asks of a loaded file.
func roleError(f *config.File, role string) error {
	if role == "master" {
		_, err := f.Masters()
		return err
	}
	_, err := f.Replica()
	return err
}

func TestAgentsReject(t *testing.T) {
	certDir := testCerts(t)
	masterTLS, replicaTLS := tlsLine(certDir, "master"), tlsLine(certDir, "replica")
	missing := filepath.Join(certDir, "nobody.crt")
	const masterScenario = "scenarios:\n  - {id: db, source: /srv/db, replicas: [{addr: \"r:1\"}]}\n"
	const replicaScenario = "scenarios:\n  - {id: db, root: /srv/replica/db}\n"
	tests := []struct {
		name        string
		role        string
		text        string
		wantInvalid bool
		want        []string
	}{
		{
			name: "master without tls", role: "master",
			text:        "name: m\n" + masterScenario,
			wantInvalid: true, want: []string{"tls", "ca", "cert", "key"},
		},
		{
			name: "master without a key", role: "master",
			text:        "tls: {ca: " + filepath.Join(certDir, "ca.crt") + ", cert: " + filepath.Join(certDir, "master.crt") + "}\n" + masterScenario,
			wantInvalid: true, want: []string{"tls", "key"},
		},
		{
			name: "replica without tls", role: "replica",
			text:        "listen: \":7070\"\n" + replicaScenario,
			wantInvalid: true, want: []string{"tls", "ca", "cert", "key"},
		},
		{
			name: "replica whose certificate file is missing", role: "replica",
			text: "listen: \":7070\"\ntls: {ca: " + filepath.Join(certDir, "ca.crt") + ", cert: " + missing + ", key: " + filepath.Join(certDir, "replica.key") + "}\n" + replicaScenario,
			want: []string{missing},
		},
		{
			name: "replica whose CA file is missing", role: "replica",
			text: "listen: \":7070\"\ntls: {ca: " + missing + ", cert: " + filepath.Join(certDir, "replica.crt") + ", key: " + filepath.Join(certDir, "replica.key") + "}\n" + replicaScenario,
			want: []string{missing},
		},
		{
			name: "replica with another node's key", role: "replica",
			text: "listen: \":7070\"\ntls: {ca: " + filepath.Join(certDir, "ca.crt") + ", cert: " + filepath.Join(certDir, "replica.crt") + ", key: " + filepath.Join(certDir, "master.key") + "}\n" + replicaScenario,
			want: []string{"replica.crt", "master.key"},
		},
		{
			name: "replica without listen", role: "replica",
			text:        replicaTLS + replicaScenario,
			wantInvalid: true, want: []string{"listen"},
		},
		{
			name: "no scenario for the master", role: "master",
			text:        masterTLS + replicaScenario,
			wantInvalid: true, want: []string{"no scenario", "source"},
		},
		{
			name: "no scenarios at all for the master", role: "master",
			text:        "name: m\n" + masterTLS,
			wantInvalid: true, want: []string{"no scenario", "source"},
		},
		{
			name: "no scenario for the replica", role: "replica",
			text:        "listen: \":7070\"\n" + replicaTLS + masterScenario,
			wantInvalid: true, want: []string{"no scenario", "root"},
		},
		{
			name: "one metrics address for two master scenarios", role: "master",
			text:        "metrics: 127.0.0.1:9100\n" + masterTLS + masterScenario + "  - {id: web, source: /srv/web, replicas: [{addr: \"r:2\"}]}\n",
			wantInvalid: true, want: []string{"metrics"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustLoad(t, tt.text)
			err := roleError(f, tt.role)
			if err == nil {
				t.Fatalf("the %s configuration of %+v was accepted", tt.role, f)
			}
			t.Log(err)
			if tt.wantInvalid && !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("error %q does not wrap ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

// A master reads its TLS files when it connects to a replica: a missing one
// surfaces there, naming the file.
func TestMasterTLSMissingFile(t *testing.T) {
	certDir := testCerts(t)
	missing := filepath.Join(certDir, "nobody.key")
	f := mustLoad(t, "tls: {ca: "+filepath.Join(certDir, "ca.crt")+", cert: "+filepath.Join(certDir, "master.crt")+", key: "+missing+"}\n"+
		"scenarios:\n  - {id: db, source: /srv/db, replicas: [{addr: \"r:1\", name: replica}]}\n")
	cs, err := f.Masters()
	if err != nil {
		// Checking the files up front is as good.
		if !strings.Contains(err.Error(), missing) {
			t.Fatalf("error %q does not name %s", err, missing)
		}
		return
	}
	_, err = cs[0].TLS("replica")
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("TLS with a missing key file: %v; want an error naming %s", err, missing)
	}
}

func TestLoadOr(t *testing.T) {
	path := writeFile(t, "name: from-file\nscenarios:\n  - {id: db, root: /srv/replica/db}\n")
	tests := []struct {
		name     string
		path     string
		flags    *config.File
		wantName string
		wantErr  []string // in the error's text; nil: no error
	}{
		{
			name:     "flags when no file is named",
			flags:    &config.File{Name: "from-flags", Scenarios: []config.Scenario{{ID: "db", Source: "/srv/db", Replicas: []config.Replica{{Addr: "r:1"}}}}},
			wantName: "from-flags",
		},
		{
			name:     "the file when one is named, whatever the flags",
			path:     path,
			flags:    &config.File{Name: "from-flags", Scenarios: []config.Scenario{{ID: "bad/id"}}},
			wantName: "from-file",
		},
		{
			name:    "flags are checked as a file is",
			flags:   &config.File{Scenarios: []config.Scenario{{ID: "db", Source: "/srv/db"}}},
			wantErr: []string{"db", "replica"},
		},
		{
			// stream passes Heartbeat to time.NewTicker, which panics on it.
			name:    "flags with a negative heartbeat",
			flags:   &config.File{Heartbeat: config.Duration(-time.Second), Scenarios: []config.Scenario{{ID: "db", Root: "/r"}}},
			wantErr: []string{"heartbeat"},
		},
		{
			name:    "flags with a bad id",
			flags:   &config.File{Scenarios: []config.Scenario{{ID: "../db", Root: "/r"}}},
			wantErr: []string{`"../db"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := config.LoadOr(tt.path, tt.flags)
			if tt.wantErr != nil {
				if !errors.Is(err, config.ErrInvalid) {
					t.Fatalf("LoadOr: %v; want an error wrapping ErrInvalid", err)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Fatalf("error %q does not name %s", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadOr: %v", err)
			}
			if f.Name != tt.wantName {
				t.Fatalf("loaded %q, want %q", f.Name, tt.wantName)
			}
		})
	}
}
