package nightshift

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/delayed"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// ErrNotFound is returned (wrapped) when a job has no status record or a dead letter does
// not exist. It is storage.ErrNotFound, so errors.Is works with either.
var ErrNotFound = storage.ErrNotFound

// ErrJobExists is returned (wrapped in a *JobExistsError) by Enqueue when the given job id
// already has a status record: a job id names one job, once.
var ErrJobExists = errors.New("job id already used")

// ErrNotFinished is returned (wrapped) by Result when the job has not succeeded (yet).
var ErrNotFinished = errors.New("job has not succeeded")

// ErrNotDead is returned (wrapped) by Replay when the job's status says it is no longer
// dead: a replay is already pending, running or succeeded, or the job was cancelled.
var ErrNotDead = errors.New("job is not dead")

// ErrTerminal is returned (wrapped) by Cancel when the job already ended.
var ErrTerminal = errors.New("job already ended")

// MaxEnqueueDelay is the longest a queue message can stay invisible (7 days). Enqueue puts
// a job due within it on the queue as an invisible message; a job due later waits in the
// durable schedule until the ScheduleSweep timer moves it to its queue
// (docs/scheduling.md).
const MaxEnqueueDelay = delayed.QueueLimit

// JobExistsError reports an Enqueue with a job id that already has a status record.
type JobExistsError struct {
	JobID string
	State record.State
}

func (e *JobExistsError) Error() string {
	return fmt.Sprintf("job id %s already used (its status is %s); a job id names one job — pick a new id, or replay a dead job with Replay", e.JobID, e.State)
}

// Unwrap makes errors.Is(err, ErrJobExists) true.
func (e *JobExistsError) Unwrap() error { return ErrJobExists }

// ClientOptions configure a Client. The zero value is fine.
type ClientOptions struct {
	// Queue is the queue jobs go to when EnqueueOptions.Queue is empty; default the
	// layout's jobs queue ("jobs", or "<prefix>-jobs").
	Queue string
	// ExtraQueues are more job queues (full names): EnqueueOptions.Queue, batches and
	// replays may name them besides the layout's jobs, high and low queues and Queue, and
	// QueueDepths reports them. No other queue is accepted, and never a poison queue.
	ExtraQueues []string
	// Concurrency bounds the storage calls EnqueueMany, ListJobs and DeadLetters make at
	// once; default 16.
	Concurrency int
	// MaxPayloadBytes bounds a job's args (claim check, docs/payloads.md); default the
	// storage clients' MaxPayloadBytes (NIGHTSHIFT_MAX_PAYLOAD_BYTES, read by
	// storage.FromEnv), else DefaultMaxPayloadBytes.
	MaxPayloadBytes int64
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Logger receives warnings (a queued status that could not be written); default
	// slog.Default().
	Logger *slog.Logger
	// CheckCallback, when set, is asked about every callback a job asks for, after its
	// form was checked; a non-nil problem refuses the enqueue with it. Set it to the
	// delivery side's rule, callback.Options.CheckCallback, so that a webhook to an
	// origin without a secret or an unlisted callback queue is refused at once instead of
	// failing at delivery.
	CheckCallback func(cb envelope.Callback) *envelope.FieldError
	// Tracer, when set, traces every enqueue and puts the trace context in the envelope
	// (package nightshiftotel provides one; docs/observability.md). Without it an
	// envelope carries the trace context of ContextWithTrace, if any.
	Tracer Tracer
}

// Client enqueues jobs and follows them: status, waiting, results, logs, cancellation,
// dead letters and replays. It is safe for concurrent use. Any language can enqueue
// (docs/other-languages.md); this is the Go way.
type Client struct {
	store *storage.Clients
	opts  ClientOptions
}

