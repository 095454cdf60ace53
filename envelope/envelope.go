// Package envelope defines the job envelope v1: the JSON document every job message on a
// nightshift queue carries. Any language can produce it (see envelope.schema.json and
// docs/envelope.md); it is accepted as raw JSON text and as base64 of that text.
package envelope

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/nightshift-jobs/nightshift/internal/jsonscan"
)

// Version is the envelope version this package reads and writes.
const Version = 1

// MaxMessageBytes is the largest queue message Azure Storage accepts: 64 KiB of message
// text (docs/host-contract.md §2.7). host.json sets messageEncoding "none", so the
// envelope's JSON text is the message text.
const MaxMessageBytes = 64 * 1024

// MaxErrors bounds the failure history carried in an envelope; older entries are dropped.
const MaxErrors = 20

// MaxErrorText bounds one error message carried in the envelope or a status record.
const MaxErrorText = 2048

// Envelope is one job message. Field names are snake_case JSON; the host copies top-level
// properties into invocation Metadata, so none of them is named like the host's own keys
// (Id, DequeueCount, PopReceipt, …; see docs/host-contract.md §1.5).
type Envelope struct {
	// Version is the envelope version; 0 (absent) reads as 1.
	Version int `json:"version,omitempty"`
	// JobID identifies the job; time-sortable (UUIDv7) when generated. Absent → generated.
	JobID string `json:"job_id,omitempty"`
	// Kind selects the Go worker.
	Kind string `json:"kind"`
	// Args are the kind's arguments, any JSON value (absent → null).
	Args json.RawMessage `json:"args,omitempty"`
	// Attempt is the 1-based attempt number of this delivery (absent → 1).
	Attempt int `json:"attempt,omitempty"`
	// EnqueuedAt is when the job was first enqueued (absent → the queue insertion time).
	EnqueuedAt time.Time `json:"enqueued_at,omitzero"`
	// MaxAttempts overrides the kind's maximum number of attempts.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// TimeoutSeconds overrides the kind's per-attempt timeout.
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
	// RunAt asks for the job not to run before this time.
	RunAt time.Time `json:"run_at,omitzero"`
	// Queue is the queue the job belongs on (retries go back to it); empty → "jobs".
	Queue string `json:"queue,omitempty"`
	// Callback asks for a notification when the job succeeds or dies.
	Callback *Callback `json:"callback,omitempty"`
	// BatchID and ParentID tie a child job to its batch and parent job.
	BatchID  string `json:"batch_id,omitempty"`
	ParentID string `json:"parent_id,omitempty"`
	// DedupeKey makes the job unique among pending and running jobs with the same key.
	DedupeKey string `json:"dedupe_key,omitempty"`
	// ArgsRef points at args stored in Blob (claim check) when they exceed the queue limit.
	ArgsRef *BlobRef `json:"args_ref,omitempty"`
	// ArgsSealed are the args encrypted by nightshift (base64 in JSON; docs/encryption.md),
	// in place of Args, when an encryption key is configured.
	ArgsSealed []byte `json:"args_sealed,omitempty"`
	// Meta is free-form string metadata (tenant, …) carried along unchanged.
	Meta map[string]string `json:"meta,omitempty"`
	// Trace is the W3C trace context of the enqueue: every attempt of the job, its
	// retries and its dead letter continue that trace (docs/observability.md).
	Trace *TraceContext `json:"trace,omitempty"`
	// Errors is the failure history of earlier attempts, newest last, at most MaxErrors.
	Errors []AttemptError `json:"errors,omitempty"`
	// DeadReason is set when nightshift itself moves the job to the poison queue.
	DeadReason string `json:"dead_reason,omitempty"`
	// Replay counts how often the job was replayed from its dead letter; each replay is a
	// new life of the same job id, starting again at attempt 1.
	Replay int `json:"replay,omitempty"`
	// StatusETag is the ETag of the queued status record the producer wrote before it put
	// this message (the Go client, the HTTP API): the first delivery of attempt 1 records
	// its end with one write conditional on it (If-Match), without reading the status
	// first (docs/semantics.md). Retries and replays do not carry it.
	StatusETag string `json:"status_etag,omitempty"`
	// Snoozes counts how often the job's worker snoozed (nightshift.Snooze) in this life:
	// a snoozed job is enqueued again at the same attempt with one more snooze
	// (written by nightshift; at most MaxSnoozes).
	Snoozes int `json:"snoozes,omitempty"`
}

// Callback is where to report a job's end: an HTTPS webhook or a queue.
type Callback struct {
	URL   string `json:"url,omitempty"`
	Queue string `json:"queue,omitempty"`
}

