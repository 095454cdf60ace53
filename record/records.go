package record

import (
	"encoding/json"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
)

// State is a job's lifecycle state as recorded in its status.
type State string

// Job states. Succeeded, Dead and Cancelled are terminal.
const (
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StateRetrying  State = "retrying"
	StateSucceeded State = "succeeded"
	StateDead      State = "dead"
	StateCancelled State = "cancelled"
)

// Terminal reports whether the state is final for the job's current life.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateDead || s == StateCancelled
}

func (s State) order() int {
	switch s {
	case StateQueued:
		return 0
	case StateRunning:
		return 1
	case StateRetrying:
		return 2
	default:
		return 3
	}
}

// MaxLogLines bounds the log lines kept in a status record; the newest are kept.
const MaxLogLines = 200

// MaxLogLineBytes bounds one captured log line.
const MaxLogLineBytes = 1024

// MaxInlineResult is the largest result kept inside the status record; larger results go
// to the results container.
const MaxInlineResult = 32 * 1024

// Status is the record of one job: <status container>/<job id>.json.
type Status struct {
	JobID string `json:"job_id"`
	Kind  string `json:"kind,omitempty"`
	State State  `json:"state"`
	// Replay is the job's life number (0 until replayed from a dead letter).
	Replay int `json:"replay,omitempty"`
	// Attempt is the attempt the state refers to (0 before the first attempt).
	Attempt     int    `json:"attempt"`
	MaxAttempts int    `json:"max_attempts,omitempty"`
	Queue       string `json:"queue,omitempty"`

	EnqueuedAt time.Time `json:"enqueued_at,omitzero"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	UpdatedAt  time.Time `json:"updated_at"`
	// NextRunAt is when a retrying job's next attempt becomes visible.
	NextRunAt time.Time `json:"next_run_at,omitzero"`
	// DurationMS is the run time of the last finished attempt.
	DurationMS int64 `json:"duration_ms,omitempty"`
	// Runs counts the redeliveries of attempt Attempt (host dequeue count 2 and up) that
	// started its worker: each writes the running status, counting itself, before the
	// worker starts. A first delivery is not counted (it writes running only after a
	// while, to keep quick jobs at one write). The dead-letter cause rule reads it
	// (CauseOf, docs/semantics.md#cause-crash-or-job).
	Runs int `json:"runs,omitempty"`
	// RunDequeueCount is the host's dequeue count of the latest delivery Runs counted.
	RunDequeueCount int `json:"run_dequeue_count,omitempty"`
	// Snoozes counts how often the job's worker snoozed (nightshift.Snooze) in this
	// life; a snoozed job is queued with its attempt unchanged, due again at NextRunAt.
	Snoozes int `json:"snoozes,omitempty"`

	LastError string                  `json:"last_error,omitempty"`
	Errors    []envelope.AttemptError `json:"errors,omitempty"`

	Result *Result `json:"result,omitempty"`
	// DeadLetter is the dead-letter blob name once the job is dead.
	DeadLetter string `json:"dead_letter,omitempty"`
	// Logs are the job's captured log lines (the newest MaxLogLines).
	Logs []LogLine `json:"logs,omitempty"`
	// LogsDropped counts older lines that did not fit.
	LogsDropped int `json:"logs_dropped,omitempty"`

	// Meta carries the envelope's free-form metadata.
	Meta map[string]string `json:"meta,omitempty"`
	// Args are the job's args as the handler shows them (Transition.WithArgs): sensitive
	// fields redacted; absent until a handler has recorded the job, and for sealed,
	// claim-checked or large args (MaxShownArgs).
	Args json.RawMessage `json:"args,omitempty"`

	// Callback records the delivery of the job's end notification, if it asked for one.
	Callback *CallbackOutcome `json:"callback,omitempty"`

	// Progress is the last progress the job reported (see nightshift.Job.Progress).
	Progress *Progress `json:"progress,omitempty"`
	// BatchID is the batch this job is a child or the finalizer of.
	BatchID string `json:"batch_id,omitempty"`
	// Batch summarises the batch this job started (fan-out), when it started one.
	Batch *BatchSummary `json:"batch,omitempty"`
}

// Progress is how far a running job has come, as reported by its code.
type Progress struct {
	// Fraction is between 0 and 1.
	Fraction float64 `json:"fraction"`
	// Message says what the fraction means ("40 of 100 files").
	Message string `json:"message,omitempty"`
	// At is when the job reported it.
	At time.Time `json:"at"`
}

// BatchSummary is the state of a batch as recorded in the status of the job that started
// it. It is written when the batch starts and when it ends; nightshift.Client.Batch gives
// live counts.
type BatchSummary struct {
	BatchID   string     `json:"batch_id"`
	State     BatchState `json:"state"`
	Total     int        `json:"total"`
	Succeeded int        `json:"succeeded,omitempty"`
	Failed    int        `json:"failed,omitempty"`
}

// CallbackOutcome is the delivery state of a job's end notification (webhook or queue).
type CallbackOutcome struct {
	Target      string    `json:"target"`
	Event       string    `json:"event"`
	Attempts    int       `json:"attempts"`
	Delivered   bool      `json:"delivered"`
	LastStatus  int       `json:"last_status,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
}

