package maintenance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"encoding/json"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Report is the daily summary: every job whose status was last written during the day
// (UTC), and every dead letter recorded that day.
type Report struct {
	// Date is the day (yyyy-mm-dd, UTC); From and To bound it.
	Date        string    `json:"date"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	GeneratedAt time.Time `json:"generated_at"`
	// Jobs counts the jobs; ByState splits them by state.
	Jobs    int                  `json:"jobs"`
	ByState map[record.State]int `json:"by_state"`
	// Kinds has one entry per kind, in name order.
	Kinds []KindSummary `json:"kinds"`
	// Failures groups the last error of failed, retrying and retried jobs, most frequent
	// first (at most MaxFailures).
	Failures []Failure `json:"failures"`
	// DeadLetters counts the dead letters recorded during the day, by reason.
	DeadLetters map[record.DeadReason]int `json:"dead_letters"`
	// Retention is what the same maintenance pass deleted.
	Retention Retention `json:"retention"`
}

// clockSlack allows for the difference between a writer's clock and the storage's.
const clockSlack = 5 * time.Minute

// MaxFailures bounds the failure groups in a report.
const MaxFailures = 20

// KindSummary is one kind's line in the report.
type KindSummary struct {
	Kind    string               `json:"kind"`
	Jobs    int                  `json:"jobs"`
	ByState map[record.State]int `json:"by_state"`
	// Retried counts jobs that needed more than one attempt.
	Retried int `json:"retried"`
	// Duration summarises the run time of the last attempt of finished jobs.
	Duration Durations `json:"duration_ms"`
}

// Durations are nearest-rank percentiles of run times, in milliseconds.
type Durations struct {
	Count int   `json:"count"`
	P50   int64 `json:"p50"`
	P95   int64 `json:"p95"`
	Max   int64 `json:"max"`
}

// Failure is a group of jobs that failed the same way.
type Failure struct {
	Kind string `json:"kind"`
	// State is the jobs' state (dead, retrying, or succeeded after retries).
	State record.State `json:"state"`
	// Class is the error class of the last failed attempt (retryable, permanent, panic,
	// timeout, cancelled, host).
	Class string `json:"class,omitempty"`
	// Error is the error text (first line, at most 200 bytes).
	Error string `json:"error"`
	Count int    `json:"count"`
	// Example is one job id of the group.
	Example string `json:"example"`
}

// report builds the summary of the UTC day starting at day.
func (w *Worker) report(ctx context.Context, day, now time.Time) (*Report, error) {
	l := w.store.Layout
	from := day.UTC().Truncate(24 * time.Hour)
	to := from.Add(24 * time.Hour)
	rep := &Report{Date: from.Format(DateLayout), From: from, To: to, GeneratedAt: now,
		ByState: map[record.State]int{}, DeadLetters: map[record.DeadReason]int{}}

	cand, err := w.dayStatuses(ctx, from, to)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var dayStatuses []*record.Status
	err = w.each(ctx, cand, func(ctx context.Context, it item) error {
		var st record.Status
		if err := w.download(ctx, l.StatusContainer(), it.name, &st); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			return err
		}
		if st.UpdatedAt.Before(from) || !st.UpdatedAt.Before(to) {
			return nil
		}
		mu.Lock()
		dayStatuses = append(dayStatuses, &st)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	summarise(rep, dayStatuses)

	dls, err := w.list(ctx, l.DeadLettersContainer(), "")
	if err != nil {
		return nil, err
	}
	var dcand []item
	for _, it := range dls {
		if !it.mod.Before(from) {
			dcand = append(dcand, it)
		}
	}
	err = w.each(ctx, dcand, func(ctx context.Context, it item) error {
		var d record.DeadLetter
		if err := w.download(ctx, l.DeadLettersContainer(), it.name, &d); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			return err
		}
		if d.DiedAt.Before(from) || !d.DiedAt.Before(to) {
			return nil
		}
		mu.Lock()
		rep.DeadLetters[d.Reason]++
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// dayStatuses returns the status records that may have been last written during [from,
// to): through the index (their TagUpdated tag, the record's UpdatedAt), so the pass reads
// only the day's records and lists nothing; on a store without an index, from the
// listing: every write of a status sets UpdatedAt just before the upload, so a record last
// written during the day was last modified during it (give the writer's clock a few
// minutes). Records written before the index have no tags and are counted once `nightshift
// jobs reindex` has tagged them.
func (w *Worker) dayStatuses(ctx context.Context, from, to time.Time) ([]item, error) {
	var cand []item
	for it, err := range w.store.FindStatuses(ctx, storage.StatusQuery{Since: from, Until: to}) {
		if errors.Is(err, storage.ErrNoIndex) || errors.Is(err, store.ErrForbidden) {
			return w.listDay(ctx, from, to)
		}
		if err != nil {
			if storage.IsNotFound(err) {
				return nil, nil // container not created yet: nothing to do
			}
			return nil, err
		}
		cand = append(cand, item{name: storage.StatusBlob(it.JobID), mod: it.Updated})
	}
	return cand, nil
}

// listDay is dayStatuses from the listing.
func (w *Worker) listDay(ctx context.Context, from, to time.Time) ([]item, error) {
	statuses, err := w.list(ctx, w.store.Layout.StatusContainer(), "")
	if err != nil {
		return nil, err
	}
	var cand []item
	for _, it := range statuses {
		if !it.mod.Before(from) && it.mod.Before(to.Add(clockSlack)) {
			cand = append(cand, it)
		}
	}
	return cand, nil
}

// summarise fills the job counts, kinds, durations and failures from the day's statuses.
func summarise(rep *Report, sts []*record.Status) {
	sort.Slice(sts, func(i, j int) bool { return sts[i].JobID < sts[j].JobID })
	kinds := map[string]*KindSummary{}
	durs := map[string][]int64{}
	type fkey struct {
		kind  string
		state record.State
		class string
		err   string
	}
	fails := map[fkey]*Failure{}
	for _, st := range sts {
		rep.Jobs++
		rep.ByState[st.State]++
		k := kinds[st.Kind]
		if k == nil {
			k = &KindSummary{Kind: st.Kind, ByState: map[record.State]int{}}
			kinds[st.Kind] = k
		}
		k.Jobs++
		k.ByState[st.State]++
		if st.Attempt > 1 {
			k.Retried++
		}
		if st.State == record.StateSucceeded || st.State == record.StateDead {
			durs[st.Kind] = append(durs[st.Kind], st.DurationMS)
		}
		msg, class := st.LastError, ""
		if n := len(st.Errors); n > 0 {
			class = st.Errors[n-1].Class
			if msg == "" {
				msg = st.Errors[n-1].Error
			}
		}
		if msg == "" {
			continue
		}
		key := fkey{st.Kind, st.State, class, firstLine(msg, 200)}
		f := fails[key]
		if f == nil {
			f = &Failure{Kind: key.kind, State: key.state, Class: key.class, Error: key.err, Example: st.JobID}
			fails[key] = f
		}
		f.Count++
	}
	for _, k := range kinds {
		k.Duration = percentiles(durs[k.Kind])
		rep.Kinds = append(rep.Kinds, *k)
	}
	sort.Slice(rep.Kinds, func(i, j int) bool { return rep.Kinds[i].Kind < rep.Kinds[j].Kind })
	for _, f := range fails {
		rep.Failures = append(rep.Failures, *f)
	}
	sort.Slice(rep.Failures, func(i, j int) bool {
		a, b := rep.Failures[i], rep.Failures[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Error < b.Error
	})
	if len(rep.Failures) > MaxFailures {
		rep.Failures = rep.Failures[:MaxFailures]
	}
	if rep.Kinds == nil {
		rep.Kinds = []KindSummary{}
	}
	if rep.Failures == nil {
		rep.Failures = []Failure{}
	}
}

// percentiles returns nearest-rank p50/p95 and the maximum.
func percentiles(ms []int64) Durations {
	if len(ms) == 0 {
		return Durations{}
	}
	s := append([]int64(nil), ms...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := func(p float64) int64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return Durations{Count: len(s), P50: rank(0.50), P95: rank(0.95), Max: s[len(s)-1]}
}

func firstLine(s string, n int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	if len(s) > n {
		cut := n
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// ReadReport reads the report for a day (yyyy-mm-dd); an empty date means the latest
// report. A missing report is storage.ErrNotFound (wrapped).
func ReadReport(ctx context.Context, store *storage.Clients, date string) (*Report, error) {
	cont := store.Layout.ReportsContainer()
	if date == "" {
		dates, err := ReportDates(ctx, store)
		if err != nil {
			return nil, err
		}
		if len(dates) == 0 {
			return nil, fmt.Errorf("no reports in %s yet (the maintenance job writes one a day): %w", cont, storage.ErrNotFound)
		}
		date = dates[len(dates)-1]
	} else if _, err := time.Parse(DateLayout, date); err != nil {
		return nil, fmt.Errorf("report date %q is not yyyy-mm-dd", date)
	}
	b, _, err := store.Store().Get(ctx, cont, ReportBlob(date), 0)
	if err != nil {
		if storage.IsNotFound(err) {
			return nil, fmt.Errorf("no report for %s in %s: %w", date, cont, storage.ErrNotFound)
		}
		return nil, fmt.Errorf("read report %s: %w", date, err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("report %s is not valid JSON: %w", date, err)
	}
	return &r, nil
}

// ReportDates lists the days that have a report, oldest first.
func ReportDates(ctx context.Context, store *storage.Clients) ([]string, error) {
	w := &Worker{store: store}
	items, err := w.list(ctx, store.Layout.ReportsContainer(), ReportPrefix)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, it := range items {
		d := strings.TrimSuffix(strings.TrimPrefix(it.name, ReportPrefix), ".json")
		if _, err := time.Parse(DateLayout, d); err == nil {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out, nil
}
