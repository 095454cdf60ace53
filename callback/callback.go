// Package callback tells other systems that a job ended: an HTTPS webhook signed as
// Standard Webhooks specify (https://www.standardwebhooks.com), or a message on a queue.
// A job asks for one with the envelope's callback field (EnqueueOptions.CallbackURL /
// CallbackQueue, or "callback" in POST /api/jobs).
//
// Delivery is itself a job of kind "nightshift.callback": when a job with a callback
// succeeds or is dead, the handler's OnJobEnd hook enqueues a delivery job, so delivery
// gets retries with backoff, a status record and dead letters like any job. The outcome
// of the delivery is recorded in the original job's status (record.Status.Callback).
//
// Webhook requests carry
//
//	webhook-id: <delivery job id, the same on every retry of one delivery>
//	webhook-timestamp: <unix seconds>
//	webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")> [v1,… per further secret]
//
// signed with the secrets of the URL's origin from the NIGHTSHIFT_WEBHOOK_SECRETS app
// setting (ParseWebhookSecrets); an origin without a secret gets no webhook. Receivers
// check them with Verify (or any Standard Webhooks library). Targets in private,
// loopback and link-local ranges are refused (SSRF protection) unless
// NIGHTSHIFT_WEBHOOK_ALLOW_PRIVATE=true, and plain http unless
// NIGHTSHIFT_WEBHOOK_ALLOW_HTTP=true. Queue callbacks may only name the queues listed in
// NIGHTSHIFT_CALLBACK_QUEUES, and those queues are never created here.
package callback

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/netguard"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// App settings read by FromEnv.
const (
	// SettingWebhookSecrets maps webhook destinations (URL origins) to the secrets that
	// sign what is sent there: a JSON object, see ParseWebhookSecrets. A webhook to an
	// origin without a secret is refused; queue callbacks do not need one.
	SettingWebhookSecrets = "NIGHTSHIFT_WEBHOOK_SECRETS"
	// SettingLegacyWebhookSecret is the app-wide secret of earlier versions. It is no
	// longer read: FromEnv refuses to start while it is set, with the migration to
	// SettingWebhookSecrets in the error.
	SettingLegacyWebhookSecret = "NIGHTSHIFT_WEBHOOK_SECRET"
	// SettingCallbackQueues lists the queues (full names, comma-separated) a queue
	// callback may name; see ParseCallbackQueues. Empty: no queue callbacks.
	SettingCallbackQueues = "NIGHTSHIFT_CALLBACK_QUEUES"
	// SettingWebhookAllowPrivate ("true") allows webhook targets in private, loopback and
	// link-local ranges.
	SettingWebhookAllowPrivate = "NIGHTSHIFT_WEBHOOK_ALLOW_PRIVATE"
	// SettingWebhookAllowHTTP ("true") allows plain http webhook targets.
	SettingWebhookAllowHTTP = "NIGHTSHIFT_WEBHOOK_ALLOW_HTTP"
)

// Kind is the job kind that delivers callbacks.
const Kind = "nightshift.callback"

// Events.
const (
	EventSucceeded = "job.succeeded"
	EventDead      = "job.dead"
	// EventWorkflowSucceeded, EventWorkflowFailed and EventWorkflowCancelled report a
	// workflow's end (nightshift.WorkflowParams.CallbackURL / CallbackQueue).
	EventWorkflowSucceeded = "workflow.succeeded"
	EventWorkflowFailed    = "workflow.failed"
	EventWorkflowCancelled = "workflow.cancelled"
)

// MaxBodyBytes bounds a callback body, so that the queue variant fits in a queue message.
const MaxBodyBytes = envelope.MaxMessageBytes - 1024

