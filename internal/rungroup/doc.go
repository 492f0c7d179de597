// Package rungroup runs goroutines as one unit, so that every goroutine has
// a parent that waits for it: the daemon's `relay serve` and the bench's
// phases are built on it.
//
// # Basics
//
// A Group is a set of actors, each a pair of functions: execute runs the
// actor and returns when it is done; interrupt makes execute return. Run
// starts every execute in a goroutine of its own; when the first returns,
// whether with an error or not, Run calls every interrupt, one after the
// other in the order the actors were added, and returns only when every
// execute has returned. An interrupt that blocks until its actor has
// stopped (http.Server.Shutdown) makes the next interrupt wait: that is how
// `relay serve` stops ingest before it drains the relay.
//
// # Differences from github.com/oklog/run
//
// The model and the API are oklog/run's. Run returns the first non-nil
// error an actor returned, in the order they returned, where oklog/run
// returns whatever the first actor returned. A group stopped by a signal
// (an actor returning nil) still reports an actor that fails while it
// stops: `relay serve` exits non-zero when the relay cannot record what it
// drains after SIGTERM, as it did before the group.
//
// # Caveats
//
// An interrupt must make its execute return, even when called before
// execute started or after it returned; Run waits for ever otherwise. The
// zero Group is ready to use; a Group runs once.
package rungroup
