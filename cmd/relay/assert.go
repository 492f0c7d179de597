package main

import (
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/fitiqcore/outbox/relay"
)

// The daemon wires the relay to the store and the publisher: it is where
// their types meet. relay declares the interfaces it consumes in the words
// of package outbox and imports neither; these assertions keep the concrete
// types in step with them at compile time.
var (
	_ relay.Store     = (*boltstore.Store)(nil)
	_ relay.Publisher = (*publisher.Publisher)(nil)
)