// NewClient returns a client on the given storage clients. opts may be nil.
func NewClient(store *storage.Clients, opts *ClientOptions) *Client {
	o := ClientOptions{}
	if opts != nil {
		o = *opts
	}
	if o.Queue == "" {
		o.Queue = store.Layout.JobsQueue()
	}
	if o.MaxPayloadBytes <= 0 {
		o.MaxPayloadBytes = store.MaxPayloadBytes // the setting, when the store came from settings
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Client{store: store, opts: o}
}

// NewClientFromEnv builds storage clients from the same settings the handler reads
// (AzureWebJobsStorage or its identity-based forms, NIGHTSHIFT_NAME_PREFIX,
// NIGHTSHIFT_MAX_PAYLOAD_BYTES, the encryption keys) and returns a client on them.
func NewClientFromEnv(getenv func(string) string) (*Client, error) {
	store, err := storage.FromEnv(getenv, nil)
	if err != nil {
		return nil, err
	}
	return NewClient(store, nil), nil
}

// Store returns the storage clients the client uses.
func (c *Client) Store() *storage.Clients { return c.store }

// EnqueueOptions are per-job options. The zero value enqueues on the default queue to run
// now with the kind's defaults.
type EnqueueOptions struct {
	// JobID names the job (1–128 letters, digits, '_', '.', ':' or '-'); default a new
	// time-sortable id. An id that already has a status is refused (ErrJobExists).
	JobID string
	// Queue is the queue to put the job on (full name); default the client's queue. See
	// Client.PriorityQueue for the high- and low-priority queues.
	Queue string
	// RunIn delays the job by this long (beyond MaxEnqueueDelay: durable schedule).
	RunIn time.Duration
	// RunAt asks the job not to run before this time (beyond MaxEnqueueDelay away: the
	// durable schedule).
	// RunIn and RunAt cannot both be set.
	RunAt time.Time
	// Timeout overrides the kind's per-attempt timeout.
	Timeout time.Duration
	// MaxAttempts overrides the kind's maximum number of attempts.
	MaxAttempts int
	// DedupeKey makes the job unique among pending and running jobs: while a job holding
	// the key has not ended, enqueueing another with the same key fails with an error
	// wrapping ErrDuplicate (a *DuplicateJobError names the holder).
	DedupeKey string
	// DedupeReturnExisting makes a duplicate enqueue succeed with the holder's job id
	// (EnqueueResult.Existing) instead of failing.
	DedupeReturnExisting bool
	// Priority chooses the queue when Queue is empty: jobs-high, jobs (default) or
	// jobs-low (docs/priorities.md).
	Priority Priority
	// CallbackURL asks for an HTTPS webhook when the job succeeds or is dead (package
	// callback; the handler must register it).
	CallbackURL string
	// CallbackQueue asks for a message on this queue when the job succeeds or is dead.
	CallbackQueue string
	// Meta is free-form string metadata carried with the job and copied to its status.
	Meta map[string]string
}

// EnqueueResult describes an enqueued job.
type EnqueueResult struct {
	// JobID is the job's id.
	JobID string `json:"job_id"`
	// Kind is the job kind.
	Kind string `json:"kind"`
	// Queue is the queue the message went to.
	Queue string `json:"queue"`
	// MessageID is the queue message id (empty for a job waiting in the durable schedule).
	MessageID string `json:"message_id"`
	// EnqueuedAt is when the client enqueued it.
	EnqueuedAt time.Time `json:"enqueued_at"`
	// RunAt is when the job becomes due (zero for now).
	RunAt time.Time `json:"run_at,omitzero"`
	// Replay is the job's life number (0 unless this is a replay).
	Replay int `json:"replay,omitempty"`
	// Bytes is the size of the message text.
	Bytes int `json:"bytes"`
	// Existing is true when DedupeReturnExisting found the key held: JobID is the
	// holder's and nothing was enqueued.
	Existing bool `json:"existing,omitempty"`
}

// Enqueue puts a typed job on the queue. The args are encoded as JSON; the kind is
// args.Kind(). Args larger than ClaimCheckThreshold are stored in Blob and the message
// carries a reference (claim check). Invalid options or args return an error before
// anything is sent: a *envelope.FieldError naming the field, a *PayloadTooLargeError for
// args over the maximum, or an *envelope.SizeError when the message would still exceed
// the 64 KiB queue limit.
func (c *Client) Enqueue(ctx context.Context, args JobArgs, opts *EnqueueOptions) (*EnqueueResult, error) {
	if args == nil {
		return nil, fmt.Errorf("nightshift: enqueue: args is nil; pass a value whose type has a Kind method")
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("nightshift: enqueue %s: args %T do not encode as JSON: %w", args.Kind(), args, err)
	}
	return c.EnqueueRaw(ctx, args.Kind(), raw, opts)
}

// EnqueueRaw puts a job of the named kind with JSON args on the queue (see Enqueue).
// Empty args mean null.
func (c *Client) EnqueueRaw(ctx context.Context, kind string, args json.RawMessage, opts *EnqueueOptions) (*EnqueueResult, error) {
	env, queue, delay, err := c.build(kind, args, opts)
	if err != nil {
		return nil, fmt.Errorf("nightshift: enqueue %s: %w", kind, err)
	}
	res, err := c.send(ctx, env, queue, delay, opts != nil && opts.JobID != "")
	return dedupeOutcome(env, queue, opts, res, err)
}

// Envelope returns the envelope Enqueue would send, validated, with its queue and delay,
// without sending it (used by tools that print or forward envelopes).
func (c *Client) Envelope(kind string, args json.RawMessage, opts *EnqueueOptions) (*envelope.Envelope, string, time.Duration, error) {
	return c.build(kind, args, opts)
}

// build validates the options and builds the envelope.
func (c *Client) build(kind string, args json.RawMessage, opts *EnqueueOptions) (*envelope.Envelope, string, time.Duration, error) {
	o := EnqueueOptions{}
	if opts != nil {
		o = *opts
	}
	if err := checkKindAndArgs(kind, args); err != nil {
		return nil, "", 0, err
	}
	now := c.opts.Now().UTC()
	if err := checkOptionBounds(&o, args, now); err != nil {
		return nil, "", 0, err
	}
	env, err := newEnvelope(kind, args, &o, now)
	if err != nil {
		return nil, "", 0, err
	}
	queue, err := c.chooseQueue(env, &o)
	if err != nil {
		return nil, "", 0, err
	}
	if err := checkDedupeKey(o.DedupeKey); err != nil {
		return nil, "", 0, err
	}
	delay, err := scheduleDelay(env, &o, now)
	if err != nil {
		return nil, "", 0, err
	}
	if env.Callback, err = c.buildCallback(&o); err != nil {
		return nil, "", 0, err
	}
	if err := checkMetaKeys(o.Meta); err != nil {
		return nil, "", 0, err
	}
	if err := env.Validate(); err != nil {
		return nil, "", 0, err
	}
	return env, queue, delay, nil
}

// checkKindAndArgs checks that kind is a valid job kind and that args, when given, are JSON.
func checkKindAndArgs(kind string, args json.RawMessage) error {
	if p := envelope.ValidKind(kind); p != "" {
		return &envelope.FieldError{Field: "kind", Problem: p}
	}
	if len(args) > 0 && !json.Valid(args) {
		return &envelope.FieldError{Field: "args", Problem: "is not valid JSON"}
	}
	return nil
}

// newEnvelope fills the envelope's defaults for a first attempt (version, attempt 1, a
// new job id unless the options give a valid one, the timeout) from the options.
func newEnvelope(kind string, args json.RawMessage, o *EnqueueOptions, now time.Time) (*envelope.Envelope, error) {
	env := &envelope.Envelope{
		Version: envelope.Version, Kind: kind, Args: compactJSON(args), Attempt: 1, EnqueuedAt: now,
		MaxAttempts: o.MaxAttempts, DedupeKey: o.DedupeKey, Meta: o.Meta,
	}
	env.JobID = o.JobID
	if env.JobID == "" {
		env.JobID = envelope.NewJobID()
	} else if p := envelope.ValidJobID(env.JobID); p != "" {
		return nil, &envelope.FieldError{Field: "job_id", Problem: p}
	}
	if o.Timeout > 0 {
		env.TimeoutSeconds = o.Timeout.Seconds()
	}
	return env, nil
}

// chooseQueue returns the queue the job goes to: the options' queue when it is a job
// queue, else the priority's queue, else the client's default. A queue other than the
// default is recorded in the envelope.
func (c *Client) chooseQueue(env *envelope.Envelope, o *EnqueueOptions) (string, error) {
	switch {
	case o.Queue != "":
		if p := c.queueProblem(o.Queue); p != "" {
			return "", &envelope.FieldError{Field: "queue", Problem: p}
		}
		env.Queue = o.Queue
		return o.Queue, nil
	case o.Priority != PriorityNormal:
		q, err := QueueFor(c.store.Layout, o.Priority)
		if err != nil {
			return "", &envelope.FieldError{Field: "queue", Problem: err.Error()}
		}
		env.Queue = q
		return q, nil
	}
	return c.opts.Queue, nil
}

// checkDedupeKey checks the dedupe key's length against envelope.MaxDedupeKeyBytes.
func checkDedupeKey(key string) error {
	if len(key) > envelope.MaxDedupeKeyBytes {
		return &envelope.FieldError{Field: "dedupe_key", Problem: fmt.Sprintf("is %d bytes; at most %d (envelope.MaxDedupeKeyBytes)", len(key), envelope.MaxDedupeKeyBytes)}
	}
	return nil
}

// scheduleDelay turns RunIn or RunAt into the delay before the job is due (0 when it is
// due now) and records the due time in the envelope.
func scheduleDelay(env *envelope.Envelope, o *EnqueueOptions, now time.Time) (time.Duration, error) {
	var delay time.Duration
	switch {
	case o.RunIn != 0 && !o.RunAt.IsZero():
		return 0, &envelope.FieldError{Field: "run_at", Problem: "give run-in or run-at, not both"}
	case o.RunIn < 0:
		return 0, &envelope.FieldError{Field: "run_at", Problem: fmt.Sprintf("run-in %s is negative", o.RunIn)}
	case o.RunIn > 0:
		delay = o.RunIn
	case !o.RunAt.IsZero():
		delay = o.RunAt.Sub(now)
	}
	if delay <= 0 {
		return 0, nil
	}
	env.RunAt = now.Add(delay)
	return delay, nil
}

// buildCallback returns the options' callback (nil when there is none), after checking
// that it names a URL or a queue, that the target is well formed, and that
// ClientOptions.CheckCallback accepts it.
func (c *Client) buildCallback(o *EnqueueOptions) (*envelope.Callback, error) {
	if o.CallbackURL == "" && o.CallbackQueue == "" {
		return nil, nil
	}
	cb := &envelope.Callback{URL: o.CallbackURL, Queue: o.CallbackQueue}
	if err := checkCallbackTarget(cb); err != nil {
		return nil, err
	}
	if c.opts.CheckCallback != nil {
		if fe := c.opts.CheckCallback(*cb); fe != nil {
			return nil, fe
		}
	}
	return cb, nil
}

// checkCallbackTarget checks that cb names exactly one of a URL and a queue, and that the
// one it names is well formed.
func checkCallbackTarget(cb *envelope.Callback) error {
	if cb.URL != "" && cb.Queue != "" {
		return &envelope.FieldError{Field: "callback", Problem: "give a url or a queue, not both"}
	}
	if cb.URL != "" {
		if p := validCallbackURL(cb.URL); p != "" {
			return &envelope.FieldError{Field: "callback.url", Problem: p}
		}
	}
	if cb.Queue != "" {
		if p := storage.ValidQueueName(cb.Queue); p != "" {
			return &envelope.FieldError{Field: "callback.queue", Problem: fmt.Sprintf("%q %s", cb.Queue, p)}
		}
	}
	return nil
}

// checkMetaKeys refuses an empty meta key.
func checkMetaKeys(meta map[string]string) error {
	for k := range meta {
		if k == "" {
			return &envelope.FieldError{Field: "meta", Problem: "has an empty key"}
		}
	}
	return nil
}

// checkOptionBounds checks the args' keys and the enqueue options against the envelope
// limits, so that what the executor would refuse fails here, before anything is sent.
func checkOptionBounds(o *EnqueueOptions, args json.RawMessage, now time.Time) error {
	if len(args) > 0 {
		if err := envelope.CheckJSON(args); err != nil {
			return envelope.PrefixPath("args", err)
		}
	}
	if o.MaxAttempts < 0 {
		return &envelope.FieldError{Field: "max_attempts", Problem: fmt.Sprintf("%d must be 1 or more", o.MaxAttempts)}
	}
	if o.Timeout < 0 {
		return &envelope.FieldError{Field: "timeout_seconds", Problem: fmt.Sprintf("%s must be positive", o.Timeout)}
	}
	delay := o.RunIn
	if !o.RunAt.IsZero() {
		delay = o.RunAt.Sub(now)
	}
	if delay > envelope.MaxScheduleAhead {
		return &envelope.FieldError{Field: "run_at", Problem: fmt.Sprintf("a delay of %s is more than 10 years ahead (%s, envelope.MaxScheduleAhead)", delay.Round(time.Second), envelope.MaxScheduleAhead)}
	}
	if o.MaxAttempts > envelope.MaxAttemptsLimit {
		return &envelope.FieldError{Field: "max_attempts", Problem: fmt.Sprintf("%d must be at most %d (envelope.MaxAttemptsLimit)", o.MaxAttempts, envelope.MaxAttemptsLimit)}
	}
	if o.Timeout > envelope.MaxTimeout {
		return &envelope.FieldError{Field: "timeout_seconds", Problem: fmt.Sprintf("%s must be at most %s (7 days, envelope.MaxTimeout)", o.Timeout, envelope.MaxTimeout)}
	}
	return envelope.CheckMeta("meta", o.Meta)
}

// validCallbackURL says why u cannot be a webhook target ("" when it can). Whether http
// and private addresses are allowed is decided where the webhook is delivered.
func validCallbackURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" || (p.Scheme != "https" && p.Scheme != "http") {
		return fmt.Sprintf("%q is not an absolute https URL", envelope.Truncate(u, 80))
	}
	if p.User != nil {
		return "must not carry user:password; the webhook is signed with the app's webhook secret instead"
	}
	if len(u) > 2048 {
		return fmt.Sprintf("is %d bytes; at most 2048", len(u))
	}
	return ""
}

