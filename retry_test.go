package nightshift

import (
	"testing"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
)

// TestRetryDecision: the one retry decision over every error class and attempt position.
func TestRetryDecision(t *testing.T) {
	for _, c := range []struct {
		class        string
		attempt, max int
		dead         bool
		reason       record.DeadReason
	}{
		{"retryable", 1, 3, false, ""},
		{"timeout", 2, 3, false, ""},
		{"panic", 2, 3, false, ""},
		{"cancelled", 1, 3, false, ""},
		{"retryable", 3, 3, true, record.ReasonAttemptsExhausted},
		{"panic", 3, 3, true, record.ReasonAttemptsExhausted},
		{"permanent", 1, 3, true, record.ReasonPermanentError},
		{"permanent", 3, 3, true, record.ReasonPermanentError},
		{"retryable", 1, 1, true, record.ReasonAttemptsExhausted},
	} {
		reason, dead := retryDecision(envelope.AttemptError{Class: c.class}, c.attempt, c.max)
		if dead != c.dead || reason != c.reason {
			t.Errorf("%s at %d/%d: dead %v (%s), want %v (%s)", c.class, c.attempt, c.max, dead, reason, c.dead, c.reason)
		}
	}
}
