// Package httpapi is nightshift's HTTP API, served as Azure Functions httpTrigger functions
// by the custom handler: enqueue a job from anything that speaks HTTP and follow it to its
// result, in the style of Durable Functions' asynchronous HTTP API (202 Accepted with a
// status URL).
//
//	POST /api/jobs               → 202, Location: …/api/jobs/{id}, {"job_id", "status_url", …}
//	GET  /api/jobs?state=&kind=… → 200, a page of jobs matching the filters (list.go)
//	GET  /api/jobs/{id}          → 200, the job's status (result inline, or a short-lived link)
//	POST /api/jobs/{id}/cancel   → 200, the cancelled status; 409 when the job already ended
//	POST /api/batches            → 202, Location: …/api/batches/{id} (fan-out with a finalizer)
//	GET  /api/batches/{id}       → 200, the batch's live counts and its finalizer's state
//	POST /api/dead/replay        → 200, a group replay of dead letters (counts, outcomes, next)
//
// Errors are application/problem+json (RFC 9457) with an "errors" array naming each bad
// field. The functions use authLevel "function": callers send the x-functions-key header.
// host.json sets enableForwardingHttpRequest to false, so the host sends each request
// JSON-wrapped (docs/host-contract.md §1.7): Data.req is the request as an object, and
// the response goes in Outputs.res. docs/http-api.md documents the API.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Function names: each is a folder in functions/ with its function.json (httpTrigger
// binding "req", http output binding "res").
const (
	// FunctionEnqueue serves POST /api/jobs.
	FunctionEnqueue = "JobsAPIEnqueue"
	// FunctionStatus serves GET /api/jobs/{id}.
	FunctionStatus = "JobsAPIStatus"
	// FunctionCancel serves POST /api/jobs/{id}/cancel.
	FunctionCancel = "JobsAPICancel"
	// FunctionBatchStart serves POST /api/batches.
	FunctionBatchStart = "BatchesAPIStart"
	// FunctionBatchStatus serves GET /api/batches/{id}.
	FunctionBatchStatus = "BatchesAPIStatus"
)

// Binding names in the functions' function.json.
const (
	RequestBinding  = "req"
	ResponseBinding = "res"
)

// MaxRequestBytes bounds a request body: a queue message's 64 KiB plus room for the
// request's own field names.
const MaxRequestBytes = envelope.MaxMessageBytes + 8*1024

// ReservedKindPrefix starts the kinds of nightshift's internal jobs (such as callback
// delivery); the HTTP API does not enqueue them, so an API caller cannot, for example,
// make the app send signed webhooks to a URL of its choice.
const ReservedKindPrefix = "nightshift."

// ProblemTypeBase prefixes the "type" URI of every problem document.
const ProblemTypeBase = "urn:nightshift:problem:"

// Options configure the API. The zero value is fine.
type Options struct {
	// ResultLinkTTL is how long a result link stays valid; default 15 minutes. With
	// identity-based storage (user delegation links) it may be at most 5 hours.
	ResultLinkTTL time.Duration
	// Kinds, when set, lists the kinds the handler runs: POST /api/jobs refuses others
	// (otherwise an unknown kind is accepted and ends in the dead letters).
	Kinds func() []string
	// Logger receives one line per request; default slog.Default().
	Logger *slog.Logger
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Tracer, when set, gives each request a server span (trace.go); Feature sets the
	// app's observer when it is a RequestTracer.
	Tracer RequestTracer
}

// API serves the HTTP API functions.
type API struct {
	client *nightshift.Client
	store  *storage.Clients
	// links signs result links; nil when the storage driver has no URLs (the memory
	// driver), and then results stored as blobs are answered inline.
	links store.Linker
	opts  Options
}

