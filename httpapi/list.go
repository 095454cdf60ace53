package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// FunctionList serves GET /api/jobs.
const FunctionList = "JobsAPIList"

// MaxListLimit is the largest page GET /api/jobs returns.
const MaxListLimit = 1000

// listParams are the query parameters GET /api/jobs takes ("code" is the function key
// the host also accepts in the query).
var listParams = []string{"state", "kind", "queue", "batch", "since", "until", "limit", "cursor", "code"}

// ListResponse is the body of GET /api/jobs.
type ListResponse struct {
	// Jobs are the page's jobs, most recently updated first.
	Jobs []ListItem `json:"jobs"`
	// Cursor continues the listing (the cursor parameter); absent on the last page.
	Cursor string `json:"cursor,omitempty"`
	// NextURL is this request's URL with that cursor.
	NextURL string `json:"next_url,omitempty"`
}

// ListItem is one job of a listing: its status record without log lines, error stacks
// or result (GET status_url has them).
type ListItem struct {
	*record.Status
	HasResult bool   `json:"has_result,omitempty"`
	StatusURL string `json:"status_url"`
}

// List serves GET /api/jobs: the jobs matching the query's filters (state, kind, queue,
// batch, since, until), a page of limit (default 50, at most MaxListLimit) at a time,
// continued by cursor. Filters go through the status index (nightshift.Client.JobsPage).
func (a *API) List(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
	r, err := decodeRequest(inv)
	if err != nil {
		return nil, err
	}
	if p := checkMethod(r, http.MethodGet); p != nil {
		return a.fail(r, p), nil
	}
	base, err := collectionURL(r, "jobs")
	if err != nil {
		return nil, &hostproto.RequestError{Problem: err.Error()}
	}
	f, errs := listFilter(r.Query)
	if len(errs) > 0 {
		return a.fail(r, problem(http.StatusBadRequest, "invalid-filter", "Invalid filter", filterDetail(errs), errs...)), nil
	}
	page, err := a.client.JobsPage(ctx, f)
	if errors.Is(err, nightshift.ErrBadCursor) {
		fp := FieldProblem{Field: "cursor", Problem: "is not a cursor this API returned"}
		return a.fail(r, problem(http.StatusBadRequest, "invalid-filter", "Invalid filter", filterDetail([]FieldProblem{fp}), fp)), nil
	}
	if err != nil {
		a.opts.Logger.Error("list jobs failed", "error", err.Error())
		return a.fail(r, problem(http.StatusServiceUnavailable, "storage-unavailable", "Storage unavailable", "the jobs could not be listed; try again")), nil
	}
	out := ListResponse{Jobs: make([]ListItem, 0, len(page.Jobs)), Cursor: page.Next}
	for _, st := range page.Jobs {
		st = st.WithoutStacks()
		item := ListItem{Status: st, HasResult: st.Result != nil, StatusURL: statusURL(base, st.JobID)}
		st.Logs, st.Result = nil, nil
		out.Jobs = append(out.Jobs, item)
	}
	if page.Next != "" {
		out.NextURL = nextURL(base, r.Query, page.Next)
	}
	return respond(http.StatusOK, nil, out, fmt.Sprintf("list jobs: %d", len(out.Jobs))), nil
}

func filterDetail(errs []FieldProblem) string {
	parts := make([]string, len(errs))
	for i, e := range errs {
		parts[i] = e.Field + " " + e.Problem
	}
	return strings.Join(parts, "; ")
}

// nextURL is base with the query q, its cursor replaced and the function key left out.
func nextURL(base string, q map[string]string, cursor string) string {
	v := url.Values{}
	for k, val := range q {
		if k != "cursor" && k != "code" && val != "" {
			v.Set(k, val)
		}
	}
	v.Set("cursor", cursor)
	return base + "?" + v.Encode()
}

// listFilter reads the query parameters into a filter, naming every bad one.
func listFilter(q map[string]string) (nightshift.JobFilter, []FieldProblem) {
	var f nightshift.JobFilter
	var errs []FieldProblem
	bad := func(field, problem string) { errs = append(errs, FieldProblem{Field: field, Problem: problem}) }
	for k := range q {
		if !slices.Contains(listParams, k) {
			bad(k, "is not a filter of this endpoint (state, kind, queue, batch, since, until, limit, cursor)")
		}
	}
	if s := q["state"]; s != "" {
		f.State = record.State(s)
		if !slices.Contains(listStates, f.State) {
			bad("state", fmt.Sprintf("%q is not one of queued, running, retrying, succeeded, dead, cancelled", s))
		}
	}
	if f.Kind = q["kind"]; f.Kind != "" {
		if p := envelope.ValidKind(f.Kind); p != "" {
			bad("kind", p)
		}
	}
	if f.Queue = q["queue"]; f.Queue != "" {
		if p := storage.ValidQueueName(f.Queue); p != "" {
			bad("queue", p)
		}
	}
	if f.Batch = q["batch"]; f.Batch != "" {
		if p := envelope.ValidJobID(f.Batch); p != "" {
			bad("batch", p)
		}
	}
	f.Since = listTime(q, "since", bad)
	f.Until = listTime(q, "until", bad)
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		bad("until", "must be after since")
	}
	f.Limit = 50
	if s := q["limit"]; s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxListLimit {
			bad("limit", fmt.Sprintf("%q is not a whole number from 1 to %d", s, MaxListLimit))
		}
		f.Limit = n
	}
	f.Cursor = q["cursor"]
	return f, errs
}

var listStates = []record.State{record.StateQueued, record.StateRunning, record.StateRetrying, record.StateSucceeded, record.StateDead, record.StateCancelled}

func listTime(q map[string]string, field string, bad func(field, problem string)) time.Time {
	s := q[field]
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		bad(field, fmt.Sprintf("%q is not an RFC 3339 time such as 2026-12-03T13:07:00Z", s))
	}
	return t
}
