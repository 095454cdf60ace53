// Package jobrun connects package nightshifttest to the attempt runner of package
// nightshift without making that runner public API: package nightshift sets Run when it is
// initialised, and nightshifttest calls it. Nothing else should import this package.
package jobrun

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"
)

// Request is one attempt to run: the job as the handler would see it after decoding its
// envelope.
type Request struct {
	// Registry is the *nightshift.Registry holding the kind's worker.
	Registry any
	// Client is the *nightshift.Client that JobClient, StartBatch and BatchChildren use
	// inside the job (nil for none).
	Client any
	// Kind and Args are the envelope's kind and args (JSON).
	Kind string
	Args json.RawMessage
	// The job's context, as the envelope and the queue message give it.
	JobID                string
	Attempt, MaxAttempts int
	Replay, DequeueCount int
	Meta                 map[string]string
	EnqueuedAt           time.Time
	BatchID, ParentID    string
	// Timeout overrides the kind's timeout, as an envelope's timeout_seconds does (0: the
	// kind's).
	Timeout time.Duration
	// Logger receives the job's (redacted) log records besides the capture; nil discards.
	Logger *slog.Logger
}

// Progress is one progress report of the job, as the status would record it.
type Progress struct {
	Fraction float64
	Message  string
}

// Result is what the attempt gave and how the handler would record it.
type Result struct {
	Value       any
	ContentType string
	Data        []byte
	IsJSON      bool
	Err         error
	Class       string
	LastError   string
	Outcome     string
	DeadReason  string
	RetryIn     time.Duration
	Logs        []string
	Progress    []Progress
	Started     time.Time
	Finished    time.Time
}

// Run runs one attempt; package nightshift sets it. The error is a problem of the request
// (no worker for the kind), never the job's own failure, which is in Result.
var Run func(ctx context.Context, req *Request) (*Result, error)
