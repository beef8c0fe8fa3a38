// Package certs makes the certificates of a replication scenario: one CA
// of its own, and for each node (master or replica) a key and a certificate
// signed by that CA, good for both TLS server and client authentication, so
// that every node can accept and connect.
//
// Files in the directory: ca.crt and ca.key, NAME.crt and NAME.key. Keys
// are ECDSA P-256 in PKCS#8 PEM ("PRIVATE KEY"), mode 0600; certificates are
// PEM, mode 0644, in a directory of mode 0700.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ErrInvalid means the options cannot be carried out: no directory, no
// nodes, days not positive, or a node name that is bad or given twice.
var ErrInvalid = errors.New("certs: invalid options")

// Options say what Create makes.
type Options struct {
	Dir   string   // created with mode 0700 if missing
	Nodes []string // node names: letters, digits, '.', '-', '_'
	// Days is the validity of the CA, when one is made, and of each node
	// certificate, which ends no later than its CA.
	Days  int
	Force bool             // replace node certificates and keys that exist
	Now   func() time.Time // nil: time.Now
}

// caBase names the CA's files in Options.Dir: ca.crt and ca.key.
const caBase = "ca"

// backdate starts validity before now, so that a node whose clock is a
// little behind the one that made the certificate still accepts it.
const backdate = time.Hour

// Create makes Options.Dir, its CA unless both ca.crt and ca.key are there
// already (so that nodes can be added later), and a key and certificate for
// each node. It refuses to replace a node's files unless Force is set, and
// checks every name and file before writing any. It returns the paths of the
// files it wrote.
func Create(opts Options) ([]string, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	t := now()
	notAfter := t.AddDate(0, 0, opts.Days)
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	ca, caPriv, err := loadCA(opts.Dir)
	if err != nil {
		return nil, err
	}
	for _, name := range opts.Nodes {
		for _, ext := range []string{".crt", ".key"} {
			p := filepath.Join(opts.Dir, name+ext)
			_, err := os.Lstat(p)
			switch {
			case err == nil && !opts.Force:
				return nil, fmt.Errorf("certs: not replaced without force: %w", &fs.PathError{Op: "create", Path: p, Err: fs.ErrExist})
			case err != nil && !errors.Is(err, fs.ErrNotExist):
				return nil, fmt.Errorf("certs: %w", err)
			}
		}
	}

	var written []string
	if ca == nil {
		var files []string
		ca, caPriv, files, err = newCA(opts.Dir, t, notAfter)
		written = append(written, files...)
		if err != nil {
			return written, err
		}
	}
	// A chain is no longer valid than its CA: say so in the certificate.
	if ca.NotAfter.Before(notAfter) {
		notAfter = ca.NotAfter
	}
	for _, name := range opts.Nodes {
		files, err := newNode(opts.Dir, name, ca, caPriv, t, notAfter)
		written = append(written, files...)
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

func (o *Options) check() error {
	if o.Dir == "" {
		return fmt.Errorf("certs: no directory: %w", ErrInvalid)
	}
	if len(o.Nodes) == 0 {
		return fmt.Errorf("certs: no node names: %w", ErrInvalid)
	}
	if o.Days <= 0 {
		return fmt.Errorf("certs: validity of %d days: %w", o.Days, ErrInvalid)
	}
	seen := make(map[string]bool)
	for _, name := range o.Nodes {
		if err := checkName(name); err != nil {
			return err
		}
		if seen[name] {
			return fmt.Errorf("certs: node %q given twice: %w", name, ErrInvalid)
		}
		seen[name] = true
	}
	return nil
}

// checkName accepts names that are safe as file names and as DNS names in a
// certificate.
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("certs: empty node name: %w", ErrInvalid)
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("certs: node name %q: %q is not a letter, digit, '.', '-' or '_': %w", name, c, ErrInvalid)
		}
	}
	switch {
	case name[0] == '.':
		// A leading dot hides the files and ".." is no host.
		return fmt.Errorf("certs: node name %q starts with '.': %w", name, ErrInvalid)
	case name == caBase:
		return fmt.Errorf("certs: node name %q is taken by the CA's files: %w", name, ErrInvalid)
	}
	return nil
}

// loadCA reads the CA in dir, or returns nil if it has none.
func loadCA(dir string) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(dir, caBase+".crt"), filepath.Join(dir, caBase+".key")
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return nil, nil, nil
	case certErr != nil:
		return nil, nil, fmt.Errorf("certs: CA: %w", certErr)
	case keyErr != nil:
		return nil, nil, fmt.Errorf("certs: CA: %w", keyErr)
	}
	ca, err := parseCert(certPath, certPEM)
	if err != nil {
		return nil, nil, err
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("certs: %s is not a CA certificate", certPath)
	}
	priv, err := parseKey(keyPath, keyPEM)
	if err != nil {
		return nil, nil, err
	}
	if pub, ok := priv.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(ca.PublicKey) {
		return nil, nil, fmt.Errorf("certs: %s is not the key of %s", keyPath, certPath)
	}
	return ca, priv, nil
}

func parseCert(path string, b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("certs: %s holds no PEM CERTIFICATE", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", path, err)
	}
	return c, nil
}

func parseKey(path string, b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("certs: %s holds no PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("certs: %s: a %T cannot sign", path, k)
	}
	return s, nil
}

func newCA(dir string, now, notAfter time.Time) (*x509.Certificate, crypto.Signer, []string, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "writecap CA"},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // it signs node certificates only
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	return issue(dir, caBase, tmpl, nil, nil)
}

func newNode(dir, name string, ca *x509.Certificate, caPriv crypto.Signer, now, notAfter time.Time) ([]string, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	_, _, files, err := issue(dir, name, tmpl, ca, caPriv)
	return files, err
}

// issue makes a key and a certificate from tmpl signed by parent, or
// self-signed if parent is nil, and writes them as dir/base.key and
// dir/base.crt. It returns the certificate, its key and the files written.
func issue(dir, base string, tmpl, parent *x509.Certificate, parentPriv crypto.Signer) (*x509.Certificate, crypto.Signer, []string, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certs: %s key: %w", base, err)
	}
	// 128 random bits: serials must be unique per CA, with no state kept.
	tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certs: %s serial: %w", base, err)
	}
	if parent == nil {
		parent, parentPriv = tmpl, priv
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, priv.Public(), parentPriv)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certs: %s certificate: %w", base, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certs: %s certificate: %w", base, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certs: %s key: %w", base, err)
	}
	// The key first: a certificate without its key would pass for a node
	// that exists.
	keyPath, certPath := filepath.Join(dir, base+".key"), filepath.Join(dir, base+".crt")
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, nil, nil, err
	}
	if err := writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, []string{keyPath}, err
	}
	return cert, priv, []string{certPath, keyPath}, nil
}

// writeFile replaces path with data through a new file renamed over it, so
// that a key never lies, even briefly, in a file with an older, wider mode,
// and no reader sees half a file.
func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("certs: writing %s: %w", path, err)
	}
	return nil
}
