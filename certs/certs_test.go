package certs_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writecap/writecap/certs"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(t time.Time) func() time.Time { return func() time.Time { return t } }

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM CERTIFICATE", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestCreate(t *testing.T) {
	tests := []struct {
		name  string
		nodes []string
		ips   []string // IP SANs of the last node
	}{
		{name: "one node", nodes: []string{"master"}},
		{name: "several nodes", nodes: []string{"master", "replica-1", "dr_site.example.com"}},
		{name: "IPv4 name", nodes: []string{"master", "10.0.0.2"}, ips: []string{"10.0.0.2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			files, err := certs.Create(certs.Options{Dir: dir, Nodes: tt.nodes, Days: 30, Now: at(t0)})
			if err != nil {
				t.Fatal(err)
			}
			want := []string{filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")}
			for _, n := range tt.nodes {
				want = append(want, filepath.Join(dir, n+".crt"), filepath.Join(dir, n+".key"))
			}
			if !slices.Equal(files, want) {
				t.Fatalf("files %q, want %q", files, want)
			}
			if m := mode(t, dir); m != 0o700 {
				t.Errorf("%s has mode %v, want 0700", dir, m)
			}
			for _, f := range files {
				want := fs.FileMode(0o644)
				if strings.HasSuffix(f, ".key") {
					want = 0o600
				}
				if m := mode(t, f); m != want {
					t.Errorf("%s has mode %v, want %v", f, m, want)
				}
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != len(files) {
				t.Errorf("%d entries in %s, want %d: temporary files left?", len(entries), dir, len(files))
			}

			ca := readCert(t, filepath.Join(dir, "ca.crt"))
			if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
				t.Fatalf("CA: IsCA %v, key usage %#x", ca.IsCA, ca.KeyUsage)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			for i, n := range tt.nodes {
				c := readCert(t, filepath.Join(dir, n+".crt"))
				if c.Subject.CommonName != n || !slices.Equal(c.DNSNames, []string{n}) {
					t.Errorf("%s: CN %q, DNS names %q", n, c.Subject.CommonName, c.DNSNames)
				}
				if i == len(tt.nodes)-1 {
					var ips []string
					for _, ip := range c.IPAddresses {
						ips = append(ips, ip.String())
					}
					if !slices.Equal(ips, tt.ips) {
						t.Errorf("%s: IP addresses %q, want %q", n, ips, tt.ips)
					}
				}
				if !c.NotBefore.Before(t0) || !c.NotAfter.Equal(t0.AddDate(0, 0, 30)) {
					t.Errorf("%s: valid %v to %v", n, c.NotBefore, c.NotAfter)
				}
				for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
					_, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: n, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{usage}})
					if err != nil {
						t.Errorf("%s, usage %d: %v", n, usage, err)
					}
				}
				// The key is PKCS#8 ECDSA P-256 and matches the certificate.
				pair, err := tls.LoadX509KeyPair(filepath.Join(dir, n+".crt"), filepath.Join(dir, n+".key"))
				if err != nil {
					t.Fatalf("%s: %v", n, err)
				}
				if k, ok := pair.PrivateKey.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
					t.Errorf("%s: key %T", n, pair.PrivateKey)
				}
				keyPEM, _ := os.ReadFile(filepath.Join(dir, n+".key"))
				if block, _ := pem.Decode(keyPEM); block == nil || block.Type != "PRIVATE KEY" {
					t.Errorf("%s.key is not a PEM PRIVATE KEY", n)
				}
			}
		})
	}
}

func TestCreateVerifiesIP(t *testing.T) {
	dir := t.TempDir()
	if _, err := certs.Create(certs.Options{Dir: dir, Nodes: []string{"127.0.0.1"}, Days: 1}); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, "ca.crt")))
	c := readCert(t, filepath.Join(dir, "127.0.0.1.crt"))
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots}); err != nil {
		t.Fatal(err)
	}
	if err := c.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if !c.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("IP %v", c.IPAddresses)
	}
}

// TestCreateReusesCA adds a node later: the CA stays, the first node's files
// stay, and the new node's certificate ends no later than the CA.
func TestCreateReusesCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := certs.Create(certs.Options{Dir: dir, Nodes: []string{"master"}, Days: 30, Now: at(t0)}); err != nil {
		t.Fatal(err)
	}
	caBefore, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	masterBefore, _ := os.ReadFile(filepath.Join(dir, "master.crt"))

	later := t0.AddDate(0, 0, 10)
	files, err := certs.Create(certs.Options{Dir: dir, Nodes: []string{"replica"}, Days: 30, Now: at(later)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(dir, "replica.crt"), filepath.Join(dir, "replica.key")}; !slices.Equal(files, want) {
		t.Fatalf("files %q, want %q", files, want)
	}
	caAfter, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	masterAfter, _ := os.ReadFile(filepath.Join(dir, "master.crt"))
	if string(caAfter) != string(caBefore) || string(masterAfter) != string(masterBefore) {
		t.Fatal("adding a node changed the CA or another node")
	}
	ca := readCert(t, filepath.Join(dir, "ca.crt"))
	c := readCert(t, filepath.Join(dir, "replica.crt"))
	if !c.NotAfter.Equal(ca.NotAfter) {
		t.Fatalf("replica valid until %v, CA until %v", c.NotAfter, ca.NotAfter)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: later, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
}

func TestCreateOverwrite(t *testing.T) {
	dir := t.TempDir()
	opts := certs.Options{Dir: dir, Nodes: []string{"master"}, Days: 30}
	if _, err := certs.Create(opts); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "master.key"))

	// The new node comes first: nothing is written when any file would be replaced.
	opts.Nodes = []string{"replica", "master"}
	_, err := certs.Create(opts)
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), filepath.Join(dir, "master.crt")) {
		t.Fatalf("error %v, want one naming master.crt and wrapping fs.ErrExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "replica.crt")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("replica.crt written before the refusal: %v", err)
	}

	// A lone key also counts as the node's files.
	if err := os.Remove(filepath.Join(dir, "master.crt")); err != nil {
		t.Fatal(err)
	}
	opts.Nodes = []string{"master"}
	if _, err := certs.Create(opts); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "master.key") {
		t.Fatalf("error %v, want one naming master.key", err)
	}

	// A key replaced with force gets mode 0600 even if the old file was wider.
	if err := os.Chmod(filepath.Join(dir, "master.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts.Force = true
	files, err := certs.Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("files %q", files)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "master.key"))
	if string(after) == string(before) {
		t.Fatal("master.key not replaced")
	}
	if m := mode(t, filepath.Join(dir, "master.key")); m != 0o600 {
		t.Fatalf("replaced key has mode %v", m)
	}
}

