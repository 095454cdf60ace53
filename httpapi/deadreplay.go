package httpapi

import (
	"cmp"
	"context"
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

// FunctionDeadReplay serves POST /api/dead/replay.
const FunctionDeadReplay = "DeadAPIReplay"

// Bounds of POST /api/dead/replay. One request takes at most MaxDeadReplayLimit records
// at nightshift.DefaultReplayRate, so it ends within seconds, well inside the HTTP
// trigger's time; the answer's next continues with the rest.
const (
	// DefaultDeadReplayLimit is the records a request takes when it names no limit.
	DefaultDeadReplayLimit = 50
	// MaxDeadReplayLimit is the most records one request takes.
	MaxDeadReplayLimit = 100
	// MaxDeadReplayRequestBytes bounds the request body.
	MaxDeadReplayRequestBytes = 4 * 1024
	// maxSinceAgo bounds a relative since (the dead letters outlive the queue's 7 days,
	// not years).
	maxSinceAgo = 366 * 24 * time.Hour
)

// DeadReplayRequest is the body of POST /api/dead/replay: which dead letters to replay
// (every filter set must match; all: true selects every record when none is set), how
// many at most, and where to continue.
type DeadReplayRequest struct {
	Reason string `json:"reason,omitempty"`
	Kind   string `json:"kind,omitempty"`
	Cause  string `json:"cause,omitempty"`
	// Since is a duration before now ("1h", "30m") or an RFC 3339 time.
	Since  string `json:"since,omitempty"`
	Limit  int    `json:"limit,omitempty"`
	After  string `json:"after,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
	All    bool   `json:"all,omitempty"`
}

// DeadReplayResponse is the 200 body of POST /api/dead/replay: the counts, one outcome per
// record taken, and next (the after of the request that continues) while records remain.
type DeadReplayResponse struct {
	*nightshift.DeadReplayReport
	DryRun bool `json:"dry_run,omitempty"`
}

// deadReasons are the reasons a request may name.
var deadReasons = []record.DeadReason{record.ReasonAttemptsExhausted, record.ReasonPermanentError, record.ReasonUndecodable,
	record.ReasonUnknownKind, record.ReasonHostRetriesExhausted}

// parseDeadReplay decodes and checks the body of POST /api/dead/replay at now, naming
// every bad field. It returns the selection and the options of the group replay.
func parseDeadReplay(body []byte, now time.Time) (nightshift.DeadSelection, *nightshift.ReplayDeadOptions, []FieldProblem) {
	var req DeadReplayRequest
	var sel nightshift.DeadSelection
	if len(strings.TrimSpace(string(body))) == 0 {
		return sel, nil, []FieldProblem{{Problem: `the body is empty; expected {"reason": …, "cause": …, "since": …} or {"all": true}`}}
	}
	present, errs := decodeObject("", body, `{"reason": …, "kind": …, "cause": …, "since": …, "limit": …, "after": …}`, fields{
		"reason": &req.Reason, "kind": &req.Kind, "cause": &req.Cause, "since": &req.Since, "after": &req.After,
		"limit":   count("limit", &req.Limit, 1, MaxDeadReplayLimit, "MaxDeadReplayLimit"),
		"dry_run": &req.DryRun, "all": &req.All,
	}, nil)
	if present == nil {
		return sel, nil, errs
	}
	add := func(f, p string) { errs = append(errs, FieldProblem{Field: f, Problem: p}) }
	if req.Reason != "" && !slices.Contains(deadReasons, record.DeadReason(req.Reason)) {
		add("reason", fmt.Sprintf("%q is not a reason (reasons: %s)", envelope.Truncate(req.Reason, 64), joinReasons()))
	}
	if c := record.DeadCause(req.Cause); c != "" && c != record.CauseCrash && c != record.CauseJob {
		add("cause", fmt.Sprintf("%q is neither %s nor %s", envelope.Truncate(req.Cause, 64), record.CauseCrash, record.CauseJob))
	}
	if req.Kind != "" {
		if p := envelope.ValidKind(req.Kind); p != "" {
			add("kind", p)
		}
	}
	since, p := parseSince(req.Since, now)
	if p != "" {
		add("since", p)
	}
	if len(req.After) > 1024 {
		add("after", "is not a continuation this API gave (too long)")
	}
	filtered := req.Reason != "" || req.Kind != "" || req.Cause != "" || req.Since != ""
	if !filtered && !req.All && len(errs) == 0 {
		add("all", "give a filter (reason, kind, cause, since), or all: true to select every dead letter")
	}
	sel = nightshift.DeadSelection{Kind: req.Kind, Reason: record.DeadReason(req.Reason), Cause: record.DeadCause(req.Cause), Since: since}
	opts := &nightshift.ReplayDeadOptions{Limit: cmp.Or(req.Limit, DefaultDeadReplayLimit), After: req.After, DryRun: req.DryRun}
	return sel, opts, errs
}

func joinReasons() string {
	names := make([]string, len(deadReasons))
	for i, r := range deadReasons {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}

// parseSince reads since: a positive Go duration before now (at most a year) or an RFC 3339
// time. It returns a problem in words when it is neither.
func parseSince(s string, now time.Time) (time.Time, string) {
	if s == "" {
		return time.Time{}, ""
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 || d > maxSinceAgo {
			return time.Time{}, fmt.Sprintf("%q must be more than 0 and at most %s", envelope.Truncate(s, 64), maxSinceAgo)
		}
		return now.Add(-d), ""
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, ""
	}
	return time.Time{}, fmt.Sprintf("%q is neither a duration such as \"1h\" nor an RFC 3339 time", envelope.Truncate(s, 64))
}

// DeadReplay serves POST /api/dead/replay: a group replay of the dead letters the body
// selects (nightshift.Client.ReplayDead), at most limit records per request.
func (a *API) DeadReplay(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
	r, body, fail, err := a.postRequest(inv, MaxDeadReplayRequestBytes, "filters and a continuation fit in a few hundred bytes")
	if fail != nil || err != nil {
		return fail, err
	}
	sel, opts, errs := parseDeadReplay(body, a.opts.Now())
	if len(errs) > 0 {
		return a.fail(r, problem(http.StatusBadRequest, "invalid-request", "Invalid replay request", summarize(errs), errs...)), nil
	}
	rep, err := a.client.ReplayDead(ctx, sel, opts)
	switch {
	case errors.Is(err, nightshift.ErrBadContinuation):
		fp := FieldProblem{Field: "after", Problem: "is not a continuation this API gave (pass next from an earlier answer)"}
		return a.fail(r, problem(http.StatusBadRequest, "invalid-request", "Invalid replay request", "after "+fp.Problem, fp)), nil
	case err != nil:
		a.opts.Logger.Error("dead replay failed", "replayed", rep.Replayed, "error", err.Error())
		return a.fail(r, problem(http.StatusServiceUnavailable, "storage-unavailable", "Storage unavailable",
			fmt.Sprintf("the replay stopped after %d replays; send the same request again (replayed jobs are skipped)", rep.Replayed))), nil
	}
	for i, o := range rep.Outcomes {
		if o.Error != "" {
			// The detail (storage errors name accounts and URLs) goes to the log only.
			a.opts.Logger.Error("dead replay of one record failed", "dead_id", o.DeadID, "error", o.Error)
			rep.Outcomes[i].Error = "the replay failed; try again"
		}
	}
	a.opts.Logger.Info("dead letters replayed over http", "taken", rep.Taken, "replayed", rep.Replayed, "skipped", rep.Skipped,
		"failed", rep.Failed, "remaining", rep.Remaining)
	return respond(http.StatusOK, nil, DeadReplayResponse{DeadReplayReport: rep, DryRun: opts.DryRun},
		fmt.Sprintf("dead replay: %d taken, %d replayed, %d remaining", rep.Taken, rep.Replayed, rep.Remaining)), nil
}
