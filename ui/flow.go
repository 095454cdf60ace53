package ui

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
)

// limitRow is one kind's configured limits on the flow page.
type limitRow struct {
	Kind        string
	Concurrency int
	KeyArg      string
	Rate        string
	Burst       int
}

// pauseRow is one paused queue or kind.
type pauseRow struct {
	What, Name string
	Since      time.Time
}

// flow shows the flow-control limits (configured, and their records in storage) and the
// pauses, with pause and resume buttons. It costs one listing of the limit records and one
// read of the pauses blob.
func (s *server) flow(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	states, err := s.c.LimitStates(ctx)
	if err != nil {
		s.fail(w, r, sess, http.StatusBadGateway, err)
		return
	}
	p, err := s.c.Pauses(ctx)
	if err != nil {
		s.fail(w, r, sess, http.StatusBadGateway, err)
		return
	}
	var paused []pauseRow
	queues, kinds := p.Names()
	for _, q := range queues {
		paused = append(paused, pauseRow{"queue", q, p.Queues[q]})
	}
	for _, k := range kinds {
		paused = append(paused, pauseRow{"kind", k, p.Kinds[k]})
	}
	var kindNames []string
	if s.opts.Kinds != nil {
		kindNames = s.opts.Kinds()
	}
	s.render(w, r, http.StatusOK, "flow", sess, map[string]any{
		"Limits": s.limitRows(), "States": states, "Paused": paused, "Queues": s.queueNames(), "Kinds": kindNames,
	})
}

// limitRows are the configured limits (Options.Limits), by kind.
func (s *server) limitRows() []limitRow {
	if s.opts.Limits == nil {
		return nil
	}
	conf := s.opts.Limits()
	var out []limitRow
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		l := conf[k]
		rate := ""
		if l.Rate > 0 {
			per := l.Per
			if per <= 0 {
				per = time.Second
			}
			rate = fmt.Sprintf("%d per %s", l.Rate, per)
		}
		out = append(out, limitRow{Kind: k, Concurrency: l.Concurrency, KeyArg: l.KeyArg, Rate: rate, Burst: max(l.Burst, 1)})
	}
	return out
}

// pauseTarget reads the target of a pause or resume form: what (queue or kind) and name.
func pauseTarget(r *http.Request) (nightshift.PauseTarget, error) {
	name := strings.TrimSpace(r.PostForm.Get("name"))
	switch r.PostForm.Get("what") {
	case "queue":
		return nightshift.PauseTarget{Queue: name}, nil
	case "kind":
		return nightshift.PauseTarget{Kind: name}, nil
	}
	return nightshift.PauseTarget{}, fmt.Errorf("say what to pause: a queue or a kind")
}

func (s *server) pause(w http.ResponseWriter, r *http.Request, sess *session) {
	s.pauseOrResume(w, r, sess, true)
}

func (s *server) resume(w http.ResponseWriter, r *http.Request, sess *session) {
	s.pauseOrResume(w, r, sess, false)
}

func (s *server) pauseOrResume(w http.ResponseWriter, r *http.Request, sess *session, pause bool) {
	t, err := pauseTarget(r)
	if err == nil && t.Queue != "" && !slices.Contains(s.queueNames(), t.Queue) {
		err = fmt.Errorf("%q is not one of the app's job queues", t.Queue)
	}
	if err == nil && t.Kind == "" && t.Queue == "" {
		err = fmt.Errorf("name the queue or kind")
	}
	if err != nil {
		s.fail(w, r, sess, http.StatusBadRequest, err)
		return
	}
	done := "resumed"
	if pause {
		err, done = s.c.Pause(r.Context(), t), "paused"
	} else {
		err = s.c.Resume(r.Context(), t)
	}
	if err != nil {
		s.fail(w, r, sess, http.StatusBadGateway, err)
		return
	}
	s.redirect(w, r, s.opts.Prefix+"/flow?done="+done, http.StatusSeeOther)
}