// New returns the API on a client.
func New(client *nightshift.Client, opts *Options) *API {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if o.ResultLinkTTL <= 0 {
		o.ResultLinkTTL = 15 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cs := client.Store()
	// One driver for the API's lifetime, so a user delegation key is reused across links.
	links, _ := cs.Store().(store.Linker)
	return &API{client: client, store: cs, links: links, opts: o}
}

// Request is the JSON-wrapped HTTP request the host puts in Data.req (§1.7).
type Request struct {
	URL     string                     `json:"Url"`
	Method  string                     `json:"Method"`
	Query   map[string]string          `json:"Query"`
	Headers map[string]json.RawMessage `json:"Headers"`
	Params  map[string]string          `json:"Params"`
	Body    json.RawMessage            `json:"Body"`
}

// Header returns the first value of a header (names compared case-insensitively; values
// may be a string or an array of strings).
func (r *Request) Header(name string) string {
	for k, v := range r.Headers {
		if !strings.EqualFold(k, name) {
			continue
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
		var ss []string
		if json.Unmarshal(v, &ss) == nil && len(ss) > 0 {
			return ss[0]
		}
	}
	return ""
}

// BodyBytes returns the request body: the host sends it as a string (base64 for
// octet-stream and multipart bodies, which this API does not accept).
func (r *Request) BodyBytes() []byte {
	if len(r.Body) == 0 || string(r.Body) == "null" {
		return nil
	}
	var s string
	if json.Unmarshal(r.Body, &s) == nil {
		return []byte(s)
	}
	return r.Body
}

// Response is the http output binding value (§1.7): statusCode, headers, body.
type Response struct {
	StatusCode string            `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Body       string            `json:"body"`
}

// FieldProblem names one bad field of a request.
type FieldProblem struct {
	Field   string `json:"field"`
	Problem string `json:"problem"`
}

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type     string         `json:"type"`
	Title    string         `json:"title"`
	Status   int            `json:"status"`
	Detail   string         `json:"detail,omitempty"`
	Instance string         `json:"instance,omitempty"`
	Errors   []FieldProblem `json:"errors,omitempty"`
}

func problem(status int, kind, title, detail string, errs ...FieldProblem) *Problem {
	return &Problem{Type: ProblemTypeBase + kind, Title: title, Status: status, Detail: detail, Errors: errs}
}

// decodeRequest reads Data.req: an object, or (tolerated) a JSON string holding one.
func decodeRequest(inv *nightshift.Invocation) (*Request, error) {
	raw, ok := inv.Request.Data[RequestBinding]
	if !ok {
		return nil, &hostproto.RequestError{Problem: fmt.Sprintf("Data has no %q binding; the function's httpTrigger binding must be named %q", RequestBinding, RequestBinding)}
	}
	trimmed := strings.TrimSpace(string(raw))
	if strings.HasPrefix(trimmed, `"`) {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, &hostproto.RequestError{Problem: "Data.req is not a request object: " + err.Error()}
		}
		raw = json.RawMessage(s)
	}
	var r Request
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, &hostproto.RequestError{Problem: "Data.req is not a request object {Url, Method, Query, Headers, Params, Body}: " + err.Error()}
	}
	return &r, nil
}

// param returns a route parameter from Params, else from the invocation Metadata (the
// host puts route data there too, double-encoded).
func param(inv *nightshift.Invocation, r *Request, name string) string {
	if v := r.Params[name]; v != "" {
		return v
	}
	return inv.Request.MetaString(name)
}

// respond wraps a status and a JSON body as the invocation response.
func respond(status int, headers map[string]string, body any, logLine string) *hostproto.InvokeResponse {
	b, err := json.Marshal(body)
	if err != nil {
		b = []byte(`{"title":"response encoding failed"}`)
		status = http.StatusInternalServerError
	}
	h := map[string]string{"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"}
	if p, ok := body.(*Problem); ok {
		h["Content-Type"] = "application/problem+json"
		p.Status = status
	}
	for k, v := range headers {
		h[k] = v
	}
	return &hostproto.InvokeResponse{
		Outputs: map[string]any{ResponseBinding: Response{StatusCode: strconv.Itoa(status), Headers: h, Body: string(b)}},
		Logs:    []string{logLine},
	}
}

func (a *API) fail(r *Request, p *Problem) *hostproto.InvokeResponse {
	if r != nil {
		if u, err := url.Parse(r.URL); err == nil {
			p.Instance = u.Path
		}
	}
	method := ""
	if r != nil {
		method = r.Method
	}
	a.opts.Logger.Info("http api request refused", "method", method, "status", p.Status, "type", p.Type, "detail", p.Detail)
	return respond(p.Status, nil, p, fmt.Sprintf("%s: %d %s: %s", method, p.Status, p.Title, p.Detail))
}