func compactJSON(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return json.RawMessage(buf.Bytes())
}

// send traces the enqueue of env (startEnqueue) and sends it (sendTraced).
func (c *Client) send(ctx context.Context, env *envelope.Envelope, queue string, delay time.Duration, explicitID bool) (*EnqueueResult, error) {
	ctx, end := c.startEnqueue(ctx, EnqueueSpan{Kind: env.Kind, JobID: env.JobID, Queue: queue})
	if tc := c.traceOf(ctx); tc != nil {
		env.Trace = tc
	}
	res, err := c.sendTraced(ctx, env, queue, delay, explicitID)
	end(err)
	return res, err
}

// sendTraced claim-checks large args, takes the dedupe key, writes the queued status and
// enqueues. The queued status is written first, create-only: its If-None-Match refuses a
// job id that is taken (no read), and the message carries its ETag (status_etag), so the
// handler records the job's end with one conditional write and no status read
// (docs/semantics.md, "The write path").
func (c *Client) sendTraced(ctx context.Context, env *envelope.Envelope, queue string, delay time.Duration, explicitID bool) (*EnqueueResult, error) {
	if err := checkIDFree(ctx, c.store, env, explicitID && delay > MaxEnqueueDelay); err != nil {
		return nil, err
	}
	// Args above ClaimCheckThreshold go to the payloads container; the envelope carries
	// args_ref (payload.go).
	if err := claimCheck(ctx, c.store, env, c.maxPayload()); err != nil {
		return nil, fmt.Errorf("nightshift: enqueue %s: %w", env.Kind, err)
	}
	body, err := env.Encode()
	if err != nil {
		return nil, fmt.Errorf("nightshift: enqueue %s: %w", env.Kind, err)
	}
	// A dedupe key is locked before the message exists (unique.go); a failed enqueue frees it.
	if env.DedupeKey != "" {
		if err := acquireUnique(ctx, c.store, env, c.opts.Now()); err != nil {
			return nil, fmt.Errorf("nightshift: enqueue %s: %w", env.Kind, err)
		}
	}
	release := func() {
		if env.DedupeKey != "" {
			_ = releaseUnique(context.WithoutCancel(ctx), c.store, env.DedupeKey, env.JobID)
		}
	}
	if delay > MaxEnqueueDelay {
		return c.sendDelayed(ctx, env, queue, len(body))
	}
	etag, err := c.putQueued(ctx, env, queue, explicitID)
	if err != nil {
		release()
		return nil, err
	}
	env.StatusETag = string(etag)
	if body, err = env.Encode(); err != nil {
		release()
		c.dropQueued(ctx, env.JobID, etag)
		return nil, fmt.Errorf("nightshift: enqueue %s: %w", env.Kind, err)
	}
	var ttl time.Duration
	if delay > 0 {
		// The message must outlive its invisibility: it lives 7 days after it is due.
		ttl = delay + MaxEnqueueDelay
	}
	msgID, err := c.store.Enqueue(ctx, queue, body, delay, ttl)
	if err != nil {
		release()
		c.dropQueued(ctx, env.JobID, etag)
		return nil, fmt.Errorf("nightshift: enqueue %s: %w", env.Kind, err)
	}
	return &EnqueueResult{
		JobID: env.JobID, Kind: env.Kind, Queue: queue, MessageID: msgID, EnqueuedAt: env.EnqueuedAt,
		RunAt: env.RunAt, Replay: env.Replay, Bytes: len(body),
	}, nil
}