// Result locates a job's result: inline JSON, inline bytes (base64) or a blob.
type Result struct {
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	// JSON is the result inline when it is JSON and at most MaxInlineResult bytes.
	JSON json.RawMessage `json:"json,omitempty"`
	// Bytes is a small non-JSON result inline (base64 in the record).
	Bytes []byte `json:"bytes,omitempty"`
	// Blob is the blob name in the results container when the result is not inline.
	Blob string `json:"blob,omitempty"`
}

// LogLine is one captured log line of a job.
type LogLine struct {
	Time    time.Time `json:"t"`
	Level   string    `json:"level"`
	Message string    `json:"msg"`
	Attempt int       `json:"attempt,omitempty"`
}

// Supersedes reports whether writing next over cur moves the job forward. A status never
// goes backwards: (replay, attempt, state order) must grow, except that a non-terminal
// state may be rewritten in place (progress, logs). A terminal state (cancelled included)
// is final for its life: only a replay, which starts a new life, moves past it.
func (next *Status) Supersedes(cur *Status) bool {
	if cur == nil {
		return true
	}
	if cur.State.Terminal() && next.Replay <= cur.Replay {
		return false
	}
	a := [3]int{next.Replay, next.Attempt, next.State.order()}
	b := [3]int{cur.Replay, cur.Attempt, cur.State.order()}
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return !cur.State.Terminal() && next.State == cur.State
}

// AppendLogs adds lines, keeping the newest MaxLogLines.
func (s *Status) AppendLogs(lines ...LogLine) {
	for _, l := range lines {
		l.Message = envelope.Truncate(l.Message, MaxLogLineBytes)
		s.Logs = append(s.Logs, l)
	}
	if n := len(s.Logs) - MaxLogLines; n > 0 {
		s.Logs = append([]LogLine(nil), s.Logs[n:]...)
		s.LogsDropped += n
	}
}

// DeadReason says why a job or message was set aside.
type DeadReason string

// Dead-letter reasons.
const (
	// ReasonAttemptsExhausted: every attempt failed with retryable errors.
	ReasonAttemptsExhausted DeadReason = "attempts_exhausted"
	// ReasonPermanentError: the job returned an error marked permanent.
	ReasonPermanentError DeadReason = "permanent_error"
	// ReasonUndecodable: the message is not a valid envelope.
	ReasonUndecodable DeadReason = "undecodable"
	// ReasonUnknownKind: no worker is registered for the envelope's kind.
	ReasonUnknownKind DeadReason = "unknown_kind"
	// ReasonHostRetriesExhausted: the Functions host moved the message to the poison
	// queue after maxDequeueCount failed deliveries (handler crash, function timeout,
	// storage errors) — docs/host-contract.md §2.3.
	ReasonHostRetriesExhausted DeadReason = "host_retries_exhausted"
)

// DeadCause says whether a dead letter was caused by the job itself or by crashes around
// it: the cause rule of docs/semantics.md#cause-crash-or-job (CauseOf).
type DeadCause string

// Dead-letter causes. Records written before causes existed have none ("").
const (
	// CauseJob: the job (or its message) is what failed: its own errors, an undecodable
	// message or an unknown kind, or host retries exhausted by deliveries that each ran
	// the job (a job that kills its handler every time). Replaying it as it is fails again.
	CauseJob DeadCause = "job"
	// CauseCrash: host retries exhausted by deliveries that never ran the job, such as a
	// host shutting down after another job crashed the handler (a crash storm). Replaying
	// it is expected to succeed.
	CauseCrash DeadCause = "crash"
)

