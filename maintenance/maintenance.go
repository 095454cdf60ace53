// Package maintenance is nightshift's built-in housekeeping job (kind
// "nightshift.maintenance"), which package schedule runs as a recurring job every night:
//
//   - it writes a daily summary of the previous UTC day to the reports container
//     (daily/<yyyy-mm-dd>.json): jobs per kind and state, failure reasons, p50/p95
//     durations, new dead letters;
//   - it deletes job statuses (with their captured logs) and results older than the
//     retention (NIGHTSHIFT_RETENTION_DAYS, default 14), and dead-letter records older
//     than theirs (NIGHTSHIFT_DEADLETTER_RETENTION_DAYS, default 90).
//
// A status is deleted only when the job is over: a terminal status last written before the
// cut-off, or a non-terminal one that cannot have a message left (nothing written and
// nothing due for longer than the retention and the queue's 7-day message life). Deletes
// are conditional on the ETag seen, so a record written meanwhile survives. The job is
// idempotent: a retry recomputes the same report and deletes what is still there.
package maintenance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Kind is the maintenance job kind.
const Kind = "nightshift.maintenance"

// Settings read by the maintenance job (app settings of the handler).
const (
	// SettingRetentionDays is how many days job statuses (with their logs) and results
	// are kept after their last change; default DefaultRetentionDays.
	SettingRetentionDays = "NIGHTSHIFT_RETENTION_DAYS"
	// SettingDeadLetterRetentionDays is how many days dead-letter records are kept after
	// the job died (or was last replayed); default DefaultDeadLetterRetentionDays.
	SettingDeadLetterRetentionDays = "NIGHTSHIFT_DEADLETTER_RETENTION_DAYS"
)

// Defaults for the settings.
const (
	DefaultRetentionDays           = 14
	DefaultDeadLetterRetentionDays = 90
)

// messageLife is how long a queue message can live after it is due (its TTL is the delay
// plus 7 days): a non-terminal status older than this has no message left to move it on.
const messageLife = 8 * 24 * time.Hour

// ReportPrefix starts the blob names of daily reports: daily/<yyyy-mm-dd>.json.
const ReportPrefix = "daily/"

// DateLayout is the layout of report dates.
const DateLayout = "2006-01-02"

// ReportBlob is the blob name of the report for a day (yyyy-mm-dd).
func ReportBlob(date string) string { return ReportPrefix + date + ".json" }

// Args are the maintenance job's arguments. The zero value is what the schedule sends.
type Args struct {
	// ReportDate (yyyy-mm-dd) is the UTC day to summarise; default the day before the job
	// was enqueued.
	ReportDate string `json:"report_date,omitempty"`
	// DryRun counts what would be deleted without deleting it.
	DryRun bool `json:"dry_run,omitempty"`
}

// Kind implements nightshift.JobArgs.
func (Args) Kind() string { return Kind }

// Config is the retention configuration.
type Config struct {
	// RetentionDays applies to statuses (with logs) and results.
	RetentionDays int
	// DeadLetterRetentionDays applies to dead-letter records.
	DeadLetterRetentionDays int
	// Extra lists more blobs to delete by age alone (last modified before the status
	// retention): package schedule adds its occurrence claims here.
	Extra []Prefix
}

// Prefix names blobs under a prefix in a container.
type Prefix struct {
	Container, Prefix string
}

// ConfigFromEnv reads the retention settings; an unset setting takes its default, a
// malformed one is an error naming the setting.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	cfg := Config{RetentionDays: DefaultRetentionDays, DeadLetterRetentionDays: DefaultDeadLetterRetentionDays}
	for _, s := range []struct {
		name string
		dst  *int
	}{{SettingRetentionDays, &cfg.RetentionDays}, {SettingDeadLetterRetentionDays, &cfg.DeadLetterRetentionDays}} {
		v := strings.TrimSpace(getenv(s.name))
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3650 {
			return cfg, &storage.SettingError{Setting: s.name, Problem: fmt.Sprintf("%q is not a whole number of days between 1 and 3650", v)}
		}
		*s.dst = n
	}
	return cfg, nil
}

