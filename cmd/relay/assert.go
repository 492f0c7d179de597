package main

import (
	"github.com/fitiqcore/outbox/boltstore"
	"github.com/fitiqcore/outbox/httpapi"
	"github.com/fitiqcore/outbox/publisher"
	"github.com/fitiqcore/outbox/relay"
	"github.com/fitiqcore/outbox/schema"
)

// The daemon wires the relay to the store and the publisher, and the HTTP
// API to the schemas: it is where their types meet. relay declares the
// interfaces it consumes in the words of package outbox and imports
// neither, and httpapi declares its Checker and does not import schema;
// these assertions keep the concrete types in step with them at compile
// time.
var (
	_ relay.Store     = (*boltstore.Store)(nil)
	_ relay.Publisher = (*publisher.Publisher)(nil)
	_ httpapi.Checker = (*schema.Set)(nil)
)