// Options configure delivery. The zero value refuses private targets and plain http, has
// no secrets (webhooks then fail) and allows no callback queue.
type Options struct {
	// Secrets sign webhooks, per destination origin.
	Secrets *WebhookSecrets
	// Queues are the queues (full names) a queue callback may name. Register refuses
	// nightshift's own job and poison queues here.
	Queues []string
	// AllowPrivate allows targets in private, loopback and link-local ranges.
	AllowPrivate bool
	// AllowHTTP allows plain http targets.
	AllowHTTP bool
	// Timeout bounds one webhook request; default 10 s.
	Timeout time.Duration
	// MaxAttempts is how many times a delivery is tried; default 8 (about 1.5 hours with
	// the default backoff).
	MaxAttempts int
	// Backoff spaces the attempts; default 5 s, ×3 each time, at most 1 hour, ±20 %.
	Backoff nightshift.BackoffPolicy
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// FromEnv reads the options from app settings. A malformed NIGHTSHIFT_WEBHOOK_SECRETS or
// NIGHTSHIFT_CALLBACK_QUEUES, or the old NIGHTSHIFT_WEBHOOK_SECRET still set, is an error
// (*storage.SettingError) that names the setting and never shows a secret.
func FromEnv(getenv func(string) string) (Options, error) {
	if getenv(SettingLegacyWebhookSecret) != "" {
		return Options{}, &storage.SettingError{Setting: SettingLegacyWebhookSecret, Problem: fmt.Sprintf(
			"is no longer read: webhooks are now signed per destination. Move the secret to %s as "+
				`{"https://receiver.example": "whsec_<base64 of 24–64 random bytes>"}`+
				" (one entry per receiver origin; receivers verify Standard Webhooks signatures) and remove %s",
			SettingWebhookSecrets, SettingLegacyWebhookSecret)}
	}
	secrets, err := ParseWebhookSecrets(getenv(SettingWebhookSecrets))
	if err != nil {
		return Options{}, err
	}
	queues, err := ParseCallbackQueues(getenv(SettingCallbackQueues))
	if err != nil {
		return Options{}, err
	}
	return Options{
		Secrets:      secrets,
		Queues:       queues,
		AllowPrivate: strings.EqualFold(strings.TrimSpace(getenv(SettingWebhookAllowPrivate)), "true"),
		AllowHTTP:    strings.EqualFold(strings.TrimSpace(getenv(SettingWebhookAllowHTTP)), "true"),
	}, nil
}

// CheckCallback says why a job may not ask for cb ("" problem: nil), for the enqueue
// side: nightshift.ClientOptions.CheckCallback (the HTTP API's client included). A
// webhook needs a secret for its URL's origin; a queue must be one of Queues. The
// problem names the caller's own target and the setting, never what is configured.
func (o Options) CheckCallback(cb envelope.Callback) *envelope.FieldError {
	if cb.URL != "" {
		if p := o.webhookProblem(cb.URL); p != "" {
			return &envelope.FieldError{Field: "callback.url", Problem: p}
		}
	}
	if cb.Queue != "" && !slices.Contains(o.Queues, cb.Queue) {
		return &envelope.FieldError{Field: "callback.queue", Problem: fmt.Sprintf("%q is not a queue callbacks may use (allowed queues are set by the operator in %s)", envelope.Truncate(cb.Queue, 64), SettingCallbackQueues)}
	}
	return nil
}

func (o Options) webhookProblem(rawURL string) string {
	origin, err := Origin(rawURL)
	if err != nil {
		return "is not an absolute http(s) URL"
	}
	if _, err := o.Secrets.For(rawURL); err != nil {
		return fmt.Sprintf("has origin %s, which has no webhook secret (the operator sets one per origin in %s); webhooks are only sent signed", origin, SettingWebhookSecrets)
	}
	return ""
}

// Args are the arguments of a delivery job.
type Args struct {
	// JobID is the job whose end is reported (empty for a workflow's end).
	JobID string `json:"job_id"`
	// WorkflowID is the workflow whose end is reported (empty for a job's end).
	WorkflowID string `json:"workflow_id,omitempty"`
	// Replay is the life of the job that ended.
	Replay int `json:"replay,omitempty"`
	// Event is EventSucceeded or EventDead, or a workflow event.
	Event string `json:"event"`
	// URL or Queue is the target.
	URL   string `json:"url,omitempty"`
	Queue string `json:"queue,omitempty"`
}

// Kind implements nightshift.JobArgs.
func (Args) Kind() string { return Kind }

// Payload is the JSON body of a webhook and of a callback queue message.
type Payload struct {
	// Event is "job.succeeded" or "job.dead", or for a workflow "workflow.succeeded",
	// "workflow.failed" or "workflow.cancelled".
	Event string `json:"event"`
	// JobID and Kind identify the job (empty for a workflow's end).
	JobID string `json:"job_id,omitempty"`
	Kind  string `json:"kind,omitempty"`
	// WorkflowID identifies the workflow of a workflow event.
	WorkflowID string `json:"workflow_id,omitempty"`
	// Replay is the job's life (0 unless replayed from a dead letter).
	Replay int `json:"replay,omitempty"`
	// DeliveryID identifies this notification (the delivery job's id); the same on every
	// retry of it, so receivers can drop duplicates.
	DeliveryID string `json:"delivery_id"`
	// SentAt is when this attempt was sent.
	SentAt time.Time `json:"sent_at"`
	// Status is the job's status record as read when this attempt was sent, without its
	// log lines (and without an inline result when the body would be too large: then
	// ResultOmitted is true).
	Status        *record.Status `json:"status,omitempty"`
	ResultOmitted bool           `json:"result_omitted,omitempty"`
	// Workflow is the workflow record (every step's state) of a workflow event, as read
	// when this attempt was sent.
	Workflow *record.Workflow `json:"workflow,omitempty"`
}

// Register adds the delivery kind to reg.
func Register(reg *nightshift.Registry, store *storage.Clients, opts Options) error {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 8
	}
	if opts.Backoff == nil {
		opts.Backoff = nightshift.ExponentialBackoff{Base: 5 * time.Second, Factor: 3, Max: time.Hour, Jitter: 0.2}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := checkQueues(opts.Queues, store.Layout); err != nil {
		return err
	}
	d := &deliverer{store: store, opts: opts, http: netguard.Client(opts.AllowPrivate, opts.Timeout)}
	// Webhooks are not redirected: a redirect could lead to an address the target check
	// never saw in its URL (the dialer still checks the address).
	d.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return nightshift.AddWorkerSafely[Args](reg, d, &nightshift.WorkerOptions{
		Timeout: opts.Timeout + 30*time.Second, MaxAttempts: opts.MaxAttempts, Backoff: opts.Backoff,
	})
}

// OnJobEnd returns the hook for nightshift.HandlerOptions.OnJobEnd: for a job that asked
// for a callback and succeeded or is dead, it enqueues a delivery job. The delivery job's
// id is derived from the job id, its life and the event, so a repeated call enqueues a
// duplicate that the handler skips.
func OnJobEnd(store *storage.Clients) func(ctx context.Context, env *envelope.Envelope, st *record.Status) error {
	client := nightshift.NewClient(store, nil)
	return func(ctx context.Context, env *envelope.Envelope, st *record.Status) error {
		if env == nil || env.Callback == nil || st == nil {
			return nil
		}
		var event string
		switch st.State {
		case record.StateSucceeded:
			event = EventSucceeded
		case record.StateDead:
			event = EventDead
		default:
			return nil
		}
		if env.Kind == Kind {
			return nil // never notify about a notification
		}
		args := Args{JobID: env.JobID, Replay: env.Replay, Event: event, URL: env.Callback.URL, Queue: env.Callback.Queue}
		id := DeliveryID(env.EnqueuedAt, env.JobID, env.Replay, event)
		_, err := client.Enqueue(ctx, args, &nightshift.EnqueueOptions{JobID: id, Meta: map[string]string{"for_job": env.JobID}})
		if errors.Is(err, nightshift.ErrJobExists) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("callback for job %s: %w", env.JobID, err)
		}
		return nil
	}
}

