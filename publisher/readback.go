package publisher

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stored is one message found in the stream by StoredSince.
type Stored struct {
	ID        string    // Nats-Msg-Id: the event id
	StreamSeq uint64    // its sequence in the stream
	Time      time.Time // when the server stored it
}

// StoredSince reads back, headers only, every message the stream stored on
// the publisher's subjects from time since on, up to the stream's last
// message at the time of the call, and calls fn for each. It is how a
// restarted relay learns which of the events it had in flight when it died
// are already in the stream, however long ago: JetStream's de-duplication
// forgets ids after the duplicate window, the stream does not.
func (p *Publisher) StoredSince(ctx context.Context, since time.Time, fn func(Stored) error) error {
	st, err := p.js.Stream(ctx, p.cfg.Stream.Name)
	if err != nil {
		return fmt.Errorf("publisher: read back: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("publisher: read back: %w", err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 || info.State.LastTime.Before(since) {
		return nil
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{p.cfg.SubjectPrefix + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &since,
		HeadersOnly:    true,
	})
	if err != nil {
		return fmt.Errorf("publisher: read back: %w", err)
	}
	for {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("publisher: read back: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("publisher: read back: %w", err)
			}
			if id := m.Headers().Get(nats.MsgIdHdr); id != "" {
				if err := fn(Stored{ID: id, StreamSeq: md.Sequence.Stream, Time: md.Timestamp}); err != nil {
					return err
				}
			}
			if md.Sequence.Stream >= last {
				return nil
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("publisher: read back: %w", err)
		}
		if n == 0 {
			// Nothing more on our subjects up to the end of the stream.
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
