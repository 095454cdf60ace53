package ui

import (
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
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/schedule"
)

// States are the job states, in lifecycle order (the filters' choices).
var States = []record.State{record.StateQueued, record.StateRunning, record.StateRetrying, record.StateSucceeded, record.StateDead, record.StateCancelled}

// jobsPageSize is the number of jobs a jobs page shows.
const jobsPageSize = 50

// badRequest is a problem with the request's parameters (400).
type badRequest struct{ msg string }

func (e badRequest) Error() string { return e.msg }

// jobFilter reads the jobs page's filters. With no time given the page shows the last
// 24 hours, so that it always asks the index (never lists the status container).
func (s *server) jobFilter(q url.Values) (nightshift.JobFilter, error) {
	f := nightshift.JobFilter{Kind: strings.TrimSpace(q.Get("kind")), Queue: strings.TrimSpace(q.Get("queue")),
		Batch: strings.TrimSpace(q.Get("batch")), Cursor: q.Get("cursor"), Limit: jobsPageSize}
	if st := record.State(q.Get("state")); st != "" {
		if !slices.Contains(States, st) {
			return f, badRequest{fmt.Sprintf("state %q is not one of queued, running, retrying, succeeded, dead, cancelled", st)}
		}
		f.State = st
	}
	now := s.opts.Now().UTC()
	var err error
	if f.Since, err = parseWhen(q.Get("since"), now); err != nil {
		return f, badRequest{"since: " + err.Error()}
	}
	if f.Until, err = parseWhen(q.Get("until"), now); err != nil {
		return f, badRequest{"until: " + err.Error()}
	}
	if f.Since.IsZero() {
		f.Since = now.Add(-24 * time.Hour)
	}
	return f, nil
}

// parseWhen reads a time filter: empty, "all" (since the epoch), a duration back from now
// ("1h", "7d"), RFC 3339, or a datetime-local value (UTC).
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return time.Time{}, nil
	case s == "all":
		return time.Unix(0, 0).UTC(), nil
	case strings.HasSuffix(s, "d"):
		if n, err := strconv.Atoi(strings.TrimSuffix(s, "d")); err == nil && n > 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (give 1h, 7d, all, 2006-01-02T15:04 or RFC 3339)", s)
}

func (s *server) jobs(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	f, err := s.jobFilter(q)
	if err != nil {
		s.fail(w, r, sess, http.StatusBadRequest, err)
		return
	}
	page, err := s.c.JobsPage(r.Context(), f)
	if errors.Is(err, nightshift.ErrBadCursor) {
		s.fail(w, r, sess, http.StatusBadRequest, errors.New("the page cursor is not one this dashboard handed out"))
		return
	}
	if err != nil {
		s.fail(w, r, sess, http.StatusBadGateway, err)
		return
	}
	next := ""
	if page.Next != "" {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("cursor", page.Next)
		next = "?" + nq.Encode()
	}
	s.render(w, r, http.StatusOK, "jobs", sess, map[string]any{
		"Jobs": page.Jobs, "Next": next, "States": States,
		"State": q.Get("state"), "Kind": f.Kind, "Queue": f.Queue, "Batch": f.Batch,
		"Since": q.Get("since"), "Until": q.Get("until"), "Queues": s.queueNames(),
	})
}

func (s *server) queueNames() []string {
	l := s.c.Store().Layout
	return l.JobQueues()
}

// jobView is the job detail page's data.
type jobView struct {
	St         *record.Status
	Dead       *record.DeadLetter
	Args       string
	Preview    string
	PreviewCut bool
	Batch      *nightshift.BatchStatus
	CanCancel  bool
}

// refresh reloads the page of a job that has not ended every 5 seconds (live progress).
func (v jobView) refresh() int {
	if v.St.State.Terminal() {
		return 0
	}
	return 5
}

func (s *server) job(w http.ResponseWriter, r *http.Request, sess *session) {
	id := r.PathValue("id")
	if p := envelope.ValidJobID(id); p != "" {
		s.fail(w, r, sess, http.StatusBadRequest, badRequest{"job id " + p})
		return
	}
	st, err := s.c.Status(r.Context(), id)
	if err != nil {
		s.fail(w, r, sess, statusOf(err), err)
		return
	}
	v := jobView{St: st.WithoutStacks(), CanCancel: !st.State.Terminal()}
	if len(st.Args) > 0 {
		v.Args = s.showArgs(st.Kind, st.Args)
	}
	if st.State == record.StateDead {
		deadID := strings.TrimSuffix(st.DeadLetter, ".json")
		if deadID == "" {
			deadID = id
		}
		if d, err := s.c.DeadLetter(r.Context(), deadID); err == nil {
			v.Dead = d
			if d.Envelope != nil {
				v.Args = s.showArgs(d.Kind, d.Envelope.Args)
			}
		}
	}
	if st.Result != nil && st.State == record.StateSucceeded {
		v.Preview, v.PreviewCut = s.preview(r, id, st.Result)
	}
	if st.BatchID != "" {
		v.Batch, _ = s.c.Batch(r.Context(), st.BatchID, nil)
	}
	s.render(w, r, http.StatusOK, "job", sess, v)
}

// previewBytes bounds a result preview.
const previewBytes = 4096

