package boltstore

import (
	"encoding/binary"
	"time"

	"github.com/fitiqcore/outbox"
)

// The layout of the file (version 3). docs/DESIGN.md has the same table.
//
//	events         seq(8) → record (codec.go)
//	ids            uuid(16) → seq(8), or a tombstone (tombstone.go)
//	ready          rank(1)|seq(8) → ∅: pending heads due now, highest
//	               priority first (rank = 9 − priority), FIFO by seq
//	delayed        next_attempt(8)|seq(8) → ∅: pending heads in backoff
//	by_status      status(1)|rank(1)|time(8)|seq(8) → user_id (pending) or ∅
//	               (stateKey: time is accepted_at, completed_at when completed)
//	entity         len(2)|entity_id|0x00 → entity state (entity.go)
//	               len(2)|entity_id|0x01|entity_seq(8) → seq: the chain
//	user           len(2)|user_id|0x02|seq(8) → status(1)|rank(1): the user's events
//	               len(2)|user_id|0xff → the user's counters (stats.go)
//	tombstones     removed_at(8)|uuid(16) → ∅
//	idle_entities  idle_since(8)|len(2)|entity_id → ∅
//	meta           counters, watermarks, marks, version
//
// What belongs to one entity (its state and chain) and to one user (its
// counters and its list of events) shares one key prefix in one bucket: an
// event dirties one page of each. A user's events are listed by seq, with
// their status in the value (one key per event, which its changes rewrite in
// place), and its counters sit right after the list, where its new events
// go: an enqueue dirties one page of its user. Keys grow in sequence order
// wherever order allows (events, ids of UUIDv7 events, ready and by_status
// within a priority, delayed within a time).
var (
	bEvents       = []byte("events")
	bIDs          = []byte("ids")
	bReady        = []byte("ready")
	bDelayed      = []byte("delayed")
	bByStatus     = []byte("by_status")
	bEntity       = []byte("entity")
	bUser         = []byte("user")
	bTombstones   = []byte("tombstones")
	bIdleEntities = []byte("idle_entities")
	bMeta         = []byte("meta")

	allBuckets = [][]byte{bEvents, bIDs, bReady, bDelayed, bByStatus, bEntity, bUser, bTombstones, bIdleEntities, bMeta}

	// meta keys
	kCounts         = []byte("stats")              // the counters of all users (stats.go)
	kStaleWatermark = []byte("stale_mark")         // the stale watermark: a time key (accepted_at|seq)
	kVersion        = []byte("version")            // the layout version
	kBrokerMax      = []byte("broker_max_payload") // the broker's max_payload, as last told
	kReadBack       = []byte("readback_from")      // the relay's read-back mark: a stream sequence
	kInFlightMark   = []byte("inflight_mark")      // the time mark readback_from replaced (layout 2)
	kIdleIndexed    = []byte("idle_indexed")       // idle entities are filed in idle_entities
	kCountsV1       = []byte("counts")             // the counters of layout 1
)

const layoutVersion = 3

// Suffixes of the entity and user buckets' keys, after len(2)|id.
const (
	keyEntityState = 0x00
	keyEntityChain = 0x01
	keyUserSeq     = 0x02
	keyUserCounts  = 0xff
)

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// lenPrefixed is len(2)|s, with room for extra bytes after it.
func lenPrefixed(s string, extra int) []byte {
	k := make([]byte, 0, 2+len(s)+extra)
	k = binary.BigEndian.AppendUint16(k, uint16(len(s)))
	return append(k, s...)
}

// splitLenPrefixed splits len(2)|s|rest.
func splitLenPrefixed(k []byte) (s string, rest []byte, ok bool) {
	if len(k) < 2 {
		return "", nil, false
	}
	n := int(binary.BigEndian.Uint16(k))
	if len(k) < 2+n {
		return "", nil, false
	}
	return string(k[2 : 2+n]), k[2+n:], true
}

func hasPrefix(k, pfx []byte) bool {
	return len(k) >= len(pfx) && string(k[:len(pfx)]) == string(pfx)
}

// rprio orders priorities highest first in index keys.
func rprio(p int) byte { return byte(outbox.MaxPriority - p) }

func readyKey(prio int, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, 9), rprio(prio)), seq)
}

func delayedKey(next time.Time, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(next.UnixNano()))
	return binary.BigEndian.AppendUint64(k, seq)
}

// entityStateKey and entityChainKey are an entity's keys in the entity
// bucket; entity is len(2)|entity_id.
func entityStateKey(entity []byte) []byte {
	return append(append(make([]byte, 0, len(entity)+1), entity...), keyEntityState)
}

func entityChainKey(entity []byte, entitySeq uint64) []byte {
	k := append(append(make([]byte, 0, len(entity)+9), entity...), keyEntityChain)
	return binary.BigEndian.AppendUint64(k, entitySeq)
}

// chainPrefix is the prefix of an entity's chain keys.
func chainPrefix(entity []byte) []byte {
	return append(append(make([]byte, 0, len(entity)+1), entity...), keyEntityChain)
}

func userCountsKey(user string) []byte { return append(lenPrefixed(user, 1), keyUserCounts) }

func userSeqKey(user string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(lenPrefixed(user, 9), keyUserSeq), seq)
}

// userSeqPrefix is the prefix of a user's list of events.
func userSeqPrefix(user string) []byte { return append(lenPrefixed(user, 9), keyUserSeq) }

// stateKey is e's entry in by_status: status(1)|rank(1)|time(8)|seq(8). A completed event has rank
// 0 and its completed_at as time, so completed events are in completion
// order (retention reads them oldest first); the others have 9-priority as
// rank and their accepted_at as time (the store's clock, never the client's
// created_at; a later deliver_at instead, pendingSince), so each status is listed highest priority first, oldest first
// within a priority, and the oldest pending event of each priority is the
// first key of its range.
func stateKey(e *outbox.Event) []byte {
	return appendStateKey(make([]byte, 0, stateKeyLen), e)
}

func appendStateKey(k []byte, e *outbox.Event) []byte {
	if e.Status == outbox.StatusCompleted {
		k = append(k, statusCode(e.Status), 0)
		return appendTimeKey(k, e.CompletedAt, e.Seq)
	}
	k = append(k, statusCode(e.Status), rprio(e.Priority))
	return appendTimeKey(k, pendingSince(e), e.Seq)
}

// pendingSince is the time of an unfinished event in by_status: when it
// was accepted, or its deliver_at when that is later, so that a delayed
// event is neither stale nor old (max_pending_age) before it is due.
func pendingSince(e *outbox.Event) time.Time {
	if e.DeliverAt.After(e.AcceptedAt) {
		return e.DeliverAt
	}
	return e.AcceptedAt
}

// stateKeyLen is the length of a by_status key.
const stateKeyLen = 18

// appendTimeKey appends time(8)|seq(8), the time in nanoseconds with its
// sign bit flipped so that times before 1970 sort first.
func appendTimeKey(k []byte, t time.Time, seq uint64) []byte {
	k = binary.BigEndian.AppendUint64(k, uint64(t.UnixNano())^(1<<63))
	return binary.BigEndian.AppendUint64(k, seq)
}

func timeKey(t time.Time, seq uint64) []byte { return appendTimeKey(make([]byte, 0, 16), t, seq) }

func timeOfKey(k []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k)^(1<<63))).UTC()
}

func idleKey(since int64, entity []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(entity)), uint64(since)), entity...)
}
