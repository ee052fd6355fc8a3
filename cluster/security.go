package cluster

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// clusterServerName is the name every node's certificate carries and every
// node checks: membership is proven by the CA signature, not by a host name.
const clusterServerName = "lifeline-cluster"

// Security holds what the cluster key gives a node: mutual TLS for Raft,
// forwarding and blob traffic, and the key that encrypts gossip.
type Security struct {
	Server    *tls.Config
	Client    *tls.Config
	GossipKey []byte
}

// ParseClusterKey accepts 32 bytes as hex or base64.
func ParseClusterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	return nil, errors.New("cluster key must be 32 bytes, hex or base64 (openssl rand -hex 32)")
}

// NewSecurity derives the cluster's certificate authority from the shared
// key, so every node that holds the key can sign its own certificate and
// check its peers', and a machine without the key can do neither. The CA
// key is Ed25519 because its key pair follows from a seed
// deterministically; each node's own key is fresh.
func NewSecurity(key []byte, nodeID string) (*Security, error) {
	if len(key) != 32 {
		return nil, errors.New("cluster key must be 32 bytes")
	}
	seed, err := hkdf.Key(sha256.New, key, nil, "lifeline cluster CA v1", ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	gossipKey, err := hkdf.Key(sha256.New, key, nil, "lifeline gossip v1", 32)
	if err != nil {
		return nil, err
	}
	caKey := ed25519.NewKeyFromSeed(seed)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Lifeline cluster CA"},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2120, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	leafTmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nodeID},
		DNSNames:     []string{clusterServerName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	cert := tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &Security{
		Server: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS13,
		},
		Client: &tls.Config{
			Certificates: []tls.Certificate{cert},
			RootCAs:      pool,
			ServerName:   clusterServerName,
			MinVersion:   tls.VersionTLS13,
		},
		GossipKey: gossipKey,
	}, nil
}