// checkIDFree refuses an explicit job id that has a status only for jobs headed for the
// durable schedule (which writes the queued status itself); every other enqueue refuses
// a taken id through the create-only queued write (putQueued), at no read.
func checkIDFree(ctx context.Context, s *storage.Clients, env *envelope.Envelope, check bool) error {
	if !check {
		return nil
	}
	cur, _, err := s.GetStatus(ctx, env.JobID)
	switch {
	case err == nil:
		return fmt.Errorf("nightshift: enqueue %s: %w", env.Kind, &JobExistsError{JobID: env.JobID, State: cur.State})
	case !errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("nightshift: enqueue %s: %w", env.Kind, err)
	}
	return nil
}

// putQueued writes the queued status create-only and returns its ETag. A job id that
// already has a status is refused for an explicit id (JobExistsError, with the state read
// on this rare path); for a generated id, and when storage fails for a generated id, the
// job is still enqueued without status_etag (its handler then creates the status), as
// the queued status is a convenience there. For an explicit id a storage failure fails
// the enqueue: the id could not be checked.
func (c *Client) putQueued(ctx context.Context, env *envelope.Envelope, queue string, explicitID bool) (storage.ETag, error) {
	st := record.Queued(env, queue, env.RunAt).Apply(nil)
	etag, err := c.store.PutStatus(ctx, st, "")
	switch {
	case err == nil:
		return etag, nil
	case storage.IsConflict(err) && explicitID:
		state := record.State("")
		if cur, _, gerr := c.store.GetStatus(ctx, env.JobID); gerr == nil {
			state = cur.State
		}
		return "", fmt.Errorf("nightshift: enqueue %s: %w", env.Kind, &JobExistsError{JobID: env.JobID, State: state})
	case explicitID:
		return "", fmt.Errorf("nightshift: enqueue %s: %w", env.Kind, err)
	}
	c.opts.Logger.Warn("its queued status could not be written; enqueueing the job without it", "job_id", env.JobID, "error", err.Error())
	return "", nil
}