func TestCreateRejects(t *testing.T) {
	tests := []struct {
		name  string
		opts  certs.Options
		msg   string
		exist bool // wraps fs.ErrExist rather than ErrInvalid
	}{
		{name: "no directory", opts: certs.Options{Nodes: []string{"a"}, Days: 1}, msg: "certs: no directory"},
		{name: "no nodes", opts: certs.Options{Dir: "d", Days: 1}, msg: "certs: no node names"},
		{name: "zero days", opts: certs.Options{Dir: "d", Nodes: []string{"a"}}, msg: "certs: validity of 0 days"},
		{name: "slash", opts: certs.Options{Dir: "d", Nodes: []string{"ok", "../etc/passwd"}, Days: 1}, msg: `certs: node name "../etc/passwd": '/' is not`},
		{name: "space", opts: certs.Options{Dir: "d", Nodes: []string{"my node"}, Days: 1}, msg: `certs: node name "my node": ' ' is not`},
		{name: "non-ASCII", opts: certs.Options{Dir: "d", Nodes: []string{"réplica"}, Days: 1}, msg: `certs: node name "réplica": 'é' is not`},
		{name: "colon", opts: certs.Options{Dir: "d", Nodes: []string{"fd00::1"}, Days: 1}, msg: `certs: node name "fd00::1": ':' is not`},
		{name: "empty", opts: certs.Options{Dir: "d", Nodes: []string{""}, Days: 1}, msg: "certs: empty node name"},
		{name: "dot dot", opts: certs.Options{Dir: "d", Nodes: []string{".."}, Days: 1}, msg: `certs: node name ".." starts with '.'`},
		{name: "hidden", opts: certs.Options{Dir: "d", Nodes: []string{".x"}, Days: 1}, msg: `certs: node name ".x" starts with '.'`},
		{name: "ca", opts: certs.Options{Dir: "d", Nodes: []string{"ca"}, Days: 1}, msg: `certs: node name "ca" is taken by the CA's files`},
		{name: "twice", opts: certs.Options{Dir: "d", Nodes: []string{"a", "b", "a"}, Days: 1}, msg: `certs: node "a" given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			if tt.opts.Dir != "" {
				tt.opts.Dir = filepath.Join(base, tt.opts.Dir)
			}
			files, err := certs.Create(tt.opts)
			if !errors.Is(err, certs.ErrInvalid) {
				t.Fatalf("error %v, want ErrInvalid", err)
			}
			if !strings.HasPrefix(err.Error(), tt.msg) {
				t.Fatalf("error %q, want it to start with %q", err, tt.msg)
			}
			if len(files) != 0 {
				t.Fatalf("wrote %q", files)
			}
			if entries, _ := os.ReadDir(base); len(entries) != 0 {
				t.Fatalf("created %v", entries)
			}
		})
	}
}

func TestCreateBadCA(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		msg   string
	}{
		{name: "key without certificate", setup: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "ca.crt"))
		}, msg: "ca.crt: no such file"},
		{name: "certificate without key", setup: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "ca.key"))
		}, msg: "ca.key: no such file"},
		{name: "garbage certificate", setup: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("junk"), 0o644)
		}, msg: "ca.crt holds no PEM CERTIFICATE"},
		{name: "garbage key", setup: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "ca.key"), []byte("junk"), 0o600)
		}, msg: "ca.key holds no PEM PRIVATE KEY"},
		{name: "node certificate as CA", setup: func(t *testing.T, dir string) {
			os.Rename(filepath.Join(dir, "a.crt"), filepath.Join(dir, "ca.crt"))
			os.Rename(filepath.Join(dir, "a.key"), filepath.Join(dir, "ca.key"))
		}, msg: "ca.crt is not a CA certificate"},
		{name: "another CA's key", setup: func(t *testing.T, dir string) {
			os.Rename(filepath.Join(dir, "a.key"), filepath.Join(dir, "ca.key"))
		}, msg: "ca.key is not the key of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := certs.Create(certs.Options{Dir: dir, Nodes: []string{"a"}, Days: 1}); err != nil {
				t.Fatal(err)
			}
			tt.setup(t, dir)
			files, err := certs.Create(certs.Options{Dir: dir, Nodes: []string{"b"}, Days: 1})
			if err == nil || !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), "certs: ") {
				t.Fatalf("error %v, want one containing %q", err, tt.msg)
			}
			if len(files) != 0 {
				t.Fatalf("wrote %q", files)
			}
		})
	}
}