// collectionURL returns the absolute URL of a collection ("jobs", "batches") from the
// request URL: its path up to and including the last segment named seg.
func collectionURL(r *Request, seg string) (string, error) {
	u, err := url.Parse(r.URL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("request Url %q is not absolute", r.URL)
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	idx := -1
	for i, s := range segs {
		if strings.EqualFold(s, seg) {
			idx = i
		}
	}
	if idx < 0 {
		return "", fmt.Errorf("request Url %q has no /%s segment", r.URL, seg)
	}
	base := url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/" + strings.Join(segs[:idx+1], "/")}
	return base.String(), nil
}

// siblingURL replaces the last path segment of a collection URL: …/api/batches → …/api/jobs.
func siblingURL(base, seg string) (string, error) {
	i := strings.LastIndex(base, "/")
	if i < 0 {
		return "", fmt.Errorf("collection URL %q has no path", base)
	}
	return base[:i+1] + seg, nil
}

func statusURL(base, id string) string { return base + "/" + url.PathEscape(id) }

// checkMethod refuses other methods than want (the function.json methods list should
// already have done so).
func checkMethod(r *Request, want string) *Problem {
	if !strings.EqualFold(r.Method, want) {
		return problem(http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed", fmt.Sprintf("use %s, not %s", want, r.Method))
	}
	return nil
}

// postRequest is the common start of the POST endpoints with a JSON body: decode the
// invocation, check the method and content type, and bound the body (hint says what to do
// instead of sending more than limit bytes). A non-nil fail is the problem answer to send
// as it is; a non-nil err fails the invocation.
func (a *API) postRequest(inv *nightshift.Invocation, limit int, hint string) (r *Request, body []byte, fail *hostproto.InvokeResponse, err error) {
	if r, err = decodeRequest(inv); err != nil {
		return nil, nil, nil, err
	}
	if p := checkMethod(r, http.MethodPost); p != nil {
		return r, nil, a.fail(r, p), nil
	}
	if ct := r.Header("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return r, nil, a.fail(r, problem(http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type",
				fmt.Sprintf("the body must be application/json, not %s", ct))), nil
		}
	}
	body = r.BodyBytes()
	if len(body) > limit {
		return r, nil, a.fail(r, problem(http.StatusRequestEntityTooLarge, "too-large", "Request too large",
			fmt.Sprintf("the body is %d bytes; at most %d (%s)", len(body), limit, hint))), nil
	}
	return r, body, nil, nil
}

// EnqueueRequest is the body of POST /api/jobs.
type EnqueueRequest struct {
	Kind           string             `json:"kind"`
	Args           json.RawMessage    `json:"args,omitempty"`
	JobID          string             `json:"job_id,omitempty"`
	Queue          string             `json:"queue,omitempty"`
	Priority       string             `json:"priority,omitempty"`
	RunAt          time.Time          `json:"run_at,omitzero"`
	RunInSeconds   float64            `json:"run_in_seconds,omitempty"`
	TimeoutSeconds float64            `json:"timeout_seconds,omitempty"`
	MaxAttempts    int                `json:"max_attempts,omitempty"`
	DedupeKey      string             `json:"dedupe_key,omitempty"`
	Callback       *envelope.Callback `json:"callback,omitempty"`
	Meta           map[string]string  `json:"meta,omitempty"`
}

// EnqueueResponse is the 202 body of POST /api/jobs.
type EnqueueResponse struct {
	JobID      string       `json:"job_id"`
	Kind       string       `json:"kind"`
	State      record.State `json:"state"`
	StatusURL  string       `json:"status_url"`
	CancelURL  string       `json:"cancel_url"`
	Queue      string       `json:"queue"`
	EnqueuedAt time.Time    `json:"enqueued_at"`
	RunAt      time.Time    `json:"run_at,omitzero"`
}

