package main

import (
	"context"
	"net/url"
	"strings"
	"time"

	"github.com/fitiqcore/outbox/httpapi"
	"github.com/fitiqcore/outbox/publisher"
)

// brokerStatus reports the publisher's NATS connection and stream for the
// debug report (GET /v1/status).
type brokerStatus struct {
	pub *publisher.Publisher
}

var _ httpapi.Broker = brokerStatus{}

// brokerTimeout bounds the broker half of one status report.
const brokerTimeout = 3 * time.Second

// BrokerStatus asks the server for the round trip and the stream's info;
// failures are reported in the Error fields.
func (b brokerStatus) BrokerStatus(ctx context.Context) httpapi.BrokerStatus {
	ctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	nc, cfg := b.pub.Conn(), b.pub.Config()
	var out httpapi.BrokerStatus
	out.NATS.Connected = nc.IsConnected()
	out.NATS.URL = redactURLs(cfg.URL)
	out.Stream.Name = cfg.Stream.Name
	out.Stream.SubjectPrefix = cfg.SubjectPrefix
	out.Stream.Subjects = []string{}
	if !out.NATS.Connected {
		out.NATS.Error = "connection " + strings.ToLower(nc.Status().String())
		if err := nc.LastError(); err != nil {
			out.NATS.Error += ": " + err.Error()
		}
		out.Stream.Error = "unknown: NATS not connected"
		return out
	}
	out.NATS.URL = nc.ConnectedUrlRedacted()
	out.NATS.Server = nc.ConnectedServerName()
	start := time.Now()
	if err := nc.FlushWithContext(ctx); err != nil {
		out.NATS.Error = "ping: " + err.Error()
	} else {
		out.NATS.RTT = roundDuration(time.Since(start)).String()
	}
	st, err := b.pub.JetStream().Stream(ctx, cfg.Stream.Name)
	if err != nil {
		out.Stream.Error = err.Error()
		return out
	}
	info := st.CachedInfo()
	out.Stream.Subjects = append(out.Stream.Subjects, info.Config.Subjects...)
	s := info.State
	out.Stream.Messages, out.Stream.Bytes = s.Msgs, s.Bytes
	out.Stream.FirstSeq, out.Stream.LastSeq, out.Stream.LastTime = s.FirstSeq, s.LastSeq, s.LastTime
	out.Stream.Consumers = s.Consumers
	if !covers(info.Config.Subjects, cfg.SubjectPrefix+".>") {
		out.Stream.Error = "does not cover " + cfg.SubjectPrefix + ".> (events on uncovered subjects fail)"
	}
	return out
}

// redactURLs hides the passwords of a comma-separated list of NATS URLs.
func redactURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// roundDuration keeps three significant digits or so, for display.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
