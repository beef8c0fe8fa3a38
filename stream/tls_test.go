package stream_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/writecap/writecap/certs"
	"github.com/writecap/writecap/stream"
)

// pki makes a CA and the nodes' certificates in a directory of their own.
func pki(t *testing.T, nodes ...string) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := certs.Create(certs.Options{Dir: dir, Nodes: nodes, Days: 1}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func nodeFiles(dir, node string) stream.TLSFiles {
	return stream.TLSFiles{
		CA:   filepath.Join(dir, "ca.crt"),
		Cert: filepath.Join(dir, node+".crt"),
		Key:  filepath.Join(dir, node+".key"),
	}
}

// cnOnly adds to dir a certificate for node signed by dir's CA with name as
// its common name and no subject alternative name at all.
func cnOnly(t *testing.T, dir, node, name string) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pair.Leaf, key.Public(), pair.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(path, typ string, b []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, node+".crt"), "CERTIFICATE", der)
	write(filepath.Join(dir, node+".key"), "PRIVATE KEY", keyDER)
}

// served is what the server side of one connection saw.
type served struct {
	err  error  // handshake or exchange
	peer string // PeerName after the handshake
	read []byte // application data read after a failed handshake
}

// serve accepts one TLS connection on loopback, answers "ping" with "pong"
// and reports what it saw.
func serve(t *testing.T, cfg *tls.Config) (string, <-chan served) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan served, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			out <- served{err: err}
			return
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		conn := tls.Server(raw, cfg)
		if err := conn.Handshake(); err != nil {
			buf := make([]byte, 64)
			n, _ := conn.Read(buf)
			out <- served{err: err, read: buf[:n]}
			return
		}
		s := served{peer: stream.PeerName(conn.ConnectionState())}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(conn, buf); err != nil {
			s.err = err
		} else if string(buf) != "ping" {
			s.err = errors.New("read " + string(buf))
		} else if _, err := conn.Write([]byte("pong")); err != nil {
			s.err = err
		}
		out <- s
	}()
	return ln.Addr().String(), out
}

// dial connects to addr, sends "ping", expects "pong" and returns the
// server's PeerName and the first error.
func dial(t *testing.T, addr string, cfg *tls.Config) (string, error) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	conn := tls.Client(raw, cfg)
	if err := conn.Handshake(); err != nil {
		return "", err
	}
	peer := stream.PeerName(conn.ConnectionState())
	// In TLS 1.3 the client's handshake ends before the server has checked
	// the client's certificate: a refusal arrives on the first read.
	if _, err := conn.Write([]byte("ping")); err != nil {
		return peer, err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return peer, err
	}
	if string(buf) != "pong" {
		return peer, errors.New("read " + string(buf))
	}
	return peer, nil
}

