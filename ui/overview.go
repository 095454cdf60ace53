package ui

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Bounds of the overview's storage calls (docs/dashboard.md says what a page costs).
const (
	// maxIndexed bounds the index matches one overview query goes through (10 calls).
	maxIndexed = 50_000
	// latencySample is how many ended jobs per chart bucket are read for the latency.
	latencySample = 5
	// maxKinds bounds the kinds of the states-per-kind table.
	maxKinds = 20
)

// outcomes are the terminal states the throughput chart counts.
var outcomes = []record.State{record.StateSucceeded, record.StateDead, record.StateCancelled}

// window is one chart's time range, cut into buckets.
type window struct {
	Name    string
	Start   time.Time
	Bucket  time.Duration
	Buckets int
}

func (w window) index(t time.Time) int {
	if t.Before(w.Start) {
		return -1
	}
	i := int(t.Sub(w.Start) / w.Bucket)
	if i >= w.Buckets {
		return w.Buckets - 1
	}
	return i
}

// ended is one ended job the index found.
type ended struct {
	id    string
	state record.State
	at    time.Time
}

// overviewData is the overview page's data.
type overviewData struct {
	Depths      []nightshift.QueueDepth
	Hour, Day   template.HTML
	LatHour     template.HTML
	LatDay      template.HTML
	Totals      map[string]int
	Capped      bool
	Kinds       []kindRow
	States      []record.State
	LatencyNote string
}

// kindRow is one row of the states-per-kind table.
type kindRow struct {
	Kind   string
	Counts []int
}

func (s *server) overview(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	now := s.opts.Now().UTC()
	d := &overviewData{States: States, Totals: map[string]int{}}
	var err error
	if d.Depths, err = s.c.QueueDepths(ctx); err != nil {
		s.fail(w, r, sess, http.StatusBadGateway, err)
		return
	}
	hour := window{Name: "last hour", Start: now.Add(-time.Hour).Truncate(time.Minute).Add(time.Minute), Bucket: time.Minute, Buckets: 60}
	day := window{Name: "last day", Start: now.Add(-24 * time.Hour).Truncate(time.Hour).Add(time.Hour), Bucket: time.Hour, Buckets: 24}
	ends, capped, err := s.endedSince(ctx, day.Start)
	if err != nil {
		s.fail(w, r, sess, http.StatusBadGateway, err)
		return
	}
	d.Capped = capped
	for _, e := range ends {
		d.Totals[string(e.state)]++
	}
	d.Hour = barChart(hour, ends, 1)
	d.Day = barChart(day, ends, 60)
	sample := s.readSample(ctx, ends, hour, day)
	d.LatHour = latencyChart(hour, sample)
	d.LatDay = latencyChart(day, sample)
	d.LatencyNote = fmt.Sprintf("from %d ended jobs read (up to %d per bucket)", len(sample), latencySample)
	if d.Kinds, err = s.kindTable(ctx, sample, day.Start); err != nil {
		s.fail(w, r, sess, http.StatusBadGateway, err)
		return
	}
	s.render(w, r, http.StatusOK, "overview", sess, d)
}

// endedSince asks the index for the jobs that ended (succeeded, dead, cancelled) at or
// after since: one call per 5,000 matches and state, at most maxIndexed matches a state.
func (s *server) endedSince(ctx context.Context, since time.Time) ([]ended, bool, error) {
	var out []ended
	capped := false
	for _, st := range outcomes {
		n := 0
		for it, err := range s.c.Store().FindStatuses(ctx, storage.StatusQuery{State: st, Since: since}) {
			if err != nil {
				if noIndex(err) {
					return nil, false, nil
				}
				return nil, false, err
			}
			if n++; n > maxIndexed {
				capped = true
				break
			}
			out = append(out, ended{it.JobID, st, it.Updated})
		}
	}
	return out, capped, nil
}

// latencyPoint is one read ended job: when it ended and how long after its enqueue.
type latencyPoint struct {
	kind    string
	at      time.Time
	latency time.Duration
}