// OnWorkflowEnd returns the hook for nightshift.HandlerOptions.OnWorkflowEnd: for an
// ended workflow that asked for a callback, it enqueues a delivery job whose id is
// derived from the workflow id and its end (WorkflowDeliveryID), so the repeated calls
// (a redelivery of the last step's end, the ends of steps cancelled with the workflow)
// are refused as duplicates and the callback fires once.
func OnWorkflowEnd(store *storage.Clients) func(ctx context.Context, w *record.Workflow) error {
	client := nightshift.NewClient(store, nil)
	return func(ctx context.Context, w *record.Workflow) error {
		if w == nil || w.Callback == nil {
			return nil
		}
		var event string
		switch w.State {
		case record.WorkflowSucceeded:
			event = EventWorkflowSucceeded
		case record.WorkflowFailed:
			event = EventWorkflowFailed
		case record.WorkflowCancelled:
			event = EventWorkflowCancelled
		default:
			return nil
		}
		args := Args{WorkflowID: w.WorkflowID, Event: event, URL: w.Callback.URL, Queue: w.Callback.Queue}
		id := WorkflowDeliveryID(w.CreatedAt, w.WorkflowID, event)
		_, err := client.Enqueue(ctx, args, &nightshift.EnqueueOptions{JobID: id, Meta: map[string]string{"for_workflow": w.WorkflowID}})
		if err != nil && !errors.Is(err, nightshift.ErrJobExists) {
			return fmt.Errorf("callback for workflow %s: %w", w.WorkflowID, err)
		}
		return nil
	}
}

