package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fitiqcore/outbox/internal/natstest"
)

// testCert is a self-signed certificate for 127.0.0.1 and localhost, its own
// CA, written as PEM files.
type testCert struct {
	certFile, keyFile string
	pool              *x509.CertPool
}

func newTestCert(t *testing.T) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "outbox relay test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &testCert{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), pool: x509.NewCertPool()}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(c.certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	c.pool.AppendCertsFromPEM(certPEM)
	return c
}

// client trusts the certificate.
func (c *testCert) client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: c.pool}
	return &http.Client{Transport: tr}
}

// TestServeTLS (issue 9, "TLS for the HTTP API"): with http.tls set the API
// is HTTPS only, and the operator's commands reach it through the config's
// http.tls.ca_file, --ca-file or $RELAY_CA_FILE.
func TestServeTLS(t *testing.T) {
	cert := newTestCert(t)
	r := startRelay(t, relayOpts{tls: cert})
	// startRelay waited for /readyz over HTTPS with the test CA.
	if st := r.api(http.MethodPost, "/v1/events", `{"type":"tls.test","entity_id":"e1","payload":{}}`, nil); st != http.StatusCreated {
		t.Fatalf("POST over HTTPS: %d", st)
	}

	res, err := http.Get("http://" + r.addr + "/healthz")
	if err == nil {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode < 400 {
			t.Errorf("plain HTTP to the HTTPS API: %d %s, want an error", res.StatusCode, b)
		}
	}
	if _, err := (&http.Client{}).Get("https://" + r.addr + "/healthz"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("HTTPS without the CA: %v, want a certificate error", err)
	}

	// The CLI: the config alone (https:// from http.tls, the CA from
	// http.tls.ca_file), an https:// --addr with --ca-file, and $RELAY_CA_FILE.
	res2 := cli(t, "", "events", "list", "--config", r.config, "--json").wantCode(t, 0)
	contains(t, "events list --config over HTTPS", res2.stdout, "tls.test")
	cli(t, "", "events", "list", "--addr", "https://"+r.addr, "--ca-file", cert.certFile).wantCode(t, 0)
	t.Setenv("RELAY_CA_FILE", cert.certFile)
	cli(t, "", "events", "list", "--addr", "https://"+r.addr).wantCode(t, 0)
	t.Setenv("RELAY_CA_FILE", "")
	untrusted := cli(t, "", "events", "list", "--addr", "https://"+r.addr).wantCode(t, 1)
	contains(t, "the CLI without the CA", untrusted.stderr, "relay unreachable", "certificate")
	bad := cli(t, "", "events", "list", "--addr", "https://"+r.addr, "--ca-file", filepath.Join(t.TempDir(), "none.pem")).wantCode(t, 1)
	contains(t, "a missing --ca-file", bad.stderr, "--ca-file: open ")
}

// TestServeTLSErrors: the certificate files are read at start, and an error
// names the key; a non-loopback address needs a token even with TLS.
func TestServeTLSErrors(t *testing.T) {
	cert, other := newTestCert(t), newTestCert(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name, addr, token, certFile, keyFile, want string
	}{
		{"cert file missing", "127.0.0.1", "", missing, cert.keyFile, "http.tls.cert_file: open " + missing},
		{"key file missing", "127.0.0.1", "", cert.certFile, missing, "http.tls.key_file: open " + missing},
		{"key of another cert", "127.0.0.1", "", cert.certFile, other.keyFile, "http.tls.cert_file: with http.tls.key_file: tls: private key does not match public key"},
		{"not PEM", "127.0.0.1", "", cert.keyFile, cert.certFile, "http.tls.cert_file: with http.tls.key_file:"},
		{"TLS is not auth", "0.0.0.0", "", cert.certFile, cert.keyFile, "http.token: required when http.addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "relay.yaml")
			os.WriteFile(cfg, fmt.Appendf(nil, "store:\n  path: %s\nnats:\n  embedded_addr: 127.0.0.1:%d\n  store_dir: %s\nhttp:\n  addr: %s:%d\n  tls:\n    cert_file: %s\n    key_file: %s\n",
				filepath.Join(dir, "outbox.db"), natstest.FreePort(t), filepath.Join(dir, "nats"), tt.addr, natstest.FreePort(t), tt.certFile, tt.keyFile), 0o600)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := run(ctx, []string{"serve", "--config", cfg}, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("serve: %v, want an error with %q", err, tt.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "outbox.db")); !os.IsNotExist(err) {
				t.Errorf("serve opened the store before it checked the certificate: %v", err)
			}
		})
	}
}