// TraceContext is a W3C Trace Context (https://www.w3.org/TR/trace-context/) carried in
// the envelope: the traceparent and tracestate headers of the span that enqueued the job.
type TraceContext struct {
	// Parent is the traceparent: "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>".
	Parent string `json:"traceparent"`
	// State is the tracestate, vendor data passed along as is (at most MaxTraceStateBytes).
	State string `json:"tracestate,omitempty"`
}

// BlobRef points at a blob holding a payload.
type BlobRef struct {
	Container string `json:"container"`
	Blob      string `json:"blob"`
	Size      int64  `json:"size,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
}

// AttemptError is one failed attempt.
type AttemptError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	// Error is the error text (at most MaxErrorText bytes).
	Error string `json:"error"`
	// Class is "retryable", "permanent", "panic", "timeout", "cancelled" or "host".
	Class string `json:"class,omitempty"`
	// Stack is the goroutine stack of a panic.
	Stack string `json:"stack,omitempty"`
}

// FieldError is a decoding or validation error naming the field and the problem.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return "envelope: " + e.Problem
	}
	return fmt.Sprintf("envelope field %q: %s", e.Field, e.Problem)
}

var (
	kindRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
	jobIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
)

// ValidKind reports why kind is not a valid job kind name ("" when it is): 1–128 letters,
// digits, '_', '.', ':' or '-', starting with a letter or digit.
func ValidKind(kind string) string {
	if kind == "" {
		return "is required"
	}
	if !kindRE.MatchString(kind) {
		return fmt.Sprintf("%q must be 1–128 characters of letters, digits, '_', '.', ':' or '-', starting with a letter or digit", truncate(kind, 64))
	}
	return ""
}

// ValidJobID reports why id is not a valid job id ("" when it is); same alphabet as kinds,
// since ids become blob names.
func ValidJobID(id string) string {
	if !jobIDRE.MatchString(id) {
		return fmt.Sprintf("%q must be 1–128 characters of letters, digits, '_', '.', ':' or '-', starting with a letter or digit", truncate(id, 64))
	}
	return ""
}

// NewJobID returns a new time-sortable job id (a UUIDv7).
func NewJobID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// DerivedJobID returns a UUIDv7-shaped id whose timestamp is t and whose remaining bits
// come from a hash of seed: time-sortable like NewJobID, and the same for the same inputs.
func DerivedJobID(t time.Time, seed string) string {
	h := sha256.Sum256([]byte(seed))
	var u uuid.UUID
	copy(u[:], h[:16])
	ms := uint64(t.UnixMilli())
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // RFC 4122 variant
	return u.String()
}

// Decode parses a queue message body: JSON text, or base64 of JSON text (the Functions
// host's default encoding, which Storage SDKs do not use by default). Missing optional
// fields get their defaults, except JobID and EnqueuedAt, which the caller fills in from
// the delivery (see Normalize). Errors are *FieldError values naming the field.
func Decode(body []byte) (*Envelope, error) {
	text, err := messageText(body)
	if err != nil {
		return nil, err
	}
	var e Envelope
	var ferr error
	if !fastScan(text, func(key, v []byte) {
		if ferr == nil {
			ferr = decodeField(&e, fieldName(key), v)
		}
	}) {
		return decodeChecked(text)
	}
	if ferr != nil {
		return nil, ferr
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// messageText is the JSON text of a queue message body (raw or base64), checked for
// UTF-8 and the queue limit.
func messageText(body []byte) ([]byte, error) {
	text := bytes.TrimSpace(body)
	if len(text) == 0 {
		return nil, &FieldError{"", "message is empty; expected a JSON object such as {\"kind\":\"…\",\"args\":{…}}"}
	}
	if text[0] != '{' {
		dec, err := decodeBase64(text)
		if err != nil {
			return nil, &FieldError{"", fmt.Sprintf("message is neither a JSON object nor base64 of one (starts with %q)", truncate(string(text), 24))}
		}
		text = bytes.TrimSpace(dec)
		if len(text) == 0 || text[0] != '{' {
			return nil, &FieldError{"", "message is base64, but its decoded text is not a JSON object"}
		}
	}
	if !utf8.Valid(text) {
		return nil, &FieldError{"", "message is not valid UTF-8"}
	}
	if len(text) > MaxMessageBytes {
		return nil, &FieldError{"", fmt.Sprintf("message is %d bytes; the queue limit is %d", len(text), MaxMessageBytes)}
	}
	return text, nil
}

// decodeChecked decodes text that the fast scan did not accept: the token scan words the
// problem, or (text it accepts after all) the envelope is read through a map.
func decodeChecked(text []byte) (*Envelope, error) {
	if err := checkJSONTokens(text); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) && fe.Field == "" {
			fe.Problem = "message " + fe.Problem
		}
		return nil, err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(text, &raw); err != nil {
		return nil, &FieldError{"", "message is not valid JSON: " + err.Error()}
	}
	var e Envelope
	for name, v := range raw {
		if err := decodeField(&e, name, v); err != nil {
			return nil, err
		}
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// fieldNames are the envelope's fields, so that a plain key needs no new string.
var fieldNames = []string{"version", "job_id", "kind", "args", "attempt", "enqueued_at", "max_attempts",
	"timeout_seconds", "run_at", "queue", "callback", "batch_id", "parent_id", "dedupe_key", "args_ref",
	"args_sealed", "meta", "trace", "errors", "dead_reason", "replay"}

// fieldName is the decoded key of the key literal lit.
func fieldName(lit []byte) string {
	if jsonscan.Plain(lit) {
		for _, n := range fieldNames {
			if string(lit[1:len(lit)-1]) == n {
				return n
			}
		}
	}
	return jsonscan.Unquote(lit)
}

func decodeBase64(text []byte) ([]byte, error) {
	s := string(text)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// decodeField decodes one top-level property, so that errors name the field. Unknown
// fields are rejected: a misspelt "max_attempt" must not be silently ignored.
func decodeField(e *Envelope, name string, v json.RawMessage) error {
	if string(v) == "null" {
		return nil
	}
	var target any
	switch name {
	case "version", "attempt", "max_attempts", "replay", "snoozes":
		return decodeCount(e, name, v)
	case "timeout_seconds":
		f, err := DecodeSeconds(name, v, MaxTimeoutSeconds, whatTimeout)
		e.TimeoutSeconds = f
		return err
	case "job_id":
		target = &e.JobID
	case "kind":
		target = &e.Kind
	case "args":
		e.Args = append(json.RawMessage(nil), v...)
		return nil
	case "enqueued_at":
		target = &e.EnqueuedAt
	case "run_at":
		target = &e.RunAt
	case "queue":
		target = &e.Queue
	case "callback", "trace":
		return decodeObject(e, name, v)
	case "batch_id":
		target = &e.BatchID
	case "parent_id":
		target = &e.ParentID
	case "dedupe_key":
		target = &e.DedupeKey
	case "args_ref":
		target = &e.ArgsRef
	case "args_sealed":
		target = &e.ArgsSealed
	case "meta":
		target = &e.Meta
	case "errors":
		target = &e.Errors
	default:
		if target = writtenByNightshift(e, name); target != nil {
			break
		}
		return &FieldError{name, "unknown field (envelope v1 fields: version, job_id, kind, args, attempt, enqueued_at, max_attempts, timeout_seconds, run_at, queue, callback, batch_id, parent_id, dedupe_key, args_ref, args_sealed, meta, trace, errors, dead_reason, replay, snoozes, status_etag)"}
	}
	return decodeValue(name, target, v)
}

// decodeValue decodes the value v of field name into target.
func decodeValue(name string, target any, v json.RawMessage) error {
	if decodeDirect(target, v) {
		return nil
	}
	if err := json.Unmarshal(v, target); err != nil {
		return &FieldError{name, describeJSONError(err, v)}
	}
	return nil
}

// decodeDirect decodes a string or time value v into target without reflection, as
// json.Unmarshal would; false leaves it (and any error) to json.Unmarshal.
func decodeDirect(target any, v json.RawMessage) bool {
	if len(v) < 2 || v[0] != '"' || !json.Valid(v) {
		return false
	}
	switch t := target.(type) {
	case *string:
		*t = jsonscan.Unquote(v)
		return true
	case *time.Time:
		var at time.Time
		if at.UnmarshalJSON(v) != nil {
			return false
		}
		*t = at
		return true
	}
	return false
}

// writtenByNightshift returns the string field name that nightshift itself writes
// (dead_reason, status_etag), or nil when name is no such field.
func writtenByNightshift(e *Envelope, name string) any {
	switch name {
	case "dead_reason":
		return &e.DeadReason
	case "status_etag":
		return &e.StatusETag
	}
	return nil
}

// decodeCount decodes one of the whole-number fields, refusing numbers that do not fit
// (1e300) instead of wrapping them; Validate checks the ranges.
func decodeCount(e *Envelope, name string, v json.RawMessage) error {
	var hi int64
	var target *int
	switch name {
	case "version":
		hi, target = Version, &e.Version
	case "attempt":
		hi, target = MaxAttemptsLimit, &e.Attempt
	case "max_attempts":
		hi, target = MaxAttemptsLimit, &e.MaxAttempts
	case "snoozes":
		hi, target = MaxSnoozes, &e.Snoozes
	default: // replay
		hi, target = MaxReplays, &e.Replay
	}
	n, err := jsonNumber(name, v)
	if err != nil {
		return err
	}
	i, perr := strconv.ParseInt(n, 10, 32)
	if perr != nil {
		return &FieldError{name, fmt.Sprintf("%s must be a whole number of at most %d", truncate(n, 32), hi)}
	}
	*target = int(i)
	return nil
}

func describeJSONError(err error, v json.RawMessage) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if k := te.Type.Kind(); strings.HasPrefix(te.Value, "number") && k >= reflect.Int && k <= reflect.Float64 {
			// A number that does not fit (1e300, 2.5 for a count) is refused, never wrapped.
			where := ""
			if te.Field != "" {
				where = " for " + te.Field
			}
			return fmt.Sprintf("%s%s does not fit: expected a whole number within its bounds", te.Value, where)
		}
		return fmt.Sprintf("expected %s, got %s", goTypeToJSON(te.Type.String()), te.Value)
	}
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s is not an RFC 3339 time (e.g. \"2026-01-02T15:04:05Z\")", truncate(string(v), 64))
	}
	return err.Error()
}

func goTypeToJSON(t string) string {
	switch {
	case t == "int" || t == "float64" || t == "int64":
		return "a number"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "map[") || strings.HasPrefix(t, "*envelope.") || strings.HasPrefix(t, "envelope."):
		return "an object"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	case t == "time.Time":
		return "an RFC 3339 time string"
	}
	return t
}

// Validate checks the fields' values; errors name the field.
func (e *Envelope) Validate() error {
	if err := e.validateIdentity(); err != nil {
		return err
	}
	if err := e.validateBounds(); err != nil {
		return err
	}
	if e.Callback != nil && e.Callback.URL == "" && e.Callback.Queue == "" {
		return &FieldError{"callback", "needs url or queue"}
	}
	if err := e.validateArgsSource(); err != nil {
		return err
	}
	return e.validateErrors()
}

// validateIdentity checks the version, the kind, the job id and that inline args are JSON.
func (e *Envelope) validateIdentity() error {
	if e.Version != 0 && e.Version != Version {
		return &FieldError{"version", fmt.Sprintf("%d is not supported; this is envelope version %d", e.Version, Version)}
	}
	if p := ValidKind(e.Kind); p != "" {
		return &FieldError{"kind", p}
	}
	if e.JobID != "" {
		if p := ValidJobID(e.JobID); p != "" {
			return &FieldError{"job_id", p}
		}
	}
	if len(e.Args) > 0 && !json.Valid(e.Args) {
		return &FieldError{"args", "is not valid JSON"}
	}
	return nil
}

// validateArgsSource checks that the args come from one place only: inline, by
// reference (container and blob), or sealed.
func (e *Envelope) validateArgsSource() error {
	inline := len(e.Args) > 0 && string(e.Args) != "null"
	if e.ArgsRef != nil && (e.ArgsRef.Container == "" || e.ArgsRef.Blob == "") {
		return &FieldError{"args_ref", "needs container and blob"}
	}
	if e.ArgsRef != nil && inline {
		return &FieldError{"args_ref", "cannot be combined with args"}
	}
	if len(e.ArgsSealed) > 0 && (e.ArgsRef != nil || inline) {
		return &FieldError{"args_sealed", "cannot be combined with args or args_ref"}
	}
	return nil
}

// validateErrors checks the failure history.
func (e *Envelope) validateErrors() error {
	if len(e.Errors) > MaxErrors {
		return &FieldError{"errors", fmt.Sprintf("has %d entries; at most %d (envelope.MaxErrors)", len(e.Errors), MaxErrors)}
	}
	for i, ae := range e.Errors {
		if ae.Attempt < 1 {
			return &FieldError{fmt.Sprintf("errors[%d].attempt", i), "must be 1 or more"}
		}
		if err := CheckInt(fmt.Sprintf("errors[%d].attempt", i), int64(ae.Attempt), 1, MaxAttemptsLimit, whatAttempts); err != nil {
			return err
		}
	}
	return nil
}

// validateBounds checks the counts, durations and sizes against the limits (strict.go).
func (e *Envelope) validateBounds() error {
	if e.Attempt < 0 {
		return &FieldError{"attempt", fmt.Sprintf("%d must be 1 or more", e.Attempt)}
	}
	if err := CheckInt("attempt", int64(e.Attempt), 0, MaxAttemptsLimit, whatAttempts); err != nil {
		return err
	}
	if e.MaxAttempts < 0 {
		return &FieldError{"max_attempts", fmt.Sprintf("%d must be 1 or more", e.MaxAttempts)}
	}
	if err := CheckInt("max_attempts", int64(e.MaxAttempts), 0, MaxAttemptsLimit, whatAttempts); err != nil {
		return err
	}
	if err := CheckInt("replay", int64(e.Replay), 0, MaxReplays, whatReplays); err != nil {
		return err
	}
	if err := CheckInt("snoozes", int64(e.Snoozes), 0, MaxSnoozes, whatSnoozes); err != nil {
		return err
	}
	if e.TimeoutSeconds < 0 {
		return &FieldError{"timeout_seconds", fmt.Sprintf("%g must be positive", e.TimeoutSeconds)}
	}
	if err := CheckSeconds("timeout_seconds", e.TimeoutSeconds, MaxTimeoutSeconds, whatTimeout); err != nil {
		return err
	}
	if err := CheckRunAt("run_at", e.RunAt, time.Now()); err != nil {
		return err
	}
	if len(e.StatusETag) > MaxStatusETagBytes {
		return &FieldError{"status_etag", fmt.Sprintf("is %d bytes; at most %d (envelope.MaxStatusETagBytes)", len(e.StatusETag), MaxStatusETagBytes)}
	}
	if len(e.DedupeKey) > MaxDedupeKeyBytes {
		return &FieldError{"dedupe_key", fmt.Sprintf("is %d bytes; at most %d (envelope.MaxDedupeKeyBytes)", len(e.DedupeKey), MaxDedupeKeyBytes)}
	}
	if err := CheckMeta("meta", e.Meta); err != nil {
		return err
	}
	return e.Trace.check()
}

// Normalize fills in defaults that depend on the delivery: version, attempt 1, the job id
// and the enqueue time (insertedAt, else now). A missing job id is derived from insertedAt
// and seed (the queue message id) with DerivedJobID, so every redelivery of the same
// message gets the same id; with no seed a fresh id is generated.
func (e *Envelope) Normalize(insertedAt time.Time, seed string) {
	if e.Version == 0 {
		e.Version = Version
	}
	if e.Attempt == 0 {
		e.Attempt = 1
	}
	if e.JobID == "" {
		if seed != "" && !insertedAt.IsZero() {
			e.JobID = DerivedJobID(insertedAt, seed)
		} else {
			e.JobID = NewJobID()
		}
	}
	if e.EnqueuedAt.IsZero() {
		if insertedAt.IsZero() {
			insertedAt = time.Now()
		}
		e.EnqueuedAt = insertedAt.UTC()
	}
}

// Encode returns the envelope's JSON text after validating it and checking the queue
// message limit. It is what producers put on the queue (raw, messageEncoding "none").
func (e *Envelope) Encode() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if len(e.Errors) > MaxErrors {
		e.Errors = e.Errors[len(e.Errors)-MaxErrors:]
	}
	for {
		b, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("envelope: %w", err)
		}
		if len(b) <= MaxMessageBytes {
			return b, nil
		}
		// The failure history gives way first: stacks, then the oldest errors. The full
		// history is in the status record.
		if !e.shrinkHistory() {
			return nil, &SizeError{Size: len(b), Limit: MaxMessageBytes, ArgsSize: len(e.Args)}
		}
	}
}

func (e *Envelope) shrinkHistory() bool {
	for i := range e.Errors {
		if e.Errors[i].Stack != "" {
			e.Errors[i].Stack = ""
			return true
		}
	}
	if len(e.Errors) > 0 {
		e.Errors = e.Errors[1:]
		return true
	}
	return false
}

// SizeError reports an envelope over the queue message limit.
type SizeError struct {
	Size, Limit, ArgsSize int
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("envelope is %d bytes (args %d bytes); a queue message holds at most %d bytes — store large inputs in Blob and pass a reference", e.Size, e.ArgsSize, e.Limit)
}

// AddError appends a failed attempt to the history, bounding its size.
func (e *Envelope) AddError(ae AttemptError) {
	ae.Error = truncate(ae.Error, MaxErrorText)
	ae.Stack = truncate(ae.Stack, 4*MaxErrorText)
	e.Errors = append(e.Errors, ae)
	if len(e.Errors) > MaxErrors {
		e.Errors = e.Errors[len(e.Errors)-MaxErrors:]
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Truncate shortens s to at most n bytes on a rune boundary, marking the cut with "…".
func Truncate(s string, n int) string { return truncate(s, n) }