// dropQueued deletes the queued status of a job whose message could not be put, unless it
// changed since (best effort: a status left behind shows queued for a job that is on no
// queue, and is logged).
func (c *Client) dropQueued(ctx context.Context, jobID string, etag storage.ETag) {
	if etag == "" {
		return
	}
	err := c.store.Store().Delete(context.WithoutCancel(ctx), c.store.Layout.StatusContainer(), storage.StatusBlob(jobID), store.DeleteOptions{IfMatch: store.ETag(etag)})
	if err != nil && !storage.IsConflict(err) && !storage.IsNotFound(err) {
		c.opts.Logger.Warn("job not enqueued, but its queued status could not be removed", "job_id", jobID, "error", err.Error())
	}
}

// sendDelayed puts a job due beyond MaxEnqueueDelay in the durable schedule, which also
// writes its queued status (create-only: a job id names one job).
func (c *Client) sendDelayed(ctx context.Context, env *envelope.Envelope, queue string, size int) (*EnqueueResult, error) {
	e, err := delayed.New(c.store, &delayed.Options{Now: c.opts.Now}).Put(ctx, env, queue)
	if err != nil && e == nil {
		if env.DedupeKey != "" {
			_ = releaseUnique(context.WithoutCancel(ctx), c.store, env.DedupeKey, env.JobID)
		}
		if errors.Is(err, delayed.ErrJobExists) {
			err = &JobExistsError{JobID: env.JobID, State: record.StateQueued}
		}
		return nil, fmt.Errorf("nightshift: enqueue %s: %w", env.Kind, err)
	}
	if err != nil {
		c.opts.Logger.Warn("job scheduled, but its queued status could not be written", "job_id", env.JobID, "error", err.Error())
	}
	return &EnqueueResult{JobID: env.JobID, Kind: env.Kind, Queue: queue, EnqueuedAt: env.EnqueuedAt, RunAt: e.Due, Replay: env.Replay, Bytes: size}, nil
}

// EnqueueParams is one job for EnqueueMany: typed Args, or Kind with RawArgs.
type EnqueueParams struct {
	Args    JobArgs
	Kind    string
	RawArgs json.RawMessage
	Opts    *EnqueueOptions
}

// EnqueueManyResult is the outcome of one EnqueueParams: a result or an error.
type EnqueueManyResult struct {
	Result *EnqueueResult
	Err    error
}

// EnqueueMany enqueues jobs concurrently (at most ClientOptions.Concurrency at once). The
// results are in the order of params, each with its own error; the returned error is
// non-nil only when ctx ended before every job was tried. Queue messages are independent:
// some may be enqueued while others fail.
func (c *Client) EnqueueMany(ctx context.Context, params []EnqueueParams) ([]EnqueueManyResult, error) {
	out := make([]EnqueueManyResult, len(params))
	sem := make(chan struct{}, c.opts.Concurrency)
	var wg sync.WaitGroup
	for i, p := range params {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			for j := i; j < len(params); j++ {
				out[j].Err = fmt.Errorf("nightshift: enqueue: not tried: %w", ctx.Err())
			}
			wg.Wait()
			return out, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if p.Args != nil {
				out[i].Result, out[i].Err = c.Enqueue(ctx, p.Args, p.Opts)
			} else {
				out[i].Result, out[i].Err = c.EnqueueRaw(ctx, p.Kind, p.RawArgs, p.Opts)
			}
		}()
	}
	wg.Wait()
	return out, nil
}

// Status returns the job's status record; an error wrapping ErrNotFound when it has none.
func (c *Client) Status(ctx context.Context, jobID string) (*record.Status, error) {
	if p := envelope.ValidJobID(jobID); p != "" {
		return nil, fmt.Errorf("nightshift: job id %s: %w", p, ErrNotFound)
	}
	st, _, err := c.store.GetStatus(ctx, jobID)
	if err != nil {
		return nil, fmt.Errorf("nightshift: %w", err)
	}
	return st, nil
}

// WaitOptions tune Wait. The zero value polls from 100 ms growing to 2 s.
type WaitOptions struct {
	// MinInterval is the first polling interval; default 100 ms.
	MinInterval time.Duration
	// MaxInterval caps the polling interval; default 2 s.
	MaxInterval time.Duration
	// Progress, when set, is called with every status read that differs from the previous
	// one (state, attempt, replay or update time), and with nil while there is no status.
	Progress func(st *record.Status)
}