// WorkflowDeliveryID is the id of the delivery job for the end of a workflow created at
// createdAt. A workflow ends once, so event is fixed for a workflow id.
func WorkflowDeliveryID(createdAt time.Time, workflowID, event string) string {
	return envelope.DerivedJobID(createdAt, fmt.Sprintf("callback/workflow/%s/%s", workflowID, event))
}

// DeliveryID is the id of the delivery job for one end of one life of a job.
func DeliveryID(enqueuedAt time.Time, jobID string, replay int, event string) string {
	return envelope.DerivedJobID(enqueuedAt, fmt.Sprintf("callback/%s/%d/%s", jobID, replay, event))
}

type deliverer struct {
	store *storage.Clients
	opts  Options
	http  *http.Client
}

// Work delivers one callback and records the outcome in the job's status.
func (d *deliverer) Work(ctx context.Context, job *nightshift.Job[Args]) (any, error) {
	a := job.Args
	body, omitted, err := d.body(ctx, job.ID, a)
	if err != nil {
		return nil, err
	}
	out := &record.CallbackOutcome{Event: a.Event, Attempts: job.Attempt}
	var status int
	var derr error
	switch {
	case a.URL != "":
		out.Target = redact(a.URL)
		status, derr = d.webhook(ctx, job, a, body)
		out.LastStatus = status
	case a.Queue != "":
		out.Target = "queue:" + a.Queue
		derr = d.enqueue(ctx, a.Queue, body)
	default:
		derr = nightshift.Permanentf("callback: no url or queue")
	}
	if derr == nil {
		out.Delivered = true
		out.DeliveredAt = d.opts.Now().UTC()
	} else {
		out.LastError = envelope.Truncate(derr.Error(), 512)
	}
	// A workflow's end has no job status: its outcome is the delivery job's own status.
	if a.JobID != "" {
		if err := d.record(ctx, a, out); err != nil && derr == nil {
			// Delivered, but not recorded: do not deliver again just to record it.
			job.Logger.Warn("callback delivered but its outcome could not be recorded", "job_id", a.JobID, "error", err.Error())
		}
	}
	if derr != nil {
		if !nightshift.IsPermanent(derr) && job.Attempt >= job.MaxAttempts {
			job.Logger.Warn("callback delivery gives up", "job_id", a.JobID, "target", out.Target)
		}
		return nil, derr
	}
	job.Logger.Info("callback delivered", "job_id", a.JobID, "event", a.Event, "target", out.Target, "status", status)
	return map[string]any{"delivered": true, "target": out.Target, "status": status, "result_omitted": omitted}, nil
}

// body reads what the delivery reports (the job's status, or the workflow record) and
// builds the body; a missing record is a permanent failure.
func (d *deliverer) body(ctx context.Context, deliveryID string, a Args) ([]byte, bool, error) {
	if a.WorkflowID != "" {
		w, _, err := d.store.GetWorkflow(ctx, a.WorkflowID)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, false, nightshift.Permanentf("callback: workflow %s has no record", a.WorkflowID)
		}
		if err != nil {
			return nil, false, err
		}
		b, err := json.Marshal(Payload{Event: a.Event, WorkflowID: a.WorkflowID, DeliveryID: deliveryID, SentAt: d.opts.Now().UTC(), Workflow: w})
		if err == nil && len(b) > MaxBodyBytes {
			err = fmt.Errorf("callback: workflow payload is %d bytes; at most %d", len(b), MaxBodyBytes)
		}
		if err != nil {
			return nil, false, nightshift.Permanent(err)
		}
		return b, false, nil
	}
	st, _, err := d.store.GetStatus(ctx, a.JobID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, false, nightshift.Permanentf("callback: job %s has no status record", a.JobID)
		}
		return nil, false, err
	}
	body, omitted, err := d.payload(deliveryID, a, st)
	if err != nil {
		return nil, false, nightshift.Permanent(err)
	}
	return body, omitted, nil
}

// payload builds the body: the status without logs or stacks, and without the inline
// result if the body would not fit in a queue message.
func (d *deliverer) payload(deliveryID string, a Args, st *record.Status) ([]byte, bool, error) {
	s := st.WithoutStacks()
	s.Logs, s.LogsDropped, s.Callback = nil, 0, nil
	p := Payload{Event: a.Event, JobID: a.JobID, Kind: st.Kind, Replay: a.Replay, DeliveryID: deliveryID, SentAt: d.opts.Now().UTC(), Status: s}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, false, fmt.Errorf("callback: encode payload: %w", err)
	}
	if len(b) <= MaxBodyBytes {
		return b, false, nil
	}
	if s.Result != nil {
		r := *s.Result
		r.JSON, r.Bytes = nil, nil
		s.Result = &r
	}
	s.Errors = nil
	p.ResultOmitted = true
	if b, err = json.Marshal(p); err != nil {
		return nil, false, fmt.Errorf("callback: encode payload: %w", err)
	}
	if len(b) > MaxBodyBytes {
		return nil, false, fmt.Errorf("callback: payload is %d bytes even without the result; at most %d", len(b), MaxBodyBytes)
	}
	return b, true, nil
}

