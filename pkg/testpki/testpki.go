// Package testpki makes throw-away certificate authorities and broker certificates for tests:
// a CA, and a server certificate for 127.0.0.1 and localhost signed by it, written as PEM files.
//
// It must never be used for anything but tests: keys are unprotected and lifetimes arbitrary.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
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

// PKI is a CA and one server certificate it signed.
type PKI struct {
	// CAFile is the CA certificate (PEM), for a client's trust store.
	CAFile string
	// ServerPEM holds the server's PKCS#8 private key followed by its certificate (PEM), as
	// Kafka's ssl.keystore.type=PEM expects.
	ServerPEM string
	// Server is the server certificate and key, for a Go TLS listener.
	Server tls.Certificate
}

// New writes a CA and a server certificate valid until serverNotAfter (in the past for an
// expired certificate) into dir.
func New(dir string, serverNotAfter time.Time) (*PKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kmirror test CA"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-24 * time.Hour), NotAfter: serverNotAfter,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create server certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	p := &PKI{
		CAFile:    filepath.Join(dir, "ca.pem"),
		ServerPEM: filepath.Join(dir, "server.pem"),
		Server:    tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}
	if err := os.WriteFile(p.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		return nil, err
	}
	server := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	if err := os.WriteFile(p.ServerPEM, server, 0o600); err != nil {
		return nil, err
	}
	return p, nil
}
