package xmppserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CertFiles names the files written by [WriteCertificate].
type CertFiles struct {
	Cert     string // PEM certificate: DIR/localhost.crt
	Key      string // PEM PKCS#8 private key: DIR/localhost.key (mode 0600)
	Combined string // certificate then key, as ejabberd wants it: DIR/server.pem
}

// WriteCertificate writes a self-signed ECDSA P-256 server certificate,
// valid from an hour ago for 30 days, into dir (created if missing).
// Its subject alternative names are "localhost", each of dnsNames and the
// IP address 127.0.0.1.
// It is not a CA certificate: clients must skip verification or pin it.
func WriteCertificate(dir string, dnsNames ...string) (CertFiles, error) {
	files := CertFiles{
		Cert:     filepath.Join(dir, "localhost.crt"),
		Key:      filepath.Join(dir, "localhost.key"),
		Combined: filepath.Join(dir, "server.pem"),
	}
	certPEM, keyPEM, err := newCertificate(dnsNames)
	if err != nil {
		return CertFiles{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return CertFiles{}, fmt.Errorf("xmppserver: certificate dir: %w", err)
	}
	writes := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{files.Cert, certPEM, 0o644},
		{files.Key, keyPEM, 0o600},
		{files.Combined, append(append([]byte{}, certPEM...), keyPEM...), 0o600},
	}
	for _, w := range writes {
		if err := os.WriteFile(w.path, w.data, w.mode); err != nil {
			return CertFiles{}, fmt.Errorf("xmppserver: write certificate: %w", err)
		}
	}
	return files, nil
}

func newCertificate(dnsNames []string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("xmppserver: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, fmt.Errorf("xmppserver: serial number: %w", err)
	}
	names := []string{"localhost"}
	for _, n := range dnsNames {
		if n != "" && n != "localhost" {
			names = append(names, n)
		}
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"imip-transport test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("xmppserver: create certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("xmppserver: marshal key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	return certPEM, keyPEM, nil
}