// Options configure a Worker. The zero value is fine.
type Options struct {
	// Now returns the current time; default time.Now. Tests move it forward.
	Now func() time.Time
	// Concurrency bounds parallel record reads and deletes; default 16.
	Concurrency int
}

// Worker runs maintenance jobs.
type Worker struct {
	store *storage.Clients
	cfg   Config
	now   func() time.Time
	conc  int
}

// NewWorker returns the maintenance worker. opts may be nil.
func NewWorker(store *storage.Clients, cfg Config, opts *Options) *Worker {
	w := &Worker{store: store, cfg: cfg, now: time.Now, conc: 16}
	if cfg.RetentionDays <= 0 {
		w.cfg.RetentionDays = DefaultRetentionDays
	}
	if cfg.DeadLetterRetentionDays <= 0 {
		w.cfg.DeadLetterRetentionDays = DefaultDeadLetterRetentionDays
	}
	if opts != nil && opts.Now != nil {
		w.now = opts.Now
	}
	if opts != nil && opts.Concurrency > 0 {
		w.conc = opts.Concurrency
	}
	return w
}

// Register adds the maintenance worker to reg. A maintenance run is a few list and
// delete sweeps; it gets 3 attempts and 9 minutes (host.json's functionTimeout is 10).
func Register(reg *nightshift.Registry, w *Worker) error {
	return nightshift.AddWorkerSafely[Args](reg, w, &nightshift.WorkerOptions{
		MaxAttempts: 3, Timeout: 9 * time.Minute, Backoff: nightshift.ConstantBackoff(time.Minute),
	})
}

// Outcome is the maintenance job's result.
type Outcome struct {
	// Report is the report's blob name in the reports container.
	Report string `json:"report"`
	// Date is the day the report covers.
	Date string `json:"date"`
	// Jobs is the number of jobs in the report.
	Jobs int `json:"jobs"`
	// Retention is what was deleted.
	Retention Retention `json:"retention"`
}

// Work implements nightshift.Worker.
func (w *Worker) Work(ctx context.Context, job *nightshift.Job[Args]) (any, error) {
	ref := job.EnqueuedAt
	if ref.IsZero() {
		ref = w.now()
	}
	return w.Run(ctx, job.Args, ref, job.Logger)
}

// Run does one maintenance pass: the report for args.ReportDate (default the UTC day
// before ref), then the deletions.
func (w *Worker) Run(ctx context.Context, args Args, ref time.Time, log *slog.Logger) (*Outcome, error) {
	if log == nil {
		log = slog.Default()
	}
	day := ref.UTC().AddDate(0, 0, -1).Truncate(24 * time.Hour)
	if args.ReportDate != "" {
		d, err := time.Parse(DateLayout, args.ReportDate)
		if err != nil {
			return nil, nightshift.Permanentf("report_date %q is not a date (yyyy-mm-dd): %w", args.ReportDate, err)
		}
		day = d
	}
	now := w.now().UTC()
	rep, err := w.report(ctx, day, now)
	if err != nil {
		return nil, err
	}
	ret, err := w.cleanup(ctx, now, args.DryRun)
	if err != nil {
		return nil, err
	}
	rep.Retention = ret
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	name := ReportBlob(rep.Date)
	if _, err := w.store.Store().Put(ctx, w.store.Layout.ReportsContainer(), name, data, store.PutOptions{ContentType: "application/json"}); err != nil {
		return nil, fmt.Errorf("write report %s/%s: %w", w.store.Layout.ReportsContainer(), name, err)
	}
	log.Info("maintenance done", "report", name, "jobs", rep.Jobs, "deleted_statuses", ret.DeletedStatuses,
		"deleted_results", ret.DeletedResults, "deleted_dead_letters", ret.DeletedDeadLetters, "dry_run", args.DryRun)
	return &Outcome{Report: name, Date: rep.Date, Jobs: rep.Jobs, Retention: ret}, nil
}

