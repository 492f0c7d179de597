package httpapi

// The fields of an event's JSON form, in the order of outbox.Event's own
// (a test holds them to its tags), and the two spellings of the payload
// that Event.UnmarshalJSON reads. Keys are matched exactly (snake_case,
// case-sensitive).
type field uint8

const (
	fID field = iota
	fType
	fEntityID
	fUserID
	fPriority
	fIsNewRecord
	fMaxAttempts
	fMetadata
	fContentType
	fRetry
	fDeliverAt
	fTraceParent
	fTraceState
	fStatus
	fEntitySeq
	fSeq
	fCreatedAt
	fAcceptedAt
	fLastAttemptAt
	fNextAttemptAt
	fCompletedAt
	fAttemptCount
	fLastError
	fPayload
	fPayloadBase64
	numFields
)

var eventKeys = [numFields]string{
	"id", "type", "entity_id", "user_id", "priority", "is_new_record", "max_attempts", "metadata",
	"content_type", "retry", "deliver_at", "traceparent", "tracestate", "status", "entity_seq", "seq", "created_at", "accepted_at",
	"last_attempt_at", "next_attempt_at", "completed_at", "attempt_count", "last_error",
	"payload", "payload_base64",
}

// The keys of a retry policy (outbox.RetryPolicy's tags).
var retryKeys = [...]string{"initial_interval", "max_interval", "multiplier"}

// fieldOf returns the field a key names (no allocation: the compiler
// switches on the bytes).
func fieldOf(key []byte) (field, bool) {
	switch string(key) {
	case "id":
		return fID, true
	case "type":
		return fType, true
	case "entity_id":
		return fEntityID, true
	case "user_id":
		return fUserID, true
	case "priority":
		return fPriority, true
	case "is_new_record":
		return fIsNewRecord, true
	case "max_attempts":
		return fMaxAttempts, true
	case "metadata":
		return fMetadata, true
	case "content_type":
		return fContentType, true
	case "retry":
		return fRetry, true
	case "deliver_at":
		return fDeliverAt, true
	case "traceparent":
		return fTraceParent, true
	case "tracestate":
		return fTraceState, true
	case "status":
		return fStatus, true
	case "entity_seq":
		return fEntitySeq, true
	case "seq":
		return fSeq, true
	case "created_at":
		return fCreatedAt, true
	case "accepted_at":
		return fAcceptedAt, true
	case "last_attempt_at":
		return fLastAttemptAt, true
	case "next_attempt_at":
		return fNextAttemptAt, true
	case "completed_at":
		return fCompletedAt, true
	case "attempt_count":
		return fAttemptCount, true
	case "last_error":
		return fLastError, true
	case "payload":
		return fPayload, true
	case "payload_base64":
		return fPayloadBase64, true
	}
	return 0, false
}

// sortedFields lists the fields in the order of their keys.
var sortedFields = func() []field {
	fs := make([]field, numFields)
	for f := range numFields {
		fs[f] = f
	}
	for i := 1; i < len(fs); i++ { // insertion sort: 25 keys, once
		for j := i; j > 0 && eventKeys[fs[j]] < eventKeys[fs[j-1]]; j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
	return fs
}()