func serverConfig(t *testing.T, f stream.TLSFiles) *tls.Config {
	t.Helper()
	cfg, err := stream.ServerConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func clientConfig(t *testing.T, f stream.TLSFiles, serverName string) *tls.Config {
	t.Helper()
	cfg, err := stream.ClientConfig(f, serverName)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestTLS(t *testing.T) {
	scenario := pki(t, "master", "replica", "127.0.0.1")
	cnOnly(t, scenario, "legacy", "legacy.example.com")
	other := pki(t, "master", "replica") // same names, another CA

	tests := []struct {
		name       string
		server     stream.TLSFiles
		client     func(t *testing.T) *tls.Config
		serverPeer string // PeerName on the server; "" when the server must refuse
		clientPeer string
		clientErr  string // part of the client's error when it must refuse the server
	}{
		{name: "mutual authentication", server: nodeFiles(scenario, "replica"),
			client:     func(t *testing.T) *tls.Config { return clientConfig(t, nodeFiles(scenario, "master"), "replica") },
			serverPeer: "master", clientPeer: "replica"},
		{name: "chain only", server: nodeFiles(scenario, "replica"),
			client:     func(t *testing.T) *tls.Config { return clientConfig(t, nodeFiles(scenario, "master"), "") },
			serverPeer: "master", clientPeer: "replica"},
		{name: "IP address", server: nodeFiles(scenario, "127.0.0.1"),
			client:     func(t *testing.T) *tls.Config { return clientConfig(t, nodeFiles(scenario, "master"), "127.0.0.1") },
			serverPeer: "master", clientPeer: "127.0.0.1"},
		{name: "common name without SAN", server: nodeFiles(scenario, "legacy"),
			client: func(t *testing.T) *tls.Config {
				return clientConfig(t, nodeFiles(scenario, "master"), "legacy.example.com")
			},
			serverPeer: "master", clientPeer: "legacy.example.com"},
		{name: "server with another name", server: nodeFiles(scenario, "replica"),
			client:    func(t *testing.T) *tls.Config { return clientConfig(t, nodeFiles(scenario, "master"), "replica-2") },
			clientErr: `stream: server certificate "replica": x509: certificate is valid for replica, not replica-2`},
		{name: "server without the IP address", server: nodeFiles(scenario, "replica"),
			client:    func(t *testing.T) *tls.Config { return clientConfig(t, nodeFiles(scenario, "master"), "127.0.0.1") },
			clientErr: `stream: server certificate "replica": x509: cannot validate certificate for 127.0.0.1`},
		{name: "server of another CA", server: nodeFiles(other, "replica"),
			client:    func(t *testing.T) *tls.Config { return clientConfig(t, nodeFiles(scenario, "master"), "replica") },
			clientErr: `stream: server certificate "replica": x509: certificate signed by unknown authority`},
		{name: "server of another CA, chain only", server: nodeFiles(other, "replica"),
			client:    func(t *testing.T) *tls.Config { return clientConfig(t, nodeFiles(scenario, "master"), "") },
			clientErr: "certificate signed by unknown authority"},
		{name: "client of another CA", server: nodeFiles(scenario, "replica"),
			client: func(t *testing.T) *tls.Config {
				// It trusts the server; only its own certificate is foreign.
				f := nodeFiles(other, "master")
				f.CA = nodeFiles(scenario, "master").CA
				return clientConfig(t, f, "replica")
			}},
		{name: "client without certificate", server: nodeFiles(scenario, "replica"),
			client: func(t *testing.T) *tls.Config {
				cfg := clientConfig(t, nodeFiles(scenario, "master"), "replica")
				cfg.Certificates = nil
				return cfg
			}},
		{name: "TLS 1.2 client", server: nodeFiles(scenario, "replica"),
			client: func(t *testing.T) *tls.Config {
				cfg := clientConfig(t, nodeFiles(scenario, "master"), "replica")
				cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
				return cfg
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, out := serve(t, serverConfig(t, tt.server))
			clientPeer, clientErr := dial(t, addr, tt.client(t))
			s := <-out
			switch {
			case tt.clientErr != "":
				if clientErr == nil || !strings.Contains(clientErr.Error(), tt.clientErr) {
					t.Fatalf("client error %v, want one containing %q", clientErr, tt.clientErr)
				}
				if s.err == nil {
					t.Fatal("server completed a connection the client refused")
				}
			case tt.serverPeer == "":
				if s.err == nil {
					t.Fatalf("server accepted the client as %q", s.peer)
				}
				if len(s.read) != 0 {
					t.Fatalf("server read %q from a refused client", s.read)
				}
				if clientErr == nil {
					t.Fatal("client saw no error from a refused connection")
				}
				t.Logf("server: %v; client: %v", s.err, clientErr)
			default:
				if s.err != nil || clientErr != nil {
					t.Fatalf("server error %v, client error %v", s.err, clientErr)
				}
				if s.peer != tt.serverPeer || clientPeer != tt.clientPeer {
					t.Fatalf("server sees %q, client sees %q; want %q and %q", s.peer, clientPeer, tt.serverPeer, tt.clientPeer)
				}
			}
		})
	}
}

func TestTLSConfigs(t *testing.T) {
	dir := pki(t, "master")
	good := nodeFiles(dir, "master")
	if cfg := serverConfig(t, good); cfg.MinVersion != tls.VersionTLS13 || cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("server: min version %#x, client auth %v", cfg.MinVersion, cfg.ClientAuth)
	}
	if cfg := clientConfig(t, good, "replica"); cfg.MinVersion != tls.VersionTLS13 || cfg.ServerName != "replica" {
		t.Fatalf("client: min version %#x, server name %q", cfg.MinVersion, cfg.ServerName)
	}
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := pki(t, "master")
	missing := filepath.Join(dir, "missing.crt")
	tests := []struct {
		name  string
		files stream.TLSFiles
		msg   string
	}{
		{name: "missing CA", files: stream.TLSFiles{CA: missing, Cert: good.Cert, Key: good.Key}, msg: "stream: reading CA: open " + missing},
		{name: "CA not PEM", files: stream.TLSFiles{CA: junk, Cert: good.Cert, Key: good.Key}, msg: "stream: CA " + junk + " holds no PEM certificate"},
		{name: "missing certificate", files: stream.TLSFiles{CA: good.CA, Cert: missing, Key: good.Key}, msg: "stream: reading certificate: open " + missing},
		{name: "missing key", files: stream.TLSFiles{CA: good.CA, Cert: good.Cert, Key: missing}, msg: "stream: reading key: open " + missing},
		{name: "certificate not PEM", files: stream.TLSFiles{CA: good.CA, Cert: junk, Key: good.Key}, msg: "stream: certificate " + junk + " with key " + good.Key + ": tls: "},
		{name: "key of another certificate", files: stream.TLSFiles{CA: good.CA, Cert: good.Cert, Key: nodeFiles(other, "master").Key},
			msg: "stream: certificate " + good.Cert + " with key " + nodeFiles(other, "master").Key + ": tls: private key does not match public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, serr := stream.ServerConfig(tt.files)
			_, cerr := stream.ClientConfig(tt.files, "x")
			for _, err := range []error{serr, cerr} {
				if err == nil || !strings.HasPrefix(err.Error(), tt.msg) {
					t.Fatalf("error %v, want one starting with %q", err, tt.msg)
				}
			}
		})
	}
}

func TestPeerNameBeforeHandshake(t *testing.T) {
	if name := stream.PeerName(tls.ConnectionState{}); name != "" {
		t.Fatalf("PeerName of no connection: %q", name)
	}
}