// parseEnqueue decodes the body field by field, so that every problem names its field.
// Unknown fields are refused.
func parseEnqueue(body []byte) (*EnqueueRequest, []FieldProblem) {
	var req EnqueueRequest
	callback := func(v json.RawMessage) []FieldProblem {
		req.Callback = &envelope.Callback{}
		_, errs := decodeObject("callback", v, `{"url": …} or {"queue": …}`, fields{"url": &req.Callback.URL, "queue": &req.Callback.Queue}, nil)
		return errs
	}
	present, errs := decodeObject("", body, `{"kind": …, "args": …}`, fields{
		"kind": &req.Kind, "args": &req.Args, "job_id": &req.JobID, "queue": &req.Queue, "priority": &req.Priority,
		"run_at":          &req.RunAt,
		"run_in_seconds":  seconds("run_in_seconds", &req.RunInSeconds, float64(envelope.MaxRunInSeconds), "10 years, envelope.MaxRunInSeconds", "must be 0 or more"),
		"timeout_seconds": seconds("timeout_seconds", &req.TimeoutSeconds, envelope.MaxTimeoutSeconds, "7 days, envelope.MaxTimeoutSeconds", "must be more than 0"),
		"max_attempts":    count("max_attempts", &req.MaxAttempts, 1, envelope.MaxAttemptsLimit, "envelope.MaxAttemptsLimit"),
		"dedupe_key":      &req.DedupeKey, "callback": callback, "meta": meta("meta", &req.Meta),
	}, nil)
	if present == nil {
		return nil, errs
	}
	add := func(f, p string) { errs = append(errs, FieldProblem{Field: f, Problem: p}) }
	if !present["kind"] {
		add("kind", "is required")
	}
	errs = append(errs, checkQueueChoice(req.Priority, req.Queue)...)
	if req.RunInSeconds < 0 {
		add("run_in_seconds", "must be 0 or more")
	}
	if req.TimeoutSeconds < 0 {
		add("timeout_seconds", "must be more than 0")
	}
	if req.MaxAttempts < 0 {
		add("max_attempts", "must be 1 or more")
	}
	return &req, errs
}

func describe(err error, v json.RawMessage) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := te.Type.String()
		switch {
		case strings.HasPrefix(want, "int"), strings.HasPrefix(want, "float"):
			want = "a number"
		case want == "string":
			want = "a string"
		case strings.HasPrefix(want, "map["):
			want = "an object of strings"
		}
		return fmt.Sprintf("expected %s, got %s", want, te.Value)
	}
	var pe *time.ParseError
	if errors.As(err, &pe) || strings.Contains(err.Error(), "parsing time") {
		return fmt.Sprintf("%s is not an RFC 3339 time such as \"2026-01-02T15:04:05Z\"", envelope.Truncate(string(v), 64))
	}
	return err.Error()
}

// Enqueue serves POST /api/jobs.
func (a *API) Enqueue(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
	r, body, fail, err := a.postRequest(inv, MaxRequestBytes,
		fmt.Sprintf("a job message holds at most %d bytes — put large inputs in Blob storage and pass a reference", envelope.MaxMessageBytes))
	if fail != nil || err != nil {
		return fail, err
	}
	req, p := a.checkEnqueueRequest(body)
	if p != nil {
		return a.fail(r, p), nil
	}
	base, err := collectionURL(r, "jobs")
	if err != nil {
		return nil, &hostproto.RequestError{Problem: err.Error()}
	}
	opts, p, err := a.enqueueOptions(req)
	if p != nil || err != nil {
		if p != nil {
			return a.fail(r, p), nil
		}
		return nil, err
	}
	res, err := a.client.EnqueueRaw(withRequestTrace(ctx, r), req.Kind, req.Args, opts)
	if err != nil {
		if p := enqueueProblem(err, req); p != nil {
			return a.fail(r, p), nil
		}
		a.opts.Logger.Error("enqueue failed", "kind", req.Kind, "error", err.Error())
		return a.fail(r, problem(http.StatusServiceUnavailable, "storage-unavailable", "Storage unavailable", "the job could not be enqueued; try again")), nil
	}
	su := statusURL(base, res.JobID)
	out := EnqueueResponse{
		JobID: res.JobID, Kind: res.Kind, State: record.StateQueued, StatusURL: su, CancelURL: su + "/cancel",
		Queue: res.Queue, EnqueuedAt: res.EnqueuedAt, RunAt: res.RunAt,
	}
	a.opts.Logger.Info("job enqueued over http", "job_id", res.JobID, "kind", res.Kind)
	return respond(http.StatusAccepted, map[string]string{"Location": su, "Retry-After": "1"}, out,
		fmt.Sprintf("enqueued job %s (%s)", res.JobID, res.Kind)), nil
}

// invalidJob is the 400 problem of a job request with one field problem.
func invalidJob(fp FieldProblem) *Problem {
	return problem(http.StatusBadRequest, "invalid-request", "Invalid job request", fp.Field+" "+fp.Problem, fp)
}