// item is a listed blob.
type item struct {
	name string
	mod  time.Time
	etag storage.ETag
}

func (w *Worker) list(ctx context.Context, cont, prefix string) ([]item, error) {
	var out []item
	for it, err := range w.store.Store().List(ctx, cont, prefix) {
		if err != nil {
			if storage.IsNotFound(err) {
				return nil, nil // container not created yet: nothing to do
			}
			return nil, fmt.Errorf("list %s: %w", cont, err)
		}
		out = append(out, item{name: it.Name, mod: it.LastModified, etag: it.ETag})
	}
	return out, nil
}

// each runs f on every item with bounded concurrency and returns the errors joined.
func (w *Worker) each(ctx context.Context, items []item, f func(context.Context, item) error) error {
	sem := make(chan struct{}, w.conc)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := f(ctx, it); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("and %d more errors", len(errs)-5))
	}
	return errors.Join(append(errs, ctx.Err())...)
}

// download reads a JSON record (opened when it is sealed; see storage.Clients.Sealer).
func (w *Worker) download(ctx context.Context, cont, name string, v any) error {
	_, err := w.store.GetJSON(ctx, cont, name, v)
	return err
}

// deleteIf deletes a blob if it is still at etag (any version when etag is empty). A
// blob that is gone or changed meanwhile is not an error.
func (w *Worker) deleteIf(ctx context.Context, cont, name string, etag storage.ETag) (bool, error) {
	err := w.store.Store().Delete(ctx, cont, name, store.DeleteOptions{IfMatch: etag})
	switch {
	case err == nil:
		return true, nil
	case storage.IsNotFound(err) || storage.IsConflict(err):
		return false, nil
	}
	return false, fmt.Errorf("delete %s/%s: %w", cont, name, err)
}

// Retention counts what a maintenance pass deleted (or would delete, in a dry run).
type Retention struct {
	RetentionDays           int       `json:"retention_days"`
	DeadLetterRetentionDays int       `json:"deadletter_retention_days"`
	StatusCutoff            time.Time `json:"status_cutoff"`
	DeadLetterCutoff        time.Time `json:"deadletter_cutoff"`
	DryRun                  bool      `json:"dry_run,omitempty"`
	DeletedStatuses         int       `json:"deleted_statuses"`
	DeletedResults          int       `json:"deleted_results"`
	DeletedDeadLetters      int       `json:"deleted_dead_letters"`
	DeletedOther            int       `json:"deleted_other,omitempty"`
}

// cleanup applies the retention.
func (w *Worker) cleanup(ctx context.Context, now time.Time, dry bool) (Retention, error) {
	c := &cleanupRun{
		w:        w,
		dry:      dry,
		cut:      now.AddDate(0, 0, -w.cfg.RetentionDays),
		staleCut: now.Add(-max(time.Duration(w.cfg.RetentionDays)*24*time.Hour, messageLife)),
		dlCut:    now.AddDate(0, 0, -w.cfg.DeadLetterRetentionDays),
	}
	c.r = Retention{RetentionDays: w.cfg.RetentionDays, DeadLetterRetentionDays: w.cfg.DeadLetterRetentionDays,
		StatusCutoff: c.cut, DeadLetterCutoff: c.dlCut, DryRun: dry}
	for _, step := range []func(context.Context) error{c.statuses, c.results, c.deadLetters, c.extra} {
		if err := step(ctx); err != nil {
			return c.r, err
		}
	}
	return c.r, nil
}

// cleanupRun is one retention pass: its cut-offs, the counts so far, and which statuses
// still exist (results without one are orphans).
type cleanupRun struct {
	w                    *Worker
	dry                  bool
	cut, staleCut, dlCut time.Time
	mu                   sync.Mutex
	r                    Retention
	exists               map[string]bool
}

