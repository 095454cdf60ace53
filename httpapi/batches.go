package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/record"
)

// MaxBatchRequestBytes bounds the body of POST /api/batches (the whole invocation, with
// the request JSON-wrapped, must stay under hostproto.MaxRequestBytes). Larger fan-outs
// start from Go: Client.StartBatch, or a job that calls StartBatch.
const MaxBatchRequestBytes = 2 << 20

// BatchRequest is the body of POST /api/batches.
type BatchRequest struct {
	BatchID         string            `json:"batch_id,omitempty"`
	Children        []ChildRequest    `json:"children"`
	Finalizer       *ChildRequest     `json:"finalizer,omitempty"`
	Priority        string            `json:"priority,omitempty"`
	Queue           string            `json:"queue,omitempty"`
	FailurePolicy   string            `json:"failure_policy,omitempty"`
	AllowedFailures int               `json:"allowed_failures,omitempty"`
	Meta            map[string]string `json:"meta,omitempty"`
}

// ChildRequest is one child (or the finalizer) of a batch request: the fields of a job
// request that a batch leaves to its jobs (ids, queues, delays, dedupe keys and callbacks
// belong to the batch).
type ChildRequest struct {
	Kind           string            `json:"kind"`
	Args           json.RawMessage   `json:"args,omitempty"`
	TimeoutSeconds float64           `json:"timeout_seconds,omitempty"`
	MaxAttempts    int               `json:"max_attempts,omitempty"`
	Meta           map[string]string `json:"meta,omitempty"`
}

// BatchResponse is the 202 body of POST /api/batches.
type BatchResponse struct {
	*nightshift.BatchInfo
	StatusURL          string `json:"status_url"`
	FinalizerStatusURL string `json:"finalizer_status_url,omitempty"`
}

// BatchStatusResponse is the body of GET /api/batches/{id}.
type BatchStatusResponse struct {
	*nightshift.BatchStatus
	StatusURL          string `json:"status_url"`
	ParentStatusURL    string `json:"parent_status_url,omitempty"`
	FinalizerStatusURL string `json:"finalizer_status_url,omitempty"`
}

// batchOwned is why a child may not set the job request fields a batch decides.
const batchOwned = "belongs to the batch, not to one of its jobs (job fields: args, kind, max_attempts, meta, timeout_seconds)"

// parseBatch decodes the body field by field, so that every problem names its field
// ("children[3].kind"). Unknown fields are refused.
func parseBatch(body []byte) (*BatchRequest, []FieldProblem) {
	req := &BatchRequest{}
	children := func(v json.RawMessage) []FieldProblem {
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil {
			return []FieldProblem{{Field: "children", Problem: `expected an array of jobs {"kind": …, "args": …}`}}
		}
		if len(items) > envelope.MaxBatchChildren {
			return []FieldProblem{{Field: "children", Problem: fmt.Sprintf("has %d jobs; at most %d per batch (envelope.MaxBatchChildren) — split the work into several batches", len(items), envelope.MaxBatchChildren)}}
		}
		req.Children = make([]ChildRequest, len(items))
		var errs []FieldProblem
		for i, item := range items {
			errs = append(errs, parseChild(fmt.Sprintf("children[%d]", i), item, &req.Children[i])...)
		}
		return errs
	}
	finalizer := func(v json.RawMessage) []FieldProblem {
		req.Finalizer = &ChildRequest{}
		return parseChild("finalizer", v, req.Finalizer)
	}
	present, errs := decodeObject("", body, `{"children": […], "finalizer": …}`, fields{
		"batch_id": &req.BatchID, "children": children, "finalizer": finalizer, "priority": &req.Priority,
		"queue": &req.Queue, "failure_policy": &req.FailurePolicy, "meta": meta("meta", &req.Meta),
		"allowed_failures": count("allowed_failures", &req.AllowedFailures, 0, envelope.MaxBatchChildren, "envelope.MaxBatchChildren"),
	}, nil)
	if present == nil {
		return nil, errs
	}
	add := func(f, p string) { errs = append(errs, FieldProblem{Field: f, Problem: p}) }
	if !present["children"] {
		add("children", "is required (an empty array starts a batch that is done at once)")
	}
	errs = append(errs, checkQueueChoice(req.Priority, req.Queue)...)
	switch nightshift.FailurePolicy(req.FailurePolicy) {
	case "", nightshift.FinalizeAlways, nightshift.FailBatch:
	default:
		add("failure_policy", fmt.Sprintf("%q is not %q (run the finalizer whatever happened) or %q (a failed batch skips it)", req.FailurePolicy, nightshift.FinalizeAlways, nightshift.FailBatch))
	}
	if req.AllowedFailures < 0 {
		add("allowed_failures", "must be 0 or more")
	}
	return req, errs
}