// checkTarget says why a webhook URL may not be called ("" when it may). Addresses are
// checked again at dial time (netguard), which also catches names resolving inside.
func (d *deliverer) checkTarget(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Sprintf("%q is not an absolute URL", redact(raw))
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !d.opts.AllowHTTP {
			return fmt.Sprintf("%s is plain http; webhooks go over https (set %s=true to allow http)", redact(raw), SettingWebhookAllowHTTP)
		}
	default:
		return fmt.Sprintf("scheme %q is not https", u.Scheme)
	}
	if u.User != nil {
		return "the URL carries user:password"
	}
	return ""
}

func (d *deliverer) webhook(ctx context.Context, job *nightshift.Job[Args], a Args, body []byte) (int, error) {
	if p := d.checkTarget(a.URL); p != "" {
		return 0, nightshift.Permanentf("callback: webhook target refused: %s", p)
	}
	secrets, err := d.opts.Secrets.For(a.URL)
	if err != nil {
		return 0, nightshift.Permanent(err)
	}
	// The webhook id is the delivery job's id: derived from the job id, its life and the
	// event (DeliveryID), so every retry of this delivery carries the same id.
	id := job.ID
	now := d.opts.Now()
	sig, err := Sign(secrets, id, now, body)
	if err != nil {
		return 0, nightshift.Permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL, bytes.NewReader(body))
	if err != nil {
		return 0, nightshift.Permanentf("callback: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "nightshift-webhook/1")
	req.Header.Set(HeaderWebhookID, id)
	req.Header.Set(HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderWebhookSignature, sig)
	req.Header.Set(HeaderEvent, a.Event)
	resp, err := d.http.Do(req)
	if err != nil {
		var re *netguard.RefusedError
		if errors.As(err, &re) && re.Always {
			return 0, nightshift.Permanent(fmt.Errorf("callback: webhook target refused: %w (never allowed)", re))
		}
		if errors.As(err, &re) {
			return 0, nightshift.Permanent(fmt.Errorf("callback: webhook target refused: %w (set %s=true to allow)", re, SettingWebhookAllowPrivate))
		}
		return 0, fmt.Errorf("callback: POST %s: %w", redact(a.URL), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64*1024))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return resp.StatusCode, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		return resp.StatusCode, fmt.Errorf("callback: %s answered %s (will retry)", redact(a.URL), resp.Status)
	default:
		// 3xx and other 4xx: the receiver refuses this request; repeating it will not help.
		return resp.StatusCode, nightshift.Permanentf("callback: %s answered %s (not retried: fix the receiver and replay the delivery job)", redact(a.URL), resp.Status)
	}
}

func (d *deliverer) enqueue(ctx context.Context, queue string, body []byte) error {
	if p := storage.ValidQueueName(queue); p != "" {
		return nightshift.Permanentf("callback: queue %q %s", envelope.Truncate(queue, 64), p)
	}
	if !slices.Contains(d.opts.Queues, queue) {
		return nightshift.Permanentf("callback: queue %q is not a callback queue (%s)", queue, SettingCallbackQueues)
	}
	// Never created here: a missing queue is the operator's to create, and retried
	// meanwhile.
	_, err := d.store.Enqueue(ctx, queue, body, 0, 0)
	if err != nil && storage.IsNotFound(err) {
		return fmt.Errorf("callback: queue %s does not exist; create it (nightshift never creates callback queues; will retry)", queue)
	}
	if err != nil {
		return fmt.Errorf("callback: enqueue to %s: %w", queue, err)
	}
	return nil
}

// record writes the delivery outcome into the job's status, unless the job moved on to
// another life meanwhile.
func (d *deliverer) record(ctx context.Context, a Args, out *record.CallbackOutcome) error {
	_, _, err := d.store.UpdateStatus(ctx, a.JobID, record.CallbackRecorded(a.Replay, out).Apply)
	return err
}

// redact drops credentials and the query string from a URL for logs and records.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return envelope.Truncate(raw, 64)
	}
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}
