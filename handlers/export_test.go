package handlers

import (
	"time"

	"github.com/fitiqcore/outbox"
)

// RetryDelay is the delay the Router naks e with after its n-th delivery
// failed, def being the Router's retry policy.
func RetryDelay(e *outbox.Event, def outbox.RetryPolicy, n uint64) time.Duration {
	return retryDelay(policy(e, def), n)
}

// MaxAttempts is the max_attempts the Router applies to e, def being its own.
func MaxAttempts(e *outbox.Event, def int) int { return maxAttempts(e, def) }

// DeadLetterError is the Outbox-DLQ-Error value of err when n bytes are left
// for it.
func DeadLetterError(err error, n int) string { return cut(errorText(err), n) }