// parseChild decodes one child object; field names in problems start with path.
func parseChild(path string, v json.RawMessage, c *ChildRequest) []FieldProblem {
	present, errs := decodeObject(path, v, `{"kind": …, "args": …}`, fields{
		"kind": &c.Kind, "args": &c.Args, "meta": meta(path+".meta", &c.Meta),
		"timeout_seconds": seconds(path+".timeout_seconds", &c.TimeoutSeconds, envelope.MaxTimeoutSeconds, "7 days, envelope.MaxTimeoutSeconds", "must be more than 0"),
		"max_attempts":    count(path+".max_attempts", &c.MaxAttempts, 1, envelope.MaxAttemptsLimit, "envelope.MaxAttemptsLimit"),
	}, map[string]string{
		"job_id": batchOwned, "queue": batchOwned, "priority": batchOwned, "run_at": batchOwned,
		"run_in_seconds": batchOwned, "dedupe_key": batchOwned, "callback": batchOwned,
	})
	if present == nil {
		return errs
	}
	add := func(f, p string) { errs = append(errs, FieldProblem{Field: path + "." + f, Problem: p}) }
	switch {
	case c.Kind == "":
		add("kind", "is required")
	case envelope.ValidKind(c.Kind) != "":
		add("kind", envelope.ValidKind(c.Kind))
	case strings.HasPrefix(c.Kind, ReservedKindPrefix):
		add("kind", fmt.Sprintf("%q is reserved for nightshift's internal jobs", c.Kind))
	}
	if c.TimeoutSeconds < 0 {
		add("timeout_seconds", "must be more than 0")
	}
	if c.MaxAttempts < 0 {
		add("max_attempts", "must be 1 or more")
	}
	return errs
}

func (c *ChildRequest) params() nightshift.EnqueueParams {
	return nightshift.EnqueueParams{Kind: c.Kind, RawArgs: c.Args, Opts: &nightshift.EnqueueOptions{
		MaxAttempts: c.MaxAttempts, Meta: c.Meta, Timeout: time.Duration(c.TimeoutSeconds * float64(time.Second)),
	}}
}

// StartBatch serves POST /api/batches: it starts a batch (fan-out) with an optional
// finalizer (fan-in). Posting the same batch_id again resumes an interrupted start and
// enqueues nothing twice.
func (a *API) StartBatch(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
	r, body, fail, err := a.postRequest(inv, MaxBatchRequestBytes, "start larger fan-outs from Go: Client.StartBatch, or a job calling StartBatch")
	if fail != nil || err != nil {
		return fail, err
	}
	req, errs := parseBatch(body)
	if len(errs) == 0 && a.opts.Kinds != nil {
		kinds := a.opts.Kinds()
		check := func(field, kind string) {
			if !slices.Contains(kinds, kind) {
				errs = append(errs, FieldProblem{Field: field, Problem: fmt.Sprintf("%q is not a kind this app runs (kinds: %s)", kind, strings.Join(kinds, ", "))})
			}
		}
		for i := range req.Children {
			check(fmt.Sprintf("children[%d].kind", i), req.Children[i].Kind)
		}
		if req.Finalizer != nil {
			check("finalizer.kind", req.Finalizer.Kind)
		}
	}
	if len(errs) > 0 {
		return a.fail(r, problem(http.StatusBadRequest, "invalid-request", "Invalid batch request", summarize(errs), errs...)), nil
	}
	base, err := collectionURL(r, "batches")
	if err != nil {
		return nil, &hostproto.RequestError{Problem: err.Error()}
	}
	p := nightshift.BatchParams{
		BatchID: req.BatchID, Queue: req.Queue, FailurePolicy: nightshift.FailurePolicy(req.FailurePolicy),
		AllowedFailures: req.AllowedFailures, Meta: req.Meta, Children: make([]nightshift.EnqueueParams, len(req.Children)),
	}
	if req.Priority != "" {
		p.Priority, _ = nightshift.ParsePriority(req.Priority) // checked in parseBatch
	}
	for i := range req.Children {
		p.Children[i] = req.Children[i].params()
	}
	if req.Finalizer != nil {
		fp := req.Finalizer.params()
		p.Finalizer = &fp
	}
	bi, err := a.client.StartBatch(withRequestTrace(ctx, r), p)
	if err != nil {
		var fe *envelope.FieldError
		var se *envelope.SizeError
		// The messages say which child ("child 3: …") and what is wrong.
		switch {
		case errors.As(err, &se), errors.Is(err, nightshift.ErrPayloadTooLarge):
			return a.fail(r, problem(http.StatusRequestEntityTooLarge, "too-large", "Job too large", err.Error())), nil
		case errors.As(err, &fe):
			return a.fail(r, problem(http.StatusBadRequest, "invalid-request", "Invalid batch request", err.Error())), nil
		}
		a.opts.Logger.Error("batch start failed", "batch_id", req.BatchID, "error", err.Error())
		return a.fail(r, problem(http.StatusServiceUnavailable, "storage-unavailable", "Storage unavailable",
			"the batch could not be started completely; post the same request again with this batch_id to resume it")), nil
	}
	su := statusURL(base, bi.BatchID)
	out := BatchResponse{BatchInfo: bi, StatusURL: su}
	if bi.FinalizerJobID != "" {
		if jobs, err := siblingURL(base, "jobs"); err == nil {
			out.FinalizerStatusURL = statusURL(jobs, bi.FinalizerJobID)
		}
	}
	a.opts.Logger.Info("batch started over http", "batch_id", bi.BatchID, "total", bi.Total, "resumed", bi.Resumed)
	return respond(http.StatusAccepted, map[string]string{"Location": su, "Retry-After": "2"}, out,
		fmt.Sprintf("started batch %s (%d children)", bi.BatchID, bi.Total)), nil
}