// preview returns the start of a JSON or text result (inline results cost nothing more; a
// result blob is read once).
func (s *server) preview(r *http.Request, id string, res *record.Result) (string, bool) {
	ct := res.ContentType
	if !strings.Contains(ct, "json") && !strings.HasPrefix(ct, "text/") {
		return "", false
	}
	var data []byte
	switch {
	case len(res.JSON) > 0:
		data = []byte(prettyJSON(res.JSON))
	case len(res.Bytes) > 0:
		data = res.Bytes
	default:
		_, b, err := s.c.ResultBytes(r.Context(), id)
		if err != nil {
			return "", false
		}
		data = b
		if strings.Contains(ct, "json") {
			data = []byte(prettyJSON(b))
		}
	}
	if len(data) > previewBytes {
		return string(data[:previewBytes]), true
	}
	return string(data), false
}

// result downloads a succeeded job's result through the dashboard (no storage link).
func (s *server) result(w http.ResponseWriter, r *http.Request, sess *session) {
	id := r.PathValue("id")
	ct, data, err := s.c.ResultBytes(r.Context(), id)
	if err != nil {
		s.fail(w, r, sess, statusOf(err), err)
		return
	}
	ext := ".bin"
	if strings.Contains(ct, "json") {
		ext = ".json"
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+safeFileName(id)+ext+`"`)
	w.Header().Set("Content-Security-Policy", "sandbox")
	_, _ = w.Write(data)
}

func safeFileName(id string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < ' ' {
			return '_'
		}
		return r
	}, id)
}

func (s *server) cancel(w http.ResponseWriter, r *http.Request, sess *session) {
	id := r.PathValue("id")
	if p := envelope.ValidJobID(id); p != "" {
		s.fail(w, r, sess, http.StatusBadRequest, badRequest{"job id " + p})
		return
	}
	_, _, err := schedule.Cancel(r.Context(), s.c, id)
	done := "cancelled"
	switch {
	case errors.Is(err, nightshift.ErrTerminal):
		done = "already-done"
	case err != nil:
		s.fail(w, r, sess, http.StatusBadGateway, err)
		return
	}
	s.redirect(w, r, s.opts.Prefix+"/jobs/"+url.PathEscape(id)+"?done="+done, http.StatusSeeOther)
}

// statusOf maps a client error to an HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, nightshift.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, nightshift.ErrNotFinished):
		return http.StatusConflict
	}
	return http.StatusBadGateway
}

// batchesShown bounds the batches page.
const batchesShown = 50

func (s *server) batches(w http.ResponseWriter, r *http.Request, sess *session) {
	ids, err := s.recentBatches(r)
	if err != nil {
		s.fail(w, r, sess, http.StatusBadGateway, err)
		return
	}
	var out []*nightshift.BatchStatus
	for _, id := range ids {
		b, err := s.c.Batch(r.Context(), id, nil)
		if err != nil {
			continue
		}
		out = append(out, b)
	}
	s.render(w, r, http.StatusOK, "batches", sess, map[string]any{"Batches": out})
}

// recentBatches lists the batches container (records only, not shards) and returns the
// newest batchesShown batch ids.
func (s *server) recentBatches(r *http.Request) ([]string, error) {
	cs := s.c.Store()
	type item struct {
		id  string
		mod time.Time
	}
	var items []item
	for it, err := range cs.Store().List(r.Context(), cs.Layout.BatchesContainer(), "") {
		if err != nil {
			if errors.Is(err, nightshift.ErrNotFound) {
				return nil, nil
			}
			return nil, err
		}
		if id, ok := strings.CutSuffix(it.Name, ".json"); ok && !strings.Contains(id, "/") {
			items = append(items, item{id, it.LastModified})
		}
	}
	slices.SortFunc(items, func(a, b item) int { return b.mod.Compare(a.mod) })
	var ids []string
	for i := 0; i < len(items) && i < batchesShown; i++ {
		ids = append(ids, items[i].id)
	}
	return ids, nil
}

func (s *server) batch(w http.ResponseWriter, r *http.Request, sess *session) {
	b, err := s.c.Batch(r.Context(), r.PathValue("id"), nil)
	if err != nil {
		s.fail(w, r, sess, statusOf(err), err)
		return
	}
	s.render(w, r, http.StatusOK, "batches", sess, map[string]any{"Batches": []*nightshift.BatchStatus{b}, "One": true})
}

func (s *server) schedules(w http.ResponseWriter, r *http.Request, sess *session) {
	now := s.opts.Now().UTC()
	infos, err := schedule.Describe(r.Context(), s.c.Store(), s.opts.Recurring, s.opts.Getenv, time.UTC, now, 3)
	if err != nil {
		s.fail(w, r, sess, http.StatusBadGateway, err)
		return
	}
	entries, err := schedule.Scheduled(r.Context(), s.c.Store())
	if err != nil && !errors.Is(err, nightshift.ErrNotFound) {
		s.fail(w, r, sess, http.StatusBadGateway, err)
		return
	}
	if len(entries) > 100 {
		entries = entries[:100]
	}
	s.render(w, r, http.StatusOK, "schedules", sess, map[string]any{"Recurring": infos, "Delayed": entries})
}