// checkEnqueueRequest parses the body of POST /api/jobs and checks its kind: not empty,
// not reserved, and (when API options list kinds) one the app runs. A non-nil problem is
// the answer to send.
func (a *API) checkEnqueueRequest(body []byte) (*EnqueueRequest, *Problem) {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil, problem(http.StatusBadRequest, "invalid-request", "Invalid job request", "the body is empty; expected {\"kind\": …, \"args\": …}",
			FieldProblem{Field: "kind", Problem: "is required"})
	}
	req, errs := parseEnqueue(body)
	if len(errs) > 0 {
		return nil, problem(http.StatusBadRequest, "invalid-request", "Invalid job request", summarize(errs), errs...)
	}
	if strings.HasPrefix(req.Kind, ReservedKindPrefix) {
		return nil, invalidJob(FieldProblem{Field: "kind", Problem: fmt.Sprintf("%q is reserved: kinds starting with %q are nightshift's internal jobs (such as callback delivery)", req.Kind, ReservedKindPrefix)})
	}
	if a.opts.Kinds != nil && envelope.ValidKind(req.Kind) == "" && !slices.Contains(a.opts.Kinds(), req.Kind) {
		return nil, invalidJob(FieldProblem{Field: "kind", Problem: fmt.Sprintf("%q is not a kind this app runs (check the name and that the app registers it)", req.Kind)})
	}
	return req, nil
}

// enqueueOptions turns the request into enqueue options: the priority becomes its queue,
// and a callback must name a url or a queue (a non-nil problem is the answer to send).
func (a *API) enqueueOptions(req *EnqueueRequest) (*nightshift.EnqueueOptions, *Problem, error) {
	opts := &nightshift.EnqueueOptions{
		JobID: req.JobID, Queue: req.Queue, RunAt: req.RunAt, MaxAttempts: req.MaxAttempts, DedupeKey: req.DedupeKey, Meta: req.Meta,
		RunIn:   time.Duration(req.RunInSeconds * float64(time.Second)),
		Timeout: time.Duration(req.TimeoutSeconds * float64(time.Second)),
	}
	if req.Priority != "" {
		p, _ := nightshift.ParsePriority(req.Priority) // checked in parseEnqueue
		var err error
		if opts.Queue, err = a.client.PriorityQueue(p); err != nil {
			return nil, nil, err
		}
	}
	if req.Callback != nil {
		opts.CallbackURL, opts.CallbackQueue = req.Callback.URL, req.Callback.Queue
		if opts.CallbackURL == "" && opts.CallbackQueue == "" {
			return nil, invalidJob(FieldProblem{Field: "callback", Problem: "needs url or queue"}), nil
		}
	}
	return opts, nil, nil
}

// enqueueProblem maps an enqueue error to the problem the caller sees: invalid fields
// (400), too large (413), duplicate or existing job (409). It returns nil for any other
// error (storage trouble), which the caller logs and answers with 503.
func enqueueProblem(err error, req *EnqueueRequest) *Problem {
	var fe *envelope.FieldError
	var se *envelope.SizeError
	switch {
	case errors.As(err, &fe):
		field := fe.Field
		if field == "run_at" && req.RunInSeconds > 0 {
			field = "run_in_seconds"
		}
		return invalidJob(FieldProblem{Field: field, Problem: fe.Problem})
	case errors.As(err, &se):
		return sizeProblem(se)
	case errors.Is(err, nightshift.ErrPayloadTooLarge):
		return problem(http.StatusRequestEntityTooLarge, "too-large", "Job too large", err.Error(),
			FieldProblem{Field: "args", Problem: "are larger than the app's maximum payload"})
	case errors.Is(err, nightshift.ErrDuplicate):
		return duplicateProblem(err)
	case errors.Is(err, nightshift.ErrJobExists):
		return problem(http.StatusConflict, "job-exists", "Job id already used", err.Error(),
			FieldProblem{Field: "job_id", Problem: "is already used by another job"})
	}
	return nil
}

// sizeProblem is the 413 problem of a job message over the queue limit, blaming the meta
// when it outweighs the args.
func sizeProblem(se *envelope.SizeError) *Problem {
	field := "args"
	if se.ArgsSize*2 < se.Size {
		field = "meta"
	}
	return problem(http.StatusRequestEntityTooLarge, "too-large", "Job too large", se.Error(),
		FieldProblem{Field: field, Problem: fmt.Sprintf("make the job message %d bytes; at most %d fit in a queue message", se.Size, se.Limit)})
}