// remove deletes it unless it changed since it was listed (or only counts it in a dry
// run), adds one to *n when it is gone, and then calls gone if not nil.
func (c *cleanupRun) remove(ctx context.Context, container string, it item, n *int, gone func()) error {
	ok, err := true, error(nil)
	if !c.dry {
		ok, err = c.w.deleteIf(ctx, container, it.name, it.etag)
	}
	if ok {
		c.mu.Lock()
		*n++
		if gone != nil {
			gone()
		}
		c.mu.Unlock()
	}
	return err
}

// older returns the items last modified before cut.
func older(items []item, cut time.Time) []item {
	var out []item
	for _, it := range items {
		if it.mod.Before(cut) {
			out = append(out, it)
		}
	}
	return out
}

// statuses deletes expired statuses. A record's last write (UpdatedAt) is never after its
// blob's LastModified, so only blobs last modified before the cut-off need reading.
func (c *cleanupRun) statuses(ctx context.Context) error {
	container := c.w.store.Layout.StatusContainer()
	all, err := c.w.list(ctx, container, "")
	if err != nil {
		return err
	}
	c.exists = make(map[string]bool, len(all))
	for _, it := range all {
		c.exists[strings.TrimSuffix(it.name, ".json")] = true
	}
	return c.w.each(ctx, older(all, c.cut), func(ctx context.Context, it item) error {
		var st record.Status
		if err := c.w.download(ctx, container, it.name, &st); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			return err
		}
		if !c.statusExpired(st) {
			return nil
		}
		return c.remove(ctx, container, it, &c.r.DeletedStatuses, func() {
			c.exists[strings.TrimSuffix(it.name, ".json")] = false
		})
	})
}

// statusExpired: a terminal status untouched since the cut-off, or a non-terminal one for
// which no message can be left (nothing written or due for longer than the retention and
// a message's life).
func (c *cleanupRun) statusExpired(st record.Status) bool {
	if st.State.Terminal() {
		return st.UpdatedAt.Before(c.cut)
	}
	return st.UpdatedAt.Before(c.staleCut) && st.NextRunAt.Before(c.staleCut)
}

// results deletes results older than the cut-off and no longer backed by a status.
func (c *cleanupRun) results(ctx context.Context) error {
	container := c.w.store.Layout.ResultsContainer()
	all, err := c.w.list(ctx, container, "")
	if err != nil {
		return err
	}
	var orphan []item
	for _, it := range older(all, c.cut) {
		if !c.exists[it.name] {
			orphan = append(orphan, it)
		}
	}
	return c.w.each(ctx, orphan, func(ctx context.Context, it item) error {
		return c.remove(ctx, container, it, &c.r.DeletedResults, nil)
	})
}

// deadLetters deletes dead letters that died (or were last replayed) before their own
// cut-off.
func (c *cleanupRun) deadLetters(ctx context.Context) error {
	container := c.w.store.Layout.DeadLettersContainer()
	all, err := c.w.list(ctx, container, "")
	if err != nil {
		return err
	}
	return c.w.each(ctx, older(all, c.dlCut), func(ctx context.Context, it item) error {
		var d record.DeadLetter
		if err := c.w.download(ctx, container, it.name, &d); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			return err
		}
		last := d.DiedAt
		if d.ReplayedAt.After(last) {
			last = d.ReplayedAt
		}
		if !last.Before(c.dlCut) {
			return nil
		}
		return c.remove(ctx, container, it, &c.r.DeletedDeadLetters, nil)
	})
}

// extra deletes the blobs of the extra prefixes older than the cut-off.
func (c *cleanupRun) extra(ctx context.Context) error {
	for _, p := range c.w.cfg.Extra {
		items, err := c.w.list(ctx, p.Container, p.Prefix)
		if err != nil {
			return err
		}
		err = c.w.each(ctx, older(items, c.cut), func(ctx context.Context, it item) error {
			return c.remove(ctx, p.Container, it, &c.r.DeletedOther, nil)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
