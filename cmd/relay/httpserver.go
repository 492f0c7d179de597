package main

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"os"
)

// httpServer is the API's server with the configured timeouts: a client
// that sends its headers or its body slowly, or never, is cut off, and an
// idle keep-alive connection is closed. Streaming routes (the backup) set
// their own write deadline in httpapi, so the write timeout does not cut
// them.
func httpServer(c HTTPConfig, h http.Handler, tlsConfig *tls.Config, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       c.ReadTimeout,
		WriteTimeout:      c.WriteTimeout,
		IdleTimeout:       c.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// loadServerTLS reads http.tls's certificate and key at start, naming the
// key of a file that cannot be read; nil when TLS is not configured. The
// files are read once: a renewed certificate takes a restart.
func loadServerTLS(c HTTPTLSConfig) (*tls.Config, error) {
	if !c.enabled() {
		return nil, nil
	}
	certPEM, err := os.ReadFile(c.CertFile)
	if err != nil {
		return nil, badKey("http.tls.cert_file", "%v", err)
	}
	keyPEM, err := os.ReadFile(c.KeyFile)
	if err != nil {
		return nil, badKey("http.tls.key_file", "%v", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, badKey("http.tls.cert_file", "with http.tls.key_file: %v", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