// BatchStatus serves GET /api/batches/{id}: live counts from the batch's shards, the
// finalizer's status, and links. ?running=true also counts the running children (it reads
// the status of every pending child, so it costs one read per pending child).
func (a *API) BatchStatus(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
	r, err := decodeRequest(inv)
	if err != nil {
		return nil, err
	}
	if p := checkMethod(r, http.MethodGet); p != nil {
		return a.fail(r, p), nil
	}
	id := param(inv, r, "id")
	if p := envelope.ValidJobID(id); p != "" {
		return a.fail(r, problem(http.StatusBadRequest, "invalid-request", "Invalid batch id", "batch id "+p, FieldProblem{Field: "id", Problem: p})), nil
	}
	base, err := collectionURL(r, "batches")
	if err != nil {
		return nil, &hostproto.RequestError{Problem: err.Error()}
	}
	v := strings.ToLower(r.Query["running"])
	bs, err := a.client.Batch(ctx, id, &nightshift.BatchStatusOptions{CountRunning: v == "true" || v == "1"})
	if err != nil {
		if errors.Is(err, nightshift.ErrNotFound) {
			return a.fail(r, problem(http.StatusNotFound, "batch-not-found", "Batch not found", fmt.Sprintf("no batch %s", id))), nil
		}
		a.opts.Logger.Error("batch status read failed", "batch_id", id, "error", err.Error())
		return a.fail(r, problem(http.StatusServiceUnavailable, "storage-unavailable", "Storage unavailable", "the batch's status could not be read; try again")), nil
	}
	if bs.Finalizer != nil {
		bs.Finalizer = bs.Finalizer.WithoutStacks()
		bs.Finalizer.Logs, bs.Finalizer.Result = nil, nil // follow finalizer_status_url for those
	}
	out := BatchStatusResponse{BatchStatus: bs, StatusURL: statusURL(base, id)}
	if jobs, err := siblingURL(base, "jobs"); err == nil {
		if bs.ParentID != "" {
			out.ParentStatusURL = statusURL(jobs, bs.ParentID)
		}
		if bs.FinalizerJobID != "" {
			out.FinalizerStatusURL = statusURL(jobs, bs.FinalizerJobID)
		}
	}
	var hdr map[string]string
	if !batchDone(bs) {
		hdr = map[string]string{"Retry-After": "2"}
	}
	return respond(http.StatusOK, hdr, out, fmt.Sprintf("status of batch %s: %s", id, bs.State)), nil
}

// batchDone reports whether nothing more will happen to the batch: its children ended
// and its finalizer (if any) ended or will never run.
func batchDone(bs *nightshift.BatchStatus) bool {
	switch bs.State {
	case record.BatchEnqueuing, record.BatchRunning:
		return false
	}
	if bs.FinalizerJobID == "" {
		return true
	}
	if bs.Finalizer != nil {
		return bs.Finalizer.State.Terminal()
	}
	// A failed batch under FailBatch never runs its finalizer.
	return bs.State == record.BatchFailed && bs.FailurePolicy == string(nightshift.FailBatch)
}