// Wait polls the job's status until it is terminal (succeeded, dead or cancelled) and
// returns that status. A job without a status yet is waited for too. It returns ctx's
// error (wrapped) when ctx ends first; bound the wait with a context deadline.
func (c *Client) Wait(ctx context.Context, jobID string, opts *WaitOptions) (*record.Status, error) {
	o := WaitOptions{}
	if opts != nil {
		o = *opts
	}
	if o.MinInterval <= 0 {
		o.MinInterval = 100 * time.Millisecond
	}
	if o.MaxInterval <= 0 {
		o.MaxInterval = 2 * time.Second
	}
	if o.MaxInterval < o.MinInterval {
		o.MaxInterval = o.MinInterval
	}
	if p := envelope.ValidJobID(jobID); p != "" {
		return nil, fmt.Errorf("nightshift: job id %s: %w", p, ErrNotFound)
	}
	interval := o.MinInterval
	var last *record.Status
	first := true
	for {
		st, _, err := c.store.GetStatus(ctx, jobID)
		switch {
		case err == nil:
			if o.Progress != nil && (last == nil || changed(last, st)) {
				o.Progress(st)
			}
			if st.State.Terminal() {
				return st, nil
			}
			if last != nil && changed(last, st) {
				interval = o.MinInterval
			}
			last = st
		case errors.Is(err, storage.ErrNotFound):
			if o.Progress != nil && first {
				o.Progress(nil)
			}
		case ctx.Err() != nil:
			return last, fmt.Errorf("nightshift: waiting for job %s: %w", jobID, ctx.Err())
		default:
			return last, fmt.Errorf("nightshift: waiting for job %s: %w", jobID, err)
		}
		first = false
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return last, fmt.Errorf("nightshift: waiting for job %s: %w", jobID, ctx.Err())
		case <-t.C:
		}
		interval = min(interval*3/2, o.MaxInterval)
	}
}

func changed(a, b *record.Status) bool {
	return a.State != b.State || a.Attempt != b.Attempt || a.Replay != b.Replay || !a.UpdatedAt.Equal(b.UpdatedAt)
}

// ResultBytes returns a succeeded job's result as stored: its content type and bytes
// (JSON for results returned as Go values). A job that has not succeeded gives an error
// wrapping ErrNotFinished; a succeeded job without a result gives one wrapping ErrNotFound.
func (c *Client) ResultBytes(ctx context.Context, jobID string) (string, []byte, error) {
	st, err := c.Status(ctx, jobID)
	if err != nil {
		return "", nil, err
	}
	if st.State != record.StateSucceeded {
		return "", nil, fmt.Errorf("nightshift: job %s is %s: %w", jobID, st.State, ErrNotFinished)
	}
	ct, data, err := c.store.GetResult(ctx, st)
	if err != nil {
		return "", nil, fmt.Errorf("nightshift: %w", err)
	}
	return ct, data, nil
}

// Result decodes a succeeded job's JSON result into v (see ResultBytes for the errors).
// A non-JSON result can be read into a *[]byte.
func (c *Client) Result(ctx context.Context, jobID string, v any) error {
	ct, data, err := c.ResultBytes(ctx, jobID)
	if err != nil {
		return err
	}
	if b, ok := v.(*[]byte); ok {
		*b = data
		return nil
	}
	if !strings.Contains(ct, "json") {
		return fmt.Errorf("nightshift: result of job %s is %s, not JSON; read it into a *[]byte or use ResultBytes", jobID, ct)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("nightshift: result of job %s does not decode into %T: %w", jobID, v, err)
	}
	return nil
}

// Logs returns the job's captured log lines (the newest record.MaxLogLines) and how many
// older lines were dropped.
func (c *Client) Logs(ctx context.Context, jobID string) ([]record.LogLine, int, error) {
	st, err := c.Status(ctx, jobID)
	if err != nil {
		return nil, 0, err
	}
	return st.Logs, st.LogsDropped, nil
}

// Cancel marks the job cancelled, for the attempt that is running or runs next, after
// adding it to the cancel journal (cancels.go). A queued or retrying job is then skipped
// when its message arrives (a queued job's first delivery once the cancellation is
// CancelJournalCheck old; one that starts sooner runs, but its end is not recorded:
// docs/semantics.md, "The write path"); a running job has its context cancelled when the handler next
// checks its status (every few seconds). A job that already ended cannot be cancelled: the error
// wraps ErrTerminal. Cancelling an id with no status records the cancellation, so a job
// enqueued later with that id will not run.
func (c *Client) Cancel(ctx context.Context, jobID string) (*record.Status, error) {
	if p := envelope.ValidJobID(jobID); p != "" {
		return nil, fmt.Errorf("nightshift: cancel: job id %s", p)
	}
	// The journal first: a first delivery that finds the id there reads the status before
	// it runs (cancels.go); an entry whose status write then fails only costs that read.
	if err := journalCancel(ctx, c.store, jobID, c.opts.Now().UTC()); err != nil {
		return nil, fmt.Errorf("nightshift: cancel job %s: %w", jobID, err)
	}
	var ended *record.Status
	st, _, err := c.store.UpdateStatus(ctx, jobID, func(cur *record.Status) *record.Status {
		ended = nil
		if cur != nil && cur.State.Terminal() {
			ended = cur
			return nil
		}
		// The cancelled status names the attempt that is running or runs next; being
		// terminal, no later status of this life supersedes it (record.Status.Supersedes).
		return record.Cancelled(jobID, c.opts.Now().UTC()).Apply(cur)
	})
	if err != nil {
		return nil, fmt.Errorf("nightshift: cancel job %s: %w", jobID, err)
	}
	if ended != nil {
		return ended, fmt.Errorf("nightshift: cannot cancel job %s: it is already %s: %w", jobID, ended.State, ErrTerminal)
	}
	return st, nil
}

