package ui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/record"
)

// Reasons are the dead-letter reasons (the filter's choices).
var Reasons = []record.DeadReason{record.ReasonAttemptsExhausted, record.ReasonPermanentError, record.ReasonHostRetriesExhausted, record.ReasonUnknownKind, record.ReasonUndecodable}

// deadShown bounds the dead letters page.
const deadShown = 200

// deadSelection reads the dead letters page's filters.
func deadSelection(q url.Values) nightshift.DeadSelection {
	return nightshift.DeadSelection{Kind: strings.TrimSpace(q.Get("kind")), Reason: record.DeadReason(q.Get("reason")), Cause: record.DeadCause(q.Get("cause"))}
}

func (s *server) deadList(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	sel := deadSelection(q)
	// Filtered: the index finds the matches (calls in proportion to them); unfiltered: a
	// listing of the container.
	all, err := s.c.FindDeadLetters(r.Context(), sel)
	if err != nil && !errors.Is(err, nightshift.ErrNotFound) {
		s.fail(w, r, sess, http.StatusBadGateway, err)
		return
	}
	out := all[:min(len(all), deadShown)]
	s.render(w, r, http.StatusOK, "dead", sess, map[string]any{
		"Dead": out, "Matched": len(all), "Filtered": sel.Kind != "" || sel.Reason != "" || sel.Cause != "", "Reasons": Reasons,
		"Kind": sel.Kind, "Reason": string(sel.Reason), "Cause": string(sel.Cause), "Rate": s.opts.ReplayRate, "MaxReplay": s.opts.MaxReplay,
	})
}

func (s *server) deadOne(w http.ResponseWriter, r *http.Request, sess *session) {
	d, err := s.c.DeadLetter(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, sess, statusOf(err), err)
		return
	}
	args := ""
	if d.Envelope != nil {
		args = s.showArgs(d.Kind, d.Envelope.Args)
	}
	var st *record.Status
	if d.JobID != "" {
		st, _ = s.c.Status(r.Context(), d.JobID)
	}
	raw := d.Raw
	if raw != "" {
		raw = "(the undecodable message is not shown; read it with `nightshift dead show`)"
	}
	s.render(w, r, http.StatusOK, "deadone", sess, map[string]any{"D": d, "Args": args, "Status": st, "Raw": raw,
		"Replayable": d.Envelope != nil && (st == nil || st.State == record.StateDead)})
}

func (s *server) replayOne(w http.ResponseWriter, r *http.Request, sess *session) {
	id := r.PathValue("id")
	_, err := s.c.Replay(r.Context(), id)
	done := "replayed"
	switch {
	case errors.Is(err, nightshift.ErrNotDead):
		done = "not-dead"
	case err != nil:
		s.fail(w, r, sess, statusOf(err), err)
		return
	}
	s.redirect(w, r, s.opts.Prefix+"/dead/"+url.PathEscape(id)+"?done="+done, http.StatusSeeOther)
}

// replayGroup replays a selection in two steps: without confirm=yes it only checks the
// selection (a dry run) and shows what would happen with a confirmation form; with it, it
// replays at the rate cap, at most MaxReplay records per request.
func (s *server) replayGroup(w http.ResponseWriter, r *http.Request, sess *session) {
	f := r.PostForm
	sel := nightshift.DeadSelection{DeadIDs: f["dead_id"]}
	if len(sel.DeadIDs) == 0 {
		sel = deadSelection(f)
	}
	rate, err := s.replayRate(f.Get("rate"))
	if err != nil {
		s.fail(w, r, sess, http.StatusBadRequest, err)
		return
	}
	confirm := f.Get("confirm") == "yes"
	limit := s.opts.MaxReplay
	if len(sel.DeadIDs) > limit {
		s.fail(w, r, sess, http.StatusBadRequest, badRequest{fmt.Sprintf("%d dead letters selected; at most %d per replay", len(sel.DeadIDs), limit)})
		return
	}
	rep, err := s.c.ReplayDead(r.Context(), sel, &nightshift.ReplayDeadOptions{Rate: rate, Limit: limit, DryRun: !confirm})
	if err != nil {
		s.fail(w, r, sess, http.StatusBadGateway, err)
		return
	}
	s.render(w, r, http.StatusOK, "replay", sess, map[string]any{
		"Report": rep, "Confirmed": confirm, "IDs": sel.DeadIDs, "Kind": sel.Kind, "Reason": string(sel.Reason), "Cause": string(sel.Cause),
		"Rate": rate, "Limit": limit,
	})
}

// replayRate reads the rate cap a replay form asks for: at most the configured cap.
func (s *server) replayRate(v string) (float64, error) {
	if v == "" {
		return s.opts.ReplayRate, nil
	}
	rate, err := strconv.ParseFloat(v, 64)
	if err != nil || rate <= 0 {
		return 0, badRequest{fmt.Sprintf("rate %q is not a positive number of replays per second", v)}
	}
	if s.opts.ReplayRate > 0 {
		rate = min(rate, s.opts.ReplayRate)
	}
	return rate, nil
}
