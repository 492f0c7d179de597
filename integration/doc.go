// Package integration is the reliability suite of FitIQCore Outbox. It holds
// no library code: its tests, behind the build tag "integration", bring up
// the docker-compose stack of the repository (a 3-node NATS JetStream
// cluster, the relay as the sidecar of a demo app, a demo app embedding the
// library, the example subscriber) and break it on purpose while the demo
// apps write a steady load:
//
//   - the relay is killed with SIGKILL and restarted, several times, and so
//     is the app that embeds the library;
//   - the NATS node that leads the stream is killed, then brought back;
//   - the relay is cut off from NATS (docker network disconnect) for 20 s;
//   - the subscriber is killed in the middle of its work and restarted;
//   - the relay's store fills its quota until ingest refuses, then drains.
//
// After each, every event an app had accepted must have been handled exactly
// once by the subscriber, in per-entity order, with nothing left pending,
// nothing duplicated in the stream and nothing lost. See docs/RELIABILITY.md.
//
//	make images && go test -tags integration -count=1 -v -timeout 30m ./integration/
//	integration/run.sh    # what CI runs: three rounds, a summary line
//
// Without Docker the tests skip, except under CI=true, where they fail.
package integration