// duplicateProblem is the 409 problem of a dedupe key held by a job that has not ended.
func duplicateProblem(err error) *Problem {
	var de *nightshift.DuplicateJobError
	holder := ""
	if errors.As(err, &de) {
		holder = de.JobID
	}
	return problem(http.StatusConflict, "duplicate", "Duplicate job", err.Error(),
		FieldProblem{Field: "dedupe_key", Problem: fmt.Sprintf("is held by job %s, which has not ended", holder)})
}

func summarize(errs []FieldProblem) string {
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		if e.Field == "" {
			parts = append(parts, e.Problem)
		} else {
			parts = append(parts, e.Field+" "+e.Problem)
		}
	}
	return strings.Join(parts, "; ")
}

// StatusResponse is the body of GET /api/jobs/{id}: the status record (without its log
// lines unless ?logs=true) with links.
type StatusResponse struct {
	*record.Status
	StatusURL string      `json:"status_url"`
	CancelURL string      `json:"cancel_url,omitempty"`
	Result    *ResultView `json:"result,omitempty"`
	// BatchURL is the status URL of the batch the job belongs to (a child or finalizer).
	BatchURL string `json:"batch_url,omitempty"`
	// StartedBatchURL is the status URL of the batch the job started (Status.Batch).
	StartedBatchURL string `json:"started_batch_url,omitempty"`
}

// ResultView is a result: inline JSON or bytes, or a short-lived read-only URL.
type ResultView struct {
	ContentType string          `json:"content_type"`
	Size        int64           `json:"size"`
	JSON        json.RawMessage `json:"json,omitempty"`
	Bytes       []byte          `json:"bytes,omitempty"`
	URL         string          `json:"url,omitempty"`
	ExpiresAt   time.Time       `json:"url_expires_at,omitzero"`
}

// jobRequest is the common start of the per-job endpoints: decode the invocation, check
// the method and the job id, and work out the jobs base URL. A non-nil fail is the problem
// answer to send as it is; a non-nil err fails the invocation.
func (a *API) jobRequest(inv *nightshift.Invocation, method string) (r *Request, id, base string, fail *hostproto.InvokeResponse, err error) {
	if r, err = decodeRequest(inv); err != nil {
		return nil, "", "", nil, err
	}
	if p := checkMethod(r, method); p != nil {
		return r, "", "", a.fail(r, p), nil
	}
	id, p := a.jobID(inv, r)
	if p != nil {
		return r, "", "", a.fail(r, p), nil
	}
	if base, err = collectionURL(r, "jobs"); err != nil {
		return r, "", "", nil, &hostproto.RequestError{Problem: err.Error()}
	}
	return r, id, base, nil, nil
}

func (a *API) jobID(inv *nightshift.Invocation, r *Request) (string, *Problem) {
	id := param(inv, r, "id")
	if p := envelope.ValidJobID(id); p != "" {
		return "", problem(http.StatusBadRequest, "invalid-request", "Invalid job id", "job id "+p, FieldProblem{Field: "id", Problem: p})
	}
	return id, nil
}

// Status serves GET /api/jobs/{id}.
func (a *API) Status(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
	r, id, base, fail, err := a.jobRequest(inv, http.MethodGet)
	if fail != nil || err != nil {
		return fail, err
	}
	st, err := a.client.Status(ctx, id)
	if err != nil {
		return a.statusError(r, id, err), nil
	}
	st = st.WithoutStacks()
	if v := strings.ToLower(r.Query["logs"]); v != "true" && v != "1" {
		st.Logs = nil
	}
	out := StatusResponse{Status: st, StatusURL: statusURL(base, id)}
	if !st.State.Terminal() {
		out.CancelURL = out.StatusURL + "/cancel"
	}
	if batches, err := siblingURL(base, "batches"); err == nil {
		if st.BatchID != "" {
			out.BatchURL = statusURL(batches, st.BatchID)
		}
		if st.Batch != nil {
			out.StartedBatchURL = statusURL(batches, st.Batch.BatchID)
		}
	}
	if res := st.Result; res != nil {
		rv := &ResultView{ContentType: res.ContentType, Size: res.Size, JSON: res.JSON, Bytes: res.Bytes}
		if res.Blob != "" && (a.store.Sealer != nil || a.links == nil) {
			// A link would hand out ciphertext, or the storage has no URLs (the memory
			// driver): the API reads the result and answers inline.
			if fail := a.inlineResult(ctx, r, st, rv); fail != nil {
				return fail, nil
			}
		} else if res.Blob != "" {
			link, exp, err := a.resultLink(ctx, res.Blob)
			if err != nil {
				a.opts.Logger.Error("result link failed", "job_id", id, "error", err.Error())
				return a.fail(r, problem(http.StatusServiceUnavailable, "storage-unavailable", "Result link unavailable", "the result is stored, but no link to it could be made; try again")), nil
			}
			rv.URL, rv.ExpiresAt = link, exp
		}
		out.Result = rv
		st.Result = nil
	}
	var hdr map[string]string
	if !st.State.Terminal() {
		hdr = map[string]string{"Retry-After": "2"} // a polling hint while the job is not done
	}
	return respond(http.StatusOK, hdr, out, fmt.Sprintf("status of job %s: %s", id, st.State)), nil
}