// readSample reads, for each bucket of both windows, the newest latencySample ended jobs
// (succeeded or dead) and returns their enqueue→end latencies.
func (s *server) readSample(ctx context.Context, ends []ended, wins ...window) []latencyPoint {
	picked := map[string]bool{}
	for _, win := range wins {
		per := make([][]ended, win.Buckets)
		for _, e := range ends {
			if e.state == record.StateCancelled {
				continue
			}
			if i := win.index(e.at); i >= 0 {
				per[i] = append(per[i], e)
			}
		}
		for _, b := range per {
			sort.Slice(b, func(i, j int) bool { return b[i].at.After(b[j].at) })
			for i := 0; i < len(b) && i < latencySample; i++ {
				picked[b[i].id] = true
			}
		}
	}
	ids := make([]string, 0, len(picked))
	for id := range picked {
		ids = append(ids, id)
	}
	out := make([]*latencyPoint, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			st, err := s.c.Status(ctx, id)
			if err != nil || st.EnqueuedAt.IsZero() || st.FinishedAt.IsZero() {
				return
			}
			out[i] = &latencyPoint{kind: st.Kind, at: st.FinishedAt, latency: st.FinishedAt.Sub(st.EnqueuedAt)}
		}()
	}
	wg.Wait()
	var res []latencyPoint
	for _, p := range out {
		if p != nil {
			res = append(res, *p)
		}
	}
	return res
}