// DeadLetters returns every dead-letter record, most recent death first.
func (c *Client) DeadLetters(ctx context.Context) ([]*record.DeadLetter, error) {
	ids, err := c.store.ListDeadLetters(ctx)
	if err != nil {
		return nil, fmt.Errorf("nightshift: %w", err)
	}
	return c.readDeadLetters(ctx, ids)
}

// readDeadLetters reads the records ids (concurrently; a record gone meanwhile is left
// out), most recent death first.
func (c *Client) readDeadLetters(ctx context.Context, ids []string) ([]*record.DeadLetter, error) {
	out := make([]*record.DeadLetter, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, c.opts.Concurrency)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], _, errs[i] = c.store.GetDeadLetter(ctx, id)
		}()
	}
	wg.Wait()
	res := out[:0]
	for i, d := range out {
		if errs[i] != nil {
			if errors.Is(errs[i], storage.ErrNotFound) {
				continue
			}
			return nil, fmt.Errorf("nightshift: %w", errs[i])
		}
		res = append(res, d)
	}
	sort.SliceStable(res, func(i, j int) bool { return res[i].DiedAt.After(res[j].DiedAt) })
	return res, nil
}

// DeadLetter returns one dead-letter record (its id is the job id, or "msg-…" for a
// message that was not a valid envelope).
func (c *Client) DeadLetter(ctx context.Context, deadID string) (*record.DeadLetter, error) {
	d, _, err := c.store.GetDeadLetter(ctx, deadID)
	if err != nil {
		return nil, fmt.Errorf("nightshift: %w", err)
	}
	return d, nil
}

// Replay starts a new life of a dead job from its dead-letter record: the same job id and
// args, attempt 1, no error history, replay number one higher than any before. The record
// counts the replay; the job's status becomes queued for the new life. Records of
// messages that never decoded cannot be replayed (fix and enqueue them yourself), and a
// job whose status is no longer dead (an earlier replay is pending, running or succeeded)
// is not replayed again: the error wraps ErrNotDead.
func (c *Client) Replay(ctx context.Context, deadID string) (*EnqueueResult, error) {
	rec, etag, err := c.loadReplayable(ctx, deadID)
	if err != nil {
		return nil, err
	}
	env := *rec.Envelope
	life, err := c.nextLife(ctx, deadID, rec, &env)
	if err != nil {
		return nil, err
	}
	resetForReplay(&env, rec, life)
	queue, err := c.replayQueue(deadID, rec, &env)
	if err != nil {
		return nil, err
	}
	ctx, end := c.startEnqueue(ctx, EnqueueSpan{Kind: env.Kind, JobID: env.JobID, Queue: queue})
	if tc := c.traceOf(ctx); tc != nil {
		env.Trace = tc
	}
	msgID, size, err := c.requeue(ctx, deadID, &env, queue)
	end(err)
	if err != nil {
		return nil, err
	}
	now := c.opts.Now().UTC()
	if err := c.recordReplay(ctx, deadID, rec, etag, life, now, msgID); err != nil {
		return nil, err
	}
	if err := c.markReplayQueued(ctx, &env, queue, life); err != nil {
		return nil, fmt.Errorf("nightshift: replay %s: enqueued (message %s, life %d) but the status could not be updated: %w", deadID, msgID, life, err)
	}
	return &EnqueueResult{JobID: env.JobID, Kind: env.Kind, Queue: queue, MessageID: msgID, EnqueuedAt: now, Replay: life, Bytes: size}, nil
}

// loadReplayable reads the dead-letter record deadID and its etag, refusing a record of a
// message that was not a valid job envelope.
func (c *Client) loadReplayable(ctx context.Context, deadID string) (*record.DeadLetter, storage.ETag, error) {
	rec, etag, err := c.store.GetDeadLetter(ctx, deadID)
	if err != nil {
		return nil, "", fmt.Errorf("nightshift: replay: %w", err)
	}
	if rec.Envelope == nil {
		return nil, "", fmt.Errorf("nightshift: replay %s: the dead message (%s) is not a valid job envelope, so it cannot be replayed; fix it and enqueue it anew", deadID, rec.Reason)
	}
	return rec, etag, nil
}

// nextLife returns the replay number of the new life: one above the record's replays, the
// envelope's and the status's. It refuses (ErrNotDead) when the job's status is no
// longer dead.
func (c *Client) nextLife(ctx context.Context, deadID string, rec *record.DeadLetter, env *envelope.Envelope) (int, error) {
	life := max(rec.Replays+1, env.Replay+1)
	cur, _, err := c.store.GetStatus(ctx, env.JobID)
	switch {
	case err == nil && cur.State != record.StateDead:
		// A replay is pending, running or done (or the job was cancelled): another one
		// would run the job again, or cut the current life short.
		return 0, fmt.Errorf("nightshift: replay %s: job %s is %s (life %d): %w", deadID, env.JobID, cur.State, cur.Replay, ErrNotDead)
	case err == nil && cur.Replay >= life:
		life = cur.Replay + 1
	case err != nil && !errors.Is(err, storage.ErrNotFound):
		return 0, fmt.Errorf("nightshift: replay %s: %w", deadID, err)
	}
	return life, nil
}