// inlineResult puts a result blob, read (and opened when sealed), into rv (JSON or bytes). A
// non-nil return is the problem answer.
func (a *API) inlineResult(ctx context.Context, r *Request, st *record.Status, rv *ResultView) *hostproto.InvokeResponse {
	ct, data, err := a.store.GetResult(ctx, st)
	if err != nil {
		a.opts.Logger.Error("result blob unavailable", "job_id", st.JobID, "error", err.Error())
		return a.fail(r, problem(http.StatusServiceUnavailable, "storage-unavailable", "Result unavailable", "the result is stored, but could not be read; try again"))
	}
	if json.Valid(data) && strings.Contains(strings.ToLower(ct), "json") {
		rv.JSON = data
	} else {
		rv.Bytes = data
	}
	return nil
}

func (a *API) statusError(r *Request, id string, err error) *hostproto.InvokeResponse {
	if errors.Is(err, nightshift.ErrNotFound) {
		return a.fail(r, problem(http.StatusNotFound, "job-not-found", "Job not found",
			fmt.Sprintf("no job %s: the id is wrong, or the job was enqueued without a status record and has not started yet", id)))
	}
	a.opts.Logger.Error("status read failed", "job_id", id, "error", err.Error())
	return a.fail(r, problem(http.StatusServiceUnavailable, "storage-unavailable", "Storage unavailable", "the job's status could not be read; try again"))
}

// Cancel serves POST /api/jobs/{id}/cancel.
func (a *API) Cancel(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
	r, id, base, fail, err := a.jobRequest(inv, http.MethodPost)
	if fail != nil || err != nil {
		return fail, err
	}
	st, err := a.client.Cancel(ctx, id)
	if err != nil {
		if errors.Is(err, nightshift.ErrTerminal) {
			return a.fail(r, problem(http.StatusConflict, "job-ended", "Job already ended",
				fmt.Sprintf("job %s is already %s; only queued, retrying and running jobs can be cancelled", id, st.State))), nil
		}
		a.opts.Logger.Error("cancel failed", "job_id", id, "error", err.Error())
		return a.fail(r, problem(http.StatusServiceUnavailable, "storage-unavailable", "Storage unavailable", "the job could not be cancelled; try again")), nil
	}
	st = st.WithoutStacks()
	st.Logs = nil
	a.opts.Logger.Info("job cancelled over http", "job_id", id)
	return respond(http.StatusOK, nil, StatusResponse{Status: st, StatusURL: statusURL(base, id)}, "cancelled job "+id), nil
}

// resultLink returns a read-only URL of a result blob, valid for ResultLinkTTL, from the
// storage driver (store.Linker): a service SAS signed with the account key when the
// connection has one (Azurite, dev), else a user delegation SAS (identity-based
// connections; the identity needs a role that may delegate, e.g. Storage Blob Data
// Contributor/Owner).
func (a *API) resultLink(ctx context.Context, blobName string) (string, time.Time, error) {
	now := a.opts.Now().UTC()
	start := now.Add(-5 * time.Minute) // clock skew
	expiry := now.Add(a.opts.ResultLinkTTL)
	link, err := a.links.ReadURL(ctx, a.store.Layout.ResultsContainer(), blobName, start, expiry)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign result link: %w", err)
	}
	return link, expiry, nil
}
