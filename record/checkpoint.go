package record

import (
	"encoding/json"
	"time"
)

// MaxCheckpointBytes bounds the state one checkpoint holds (its JSON encoding).
const MaxCheckpointBytes = 64 * 1024

// MaxCheckpointRenewals bounds how many times the deliveries of one attempt of a job are
// renewed (put back as a fresh queue message) because the job checkpointed before it was
// interrupted (nightshift.Checkpoint, docs/semantics.md#checkpoints).
const MaxCheckpointRenewals = 100

// Checkpoint is the saved progress state of a running job: the payloads container's
// <job id>/checkpoint.json. Each write replaces the last, conditionally (If-Match on the
// version the writer saw), and carries Seq one higher than the record it replaced.
type Checkpoint struct {
	JobID string `json:"job_id"`
	// Replay and Attempt are the life and attempt that wrote it.
	Replay  int `json:"replay,omitempty"`
	Attempt int `json:"attempt"`
	// MessageID and DequeueCount are the queue message and its delivery count that
	// wrote it; a renewal clears MessageID, so only progress under the current message
	// renews it again.
	MessageID    string `json:"message_id,omitempty"`
	DequeueCount int    `json:"dequeue_count,omitempty"`
	// Seq counts the writes over the job's whole history.
	Seq int `json:"seq"`
	// Renewals counts the renewals of attempt Attempt (at most MaxCheckpointRenewals).
	Renewals int `json:"renewals,omitempty"`
	// State is the job code's value, as JSON (at most MaxCheckpointBytes).
	State json.RawMessage `json:"state"`
	// At is when it was written.
	At time.Time `json:"at"`
}