// resetForReplay turns the dead envelope into the first attempt of life: original args
// (by reference when the record redacted them), attempt 1, no snoozes, no errors, due now.
func resetForReplay(env *envelope.Envelope, rec *record.DeadLetter, life int) {
	if rec.ArgsRef != nil { // the record shows the args redacted; the originals are here
		env.Args, env.ArgsRef = nil, rec.ArgsRef
	}
	env.Replay = life
	env.Attempt = 1
	env.StatusETag = ""
	env.Snoozes = 0
	env.Errors = nil
	env.DeadReason = ""
	env.RunAt = time.Time{}
	if env.Version == 0 {
		env.Version = envelope.Version
	}
}

// replayQueue returns the queue the replay goes to: the record's, else the envelope's,
// else the client's default; it must be a job queue.
func (c *Client) replayQueue(deadID string, rec *record.DeadLetter, env *envelope.Envelope) (string, error) {
	queue := rec.Queue
	if queue == "" {
		queue = env.Queue
	}
	if queue == "" {
		queue = c.opts.Queue
	}
	if p := c.queueProblem(queue); p != "" {
		return "", fmt.Errorf("nightshift: replay %s: the dead letter's queue %s", deadID, p)
	}
	return queue, nil
}

// requeue encodes env, takes its dedupe key and puts it on queue, returning the message
// id and the message's size.
func (c *Client) requeue(ctx context.Context, deadID string, env *envelope.Envelope, queue string) (string, int, error) {
	body, err := env.Encode()
	if err != nil {
		return "", 0, fmt.Errorf("nightshift: replay %s: %w", deadID, err)
	}
	if env.DedupeKey != "" {
		if err := acquireUnique(ctx, c.store, env, c.opts.Now()); err != nil {
			return "", 0, fmt.Errorf("nightshift: replay %s: %w", deadID, err)
		}
	}
	msgID, err := c.store.Enqueue(ctx, queue, body, 0, 0)
	if err != nil {
		return "", 0, fmt.Errorf("nightshift: replay %s: %w", deadID, err)
	}
	return msgID, len(body), nil
}

// recordReplay counts the replay in the dead-letter record, rereading it on a conflicting
// write (up to 10 times).
func (c *Client) recordReplay(ctx context.Context, deadID string, rec *record.DeadLetter, etag storage.ETag, life int, now time.Time, msgID string) error {
	var err error
	for try := 0; ; try++ {
		rec.Replays = max(rec.Replays, life)
		rec.ReplayedAt = now
		if _, err = c.store.PutDeadLetter(ctx, rec, etag); err == nil {
			return nil
		}
		if !storage.IsConflict(err) || try >= 10 {
			return fmt.Errorf("nightshift: replay %s: enqueued (message %s, life %d) but the dead-letter record could not be updated: %w", deadID, msgID, life, err)
		}
		if rec, etag, err = c.store.GetDeadLetter(ctx, deadID); err != nil {
			return fmt.Errorf("nightshift: replay %s: %w", deadID, err)
		}
	}
}

// markReplayQueued sets the job's status to queued for the new life, unless the status
// already records something newer.
func (c *Client) markReplayQueued(ctx context.Context, env *envelope.Envelope, queue string, life int) error {
	_, _, err := c.store.UpdateStatus(ctx, env.JobID, record.Replayed(env, queue).Apply)
	return err
}

// QueueDepth is the approximate number of messages on a job queue and its poison queue.
type QueueDepth struct {
	Queue        string `json:"queue"`
	Messages     int    `json:"messages"`
	PoisonQueue  string `json:"poison_queue"`
	PoisonMsgs   int    `json:"poison_messages"`
	QueueMissing bool   `json:"queue_missing,omitempty"`
}

// QueueDepths returns the approximate message counts (visible and invisible, as the
// service reports them) of the client's queue, the priority queues (jobs-high, jobs-low),
// ClientOptions.ExtraQueues, and their poison queues, in that order. A queue that does not
// exist counts 0 and is marked missing.
func (c *Client) QueueDepths(ctx context.Context) ([]QueueDepth, error) {
	queues := append([]string{c.opts.Queue}, c.store.Layout.JobQueues()...)
	queues = append(queues, c.opts.ExtraQueues...)
	var out []QueueDepth
	seen := map[string]bool{}
	for _, q := range queues {
		if seen[q] {
			continue
		}
		seen[q] = true
		d := QueueDepth{Queue: q, PoisonQueue: c.store.Layout.PoisonQueue(q)}
		n, missing, err := c.count(ctx, q)
		if err != nil {
			return nil, err
		}
		d.Messages, d.QueueMissing = n, missing
		if d.PoisonMsgs, _, err = c.count(ctx, d.PoisonQueue); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func (c *Client) count(ctx context.Context, queue string) (int, bool, error) {
	n, err := c.store.Store().Count(ctx, queue)
	if err != nil {
		if storage.IsNotFound(err) {
			return 0, true, nil
		}
		return 0, false, fmt.Errorf("nightshift: properties of queue %s: %w", queue, err)
	}
	return n, false, nil
}

// queueProblem says why jobs may not be put on queue ("" when they may): only the
// layout's job queues, the client's default queue and ClientOptions.ExtraQueues are job
// queues. The problem names the rule, not the app's queues (API callers see it).
func (c *Client) queueProblem(queue string) string {
	if p := storage.ValidQueueName(queue); p != "" {
		return fmt.Sprintf("%q %s", queue, p)
	}
	if slices.Contains(c.store.Layout.JobQueues(), queue) || queue == c.opts.Queue || slices.Contains(c.opts.ExtraQueues, queue) {
		if !strings.HasSuffix(queue, storage.PoisonSuffix) {
			return ""
		}
	}
	return fmt.Sprintf("%q is not one of this app's job queues (use priority, or a queue the app lists in ClientOptions.ExtraQueues; never a poison queue)", queue)
}