// CauseOf applies the cause rule to a dead letter of reason, whose poison message carried
// attempt of life replay, where st is the job's status when the dead letter is recorded
// (nil when it has none) and maxDequeueCount the host's (host.json, default 5). It is
// CauseCrash when the host exhausted its retries (ReasonHostRetriesExhausted) and either
// the status never saw that attempt start (no running record of it: the job's last
// recorded run, if any, is an earlier attempt or life), or fewer of its redeliveries ran
// the worker (st.Runs) than the host made (maxDequeueCount - 1). Otherwise it is CauseJob.
// The first delivery is left out of the count on both sides (Status.Runs); see
// docs/semantics.md for what the rule cannot tell apart.
func CauseOf(reason DeadReason, st *Status, replay, attempt, maxDequeueCount int) DeadCause {
	if reason != ReasonHostRetriesExhausted {
		return CauseJob
	}
	attempt = max(attempt, 1)
	if st == nil || st.Replay != replay || st.Attempt != attempt || st.State != StateRunning {
		return CauseCrash
	}
	if st.Runs < max(maxDequeueCount, 1)-1 {
		return CauseCrash
	}
	return CauseJob
}

// DeadLetter is the durable record of a dead job or an unusable poison message:
// <dead-letters container>/<dead id>.json. It outlives the queue's 7-day message TTL.
type DeadLetter struct {
	// DeadID is the job id, or "msg-<sha256 of the body>" for a message that has none.
	DeadID string     `json:"dead_id"`
	JobID  string     `json:"job_id,omitempty"`
	Kind   string     `json:"kind,omitempty"`
	Reason DeadReason `json:"reason"`
	// Detail explains the reason in words (decode error, last error, …).
	Detail string `json:"detail"`
	// Cause is CauseCrash when crashes around the job, not the job, used up its
	// deliveries (CauseOf), else CauseJob; empty in records older than the field.
	Cause DeadCause `json:"cause,omitempty"`
	// Envelope is the job's envelope when the message decoded.
	Envelope *envelope.Envelope `json:"envelope,omitempty"`
	// Raw is the message text when it did not decode (RawBase64 when it is not UTF-8).
	Raw       string `json:"raw,omitempty"`
	RawBase64 []byte `json:"raw_base64,omitempty"`
	// Errors is every failed attempt known.
	Errors []envelope.AttemptError `json:"errors,omitempty"`
	// ArgsRef, when set, is the job's payload blob holding its original args: Envelope
	// shows the args with the kind's sensitive fields redacted, and a replay runs with
	// these.
	ArgsRef *envelope.BlobRef `json:"args_ref,omitempty"`
	// Queue is the queue the message died on (its poison sibling carried it here).
	Queue string `json:"queue,omitempty"`

	EnqueuedAt time.Time `json:"enqueued_at,omitzero"`
	DiedAt     time.Time `json:"died_at"`
	// PoisonMessageID and PoisonInsertedAt identify the poison-queue message.
	PoisonMessageID  string    `json:"poison_message_id,omitempty"`
	PoisonInsertedAt time.Time `json:"poison_inserted_at,omitzero"`

	// Replays counts replays of this record; ReplayedAt is the last one.
	Replays    int       `json:"replays,omitempty"`
	ReplayedAt time.Time `json:"replayed_at,omitzero"`
}

// WithoutStacks returns a copy of the status whose errors carry no panic stacks: the view
// for API callers and webhook receivers (stacks hold file paths and code layout; operators
// read them in the dead-letter record and the CLI). The receiver is not changed.
func (s *Status) WithoutStacks() *Status {
	c := *s
	c.Errors = make([]envelope.AttemptError, len(s.Errors))
	for i, e := range s.Errors {
		e.Stack = ""
		c.Errors[i] = e
	}
	if len(s.Errors) == 0 {
		c.Errors = s.Errors
	}
	return &c
}

// DeadLetterBlob is the blob name of a dead-letter record, which a dead status names.
func DeadLetterBlob(deadID string) string { return deadID + ".json" }
