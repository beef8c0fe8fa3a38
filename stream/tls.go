package stream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSFiles names the PEM files of one node: the scenario's CA certificate,
// and the node's certificate and key.
type TLSFiles struct{ CA, Cert, Key string }

// ServerConfig returns the configuration of the side that accepts: TLS 1.3
// only, the node's certificate, and a client certificate required and
// verified against the scenario's CA alone, not the system roots.
func ServerConfig(f TLSFiles) (*tls.Config, error) {
	pool, cert, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// ClientConfig returns the configuration of the side that connects: TLS 1.3
// only, the node's certificate as client certificate, and the server's chain
// verified against the scenario's CA alone. serverName is the identity the
// server must have, as a DNS name (or IP address) in its certificate or as
// its common name; "" verifies the chain only, for connecting by an address
// the certificate does not name.
func ClientConfig(f TLSFiles, serverName string) (*tls.Config, error) {
	pool, cert, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   serverName,
		// crypto/tls checks names only against DNS and IP SANs and needs one
		// to check at all; VerifyConnection does the whole verification
		// instead, so that it can also take the common name and no name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs, pool, serverName)
		},
	}, nil
}

// verifyServer checks the server's chain against pool and, unless
// serverName is "", that the leaf certificate names serverName.
func verifyServer(cs tls.ConnectionState, pool *x509.CertPool, serverName string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("stream: server sent no certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("stream: server certificate %q: %w", leaf.Subject.CommonName, err)
	}
	if serverName == "" || leaf.Subject.CommonName == serverName {
		return nil
	}
	if err := leaf.VerifyHostname(serverName); err != nil {
		return fmt.Errorf("stream: server certificate %q: %w", leaf.Subject.CommonName, err)
	}
	return nil
}

// PeerName returns the identity of the peer of a handshaken connection whose
// configuration came from ServerConfig or ClientConfig (both verify the
// peer): the common name of its certificate, or "" if it has none.
func PeerName(cs tls.ConnectionState) string {
	if !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
		return ""
	}
	return cs.PeerCertificates[0].Subject.CommonName
}

// load reads the CA pool and the node's key pair.
func (f TLSFiles) load() (*x509.CertPool, tls.Certificate, error) {
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("stream: reading CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, tls.Certificate{}, fmt.Errorf("stream: CA %s holds no PEM certificate", f.CA)
	}
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("stream: reading certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("stream: reading key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("stream: certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	return pool, cert, nil
}