// kindTable counts each kind's jobs per state, updated since since: one index call per
// kind and state (per 5,000 matches). The kinds are Options.Kinds', else those met in the
// sample.
func (s *server) kindTable(ctx context.Context, sample []latencyPoint, since time.Time) ([]kindRow, error) {
	var kinds []string
	if s.opts.Kinds != nil {
		kinds = s.opts.Kinds()
	} else {
		for _, p := range sample {
			if p.kind != "" && !slices.Contains(kinds, p.kind) {
				kinds = append(kinds, p.kind)
			}
		}
	}
	slices.Sort(kinds)
	if len(kinds) > maxKinds {
		kinds = kinds[:maxKinds]
	}
	var rows []kindRow
	for _, k := range kinds {
		row := kindRow{Kind: k, Counts: make([]int, len(States))}
		for i, st := range States {
			n, err := s.count(ctx, storage.StatusQuery{State: st, Kind: k, Since: since})
			if err != nil {
				return nil, err
			}
			row.Counts[i] = n
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// count counts the index matches of q, up to maxIndexed.
func (s *server) count(ctx context.Context, q storage.StatusQuery) (int, error) {
	n := 0
	for _, err := range s.c.Store().FindStatuses(ctx, q) {
		if err != nil {
			if noIndex(err) {
				return 0, nil
			}
			return 0, err
		}
		if n++; n >= maxIndexed {
			break
		}
	}
	return n, nil
}

// noIndex reports whether err says the index cannot be asked: a store without one, or a
// credential without the index-tags role. The overview then shows no counts.
func noIndex(err error) bool {
	return errors.Is(err, storage.ErrNoIndex) || errors.Is(err, store.ErrForbidden)
}

// Chart geometry (SVG user units).
const (
	chartW, chartH = 600.0, 160.0
	padL, padB     = 44.0, 20.0
)

// stateColor is each outcome's colour in the charts (the legend in style.css matches).
var stateColor = map[record.State]string{record.StateSucceeded: "#2e7d32", record.StateDead: "#c62828", record.StateCancelled: "#757575"}

// barChart draws jobs per minute by outcome, one stacked bar per bucket; perMinute divides
// a bucket's count into a per-minute rate.
func barChart(win window, ends []ended, perMinute float64) template.HTML {
	counts := map[record.State][]float64{}
	for _, st := range outcomes {
		counts[st] = make([]float64, win.Buckets)
	}
	for _, e := range ends {
		if i := win.index(e.at); i >= 0 {
			counts[e.state][i] += 1 / perMinute
		}
	}
	top := 1.0
	for i := 0; i < win.Buckets; i++ {
		top = max(top, counts[record.StateSucceeded][i]+counts[record.StateDead][i]+counts[record.StateCancelled][i])
	}
	var b strings.Builder
	svgOpen(&b, fmt.Sprintf("jobs per minute by outcome, %s", win.Name), top, "/min")
	bw := (chartW - padL) / float64(win.Buckets)
	for i := 0; i < win.Buckets; i++ {
		y := chartH - padB
		for _, st := range outcomes {
			v := counts[st][i]
			if v == 0 {
				continue
			}
			h := v / top * (chartH - padB - 10)
			y -= h
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %.2f/min</title></rect>`,
				padL+float64(i)*bw+0.5, y, max(bw-1, 0.5), h, stateColor[st], win.Start.Add(time.Duration(i)*win.Bucket).Format("15:04"), st, v)
		}
	}
	svgAxis(&b, win)
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // numbers and fixed words only
}

// latencyChart draws the p50 and p95 enqueue→end latency of each bucket's sample.
func latencyChart(win window, sample []latencyPoint) template.HTML {
	per := make([][]time.Duration, win.Buckets)
	for _, p := range sample {
		if i := win.index(p.at); i >= 0 {
			per[i] = append(per[i], p.latency)
		}
	}
	p50 := make([]float64, win.Buckets)
	p95 := make([]float64, win.Buckets)
	top := 0.001
	for i, ls := range per {
		if len(ls) == 0 {
			p50[i], p95[i] = -1, -1
			continue
		}
		slices.Sort(ls)
		p50[i], p95[i] = quantile(ls, 0.5).Seconds(), quantile(ls, 0.95).Seconds()
		top = max(top, p95[i])
	}
	var b strings.Builder
	svgOpen(&b, fmt.Sprintf("enqueue to end latency p50 and p95, %s", win.Name), top, "s")
	line(&b, win, p50, top, "#1565c0", "p50")
	line(&b, win, p95, top, "#ef6c00", "p95")
	svgAxis(&b, win)
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // numbers and fixed words only
}

// quantile returns the q-quantile of sorted ls (nearest rank).
func quantile(ls []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(ls))+0.999999) - 1
	return ls[min(max(i, 0), len(ls)-1)]
}

func line(b *strings.Builder, win window, vals []float64, top float64, color, name string) {
	bw := (chartW - padL) / float64(win.Buckets)
	var pts []string
	for i, v := range vals {
		if v < 0 {
			continue
		}
		x := padL + (float64(i)+0.5)*bw
		y := chartH - padB - v/top*(chartH-padB-10)
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="2" fill="%s"><title>%s %s: %.3fs</title></circle>`, x, y, color, name, win.Start.Add(time.Duration(i)*win.Bucket).Format("15:04"), v)
	}
	if len(pts) > 1 {
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, color, strings.Join(pts, " "))
	}
}

func svgOpen(b *strings.Builder, title string, top float64, unit string) {
	fmt.Fprintf(b, `<svg class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg"><title>%s</title>`, chartW, chartH, title, title)
	fmt.Fprintf(b, `<line x1="%.0f" y1="10" x2="%.0f" y2="%.0f" stroke="#999"/>`, padL, padL, chartH-padB)
	fmt.Fprintf(b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#999"/>`, padL, chartH-padB, chartW, chartH-padB)
	fmt.Fprintf(b, `<text x="%.0f" y="16" font-size="10" text-anchor="end" fill="#555">%s%s</text>`, padL-4, fmtNum(top), unit)
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" font-size="10" text-anchor="end" fill="#555">0</text>`, padL-4, chartH-padB)
}

func svgAxis(b *strings.Builder, win window) {
	bw := (chartW - padL) / float64(win.Buckets)
	step := max(win.Buckets/6, 1)
	for i := 0; i < win.Buckets; i += step {
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" font-size="10" fill="#555">%s</text>`, padL+float64(i)*bw, chartH-5, win.Start.Add(time.Duration(i)*win.Bucket).Format("15:04"))
	}
}

func fmtNum(f float64) string {
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f", f)
	case f >= 1:
		return fmt.Sprintf("%.1f", f)
	}
	return fmt.Sprintf("%.3f", f)
}
