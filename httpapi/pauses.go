package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/storage"
)

// The pause routes (docs/flow-control.md#pause-and-resume, docs/http-api.md#pauses).
const (
	// FunctionPauses serves GET /api/pauses.
	FunctionPauses = "PausesAPIList"
	// FunctionPause serves POST /api/pauses.
	FunctionPause = "PausesAPIPause"
	// FunctionResume serves POST /api/pauses/resume.
	FunctionResume = "PausesAPIResume"
	// MaxPauseRequestBytes bounds the body of a pause or resume.
	MaxPauseRequestBytes = 1024
)

// PauseRequest is the body of POST /api/pauses and POST /api/pauses/resume: exactly one
// of a queue (its full name, as the layout spells it) or a kind.
type PauseRequest struct {
	Queue string `json:"queue,omitempty"`
	Kind  string `json:"kind,omitempty"`
}

// PausesResponse is the body of GET /api/pauses and of a pause or resume's 200 answer:
// what is paused, since when.
type PausesResponse struct {
	Queues map[string]time.Time `json:"queues"`
	Kinds  map[string]time.Time `json:"kinds"`
}

// parsePause decodes and checks a pause or resume body, naming every bad field.
func parsePause(body []byte) (nightshift.PauseTarget, []FieldProblem) {
	var req PauseRequest
	if len(strings.TrimSpace(string(body))) == 0 {
		return nightshift.PauseTarget{}, []FieldProblem{{Problem: `the body is empty; expected {"queue": …} or {"kind": …}`}}
	}
	present, errs := decodeObject("", body, `{"queue": …} or {"kind": …}`, fields{"queue": &req.Queue, "kind": &req.Kind}, nil)
	if present == nil || len(errs) > 0 {
		return nightshift.PauseTarget{}, errs
	}
	switch {
	case req.Queue != "" && req.Kind != "":
		errs = append(errs, FieldProblem{Field: "kind", Problem: "name a queue or a kind, not both"})
	case req.Queue != "":
		if p := storage.ValidQueueName(req.Queue); p != "" {
			errs = append(errs, FieldProblem{Field: "queue", Problem: p})
		}
	case req.Kind != "":
		if p := envelope.ValidKind(req.Kind); p != "" {
			errs = append(errs, FieldProblem{Field: "kind", Problem: p})
		}
	default:
		errs = append(errs, FieldProblem{Field: "kind", Problem: `name a queue ("queue") or a kind ("kind")`})
	}
	return nightshift.PauseTarget{Queue: req.Queue, Kind: req.Kind}, errs
}

// Pauses serves GET /api/pauses: what is paused (nightshift.Client.Pauses).
func (a *API) Pauses(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
	r, err := decodeRequest(inv)
	if err != nil {
		return nil, err
	}
	if p := checkMethod(r, http.MethodGet); p != nil {
		return a.fail(r, p), nil
	}
	return a.answerPauses(ctx, r, "pauses listed")
}

// Pause serves POST /api/pauses: pause a queue or a kind across the fleet
// (nightshift.Client.Pause; in effect within nightshift.PauseCheck).
func (a *API) Pause(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
	return a.changePause(ctx, inv, "paused", a.client.Pause)
}

// Resume serves POST /api/pauses/resume: undo a pause (nightshift.Client.Resume).
func (a *API) Resume(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
	return a.changePause(ctx, inv, "resumed", a.client.Resume)
}

func (a *API) changePause(ctx context.Context, inv *nightshift.Invocation, done string, change func(context.Context, nightshift.PauseTarget) error) (*hostproto.InvokeResponse, error) {
	r, body, fail, err := a.postRequest(inv, MaxPauseRequestBytes, `{"queue": …} or {"kind": …} fits in a few bytes`)
	if fail != nil || err != nil {
		return fail, err
	}
	t, errs := parsePause(body)
	if len(errs) > 0 {
		return a.fail(r, problem(http.StatusBadRequest, "invalid-request", "Invalid pause request", summarize(errs), errs...)), nil
	}
	if err := change(ctx, t); err != nil {
		a.opts.Logger.Error("pause change failed", "queue", t.Queue, "kind", t.Kind, "error", err.Error())
		return a.fail(r, problem(http.StatusServiceUnavailable, "storage-unavailable", "Storage unavailable", "the pauses could not be changed; try again")), nil
	}
	a.opts.Logger.Info("pauses changed over http", "change", done, "queue", t.Queue, "kind", t.Kind)
	return a.answerPauses(ctx, r, fmt.Sprintf("%s queue %q kind %q", done, t.Queue, t.Kind))
}

func (a *API) answerPauses(ctx context.Context, r *Request, logLine string) (*hostproto.InvokeResponse, error) {
	p, err := a.client.Pauses(ctx)
	if err != nil {
		a.opts.Logger.Error("pauses read failed", "error", err.Error())
		return a.fail(r, problem(http.StatusServiceUnavailable, "storage-unavailable", "Storage unavailable", "the pauses could not be read; try again")), nil
	}
	return respond(http.StatusOK, nil, PausesResponse{Queues: p.Queues, Kinds: p.Kinds}, logLine), nil
}
