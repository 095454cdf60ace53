package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/internal/delayed"
	"github.com/nightshift-jobs/nightshift/internal/ncrontab"
	"github.com/nightshift-jobs/nightshift/maintenance"
	"github.com/nightshift-jobs/nightshift/storage"
)

// SettingMaintenanceSchedule overrides the built-in maintenance job's schedule
// (DefaultMaintenanceSchedule); the generated functions/RecurringMaintenance/function.json
// references it, so every deployment must set it.
const SettingMaintenanceSchedule = SettingPrefix + "MAINTENANCE"

// DefaultMaintenanceSchedule runs maintenance at 02:30 every day (UTC on Flex).
const DefaultMaintenanceSchedule = "0 30 2 * * *"

// Maintenance is the declaration of the built-in maintenance job (package maintenance).
func Maintenance() Recurring {
	return Recurring{
		Name:        "Maintenance",
		Schedule:    DefaultMaintenanceSchedule,
		Args:        maintenance.Args{},
		PastDue:     PastDueRunOnce,
		Description: "daily report of yesterday's jobs; deletes statuses, results and dead letters past their retention",
	}
}

// Builtin returns the recurring jobs every nightshift handler runs: maintenance.
func Builtin() []Recurring { return []Recurring{Maintenance()} }

// Options configure Setup. The zero value serves the built-in recurring jobs and the
// sweeper with the process environment.
type Options struct {
	// Recurring are the app's own recurring jobs, served next to Builtin(). Their
	// function.json files must be generated (WriteFunctions / `nightshift generate`).
	Recurring []Recurring
	// NoBuiltins leaves out the built-in maintenance job.
	NoBuiltins bool
	// Getenv reads app settings (schedule overrides, retention); default os.Getenv.
	Getenv func(string) string
	// Logger receives what the timer functions do; default slog.Default().
	Logger *slog.Logger
	// Location is the time zone the host evaluates schedules in (§3.2): UTC on Flex
	// Consumption, the default. It only matters when the host sends no schedule status
	// (monitor off) and the occurrence is worked out from the clock.
	Location *time.Location
	// Lookahead is how early the sweeper moves a delayed job to its queue (invisible
	// until due); default delayed.DefaultLookahead.
	Lookahead time.Duration
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Maintenance tunes the maintenance worker (tests move its clock).
	Maintenance *maintenance.Options
}

// Setup returns the function to put in nightshift.ServeOptions.Setup: it registers the
// maintenance worker on reg, serves one timer function per recurring job
// (Recurring<Name>) and the ScheduleSweep timer. It fails when a declaration is invalid or
// a retention setting is malformed.
func Setup(reg *nightshift.Registry, opts *Options) func(h *nightshift.Handler, store *storage.Clients) error {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	return func(h *nightshift.Handler, store *storage.Clients) error {
		return install(reg, store, o, func(f nightshift.FunctionSpec) error {
			h.Handle(f.Name, f.Serve)
			return nil
		})
	}
}

// install registers the maintenance worker on reg and passes add the timer functions:
// one per recurring job (Recurring<Name>) and the ScheduleSweep timer.
func install(reg *nightshift.Registry, store *storage.Clients, o Options, add func(nightshift.FunctionSpec) error) error {
	r, err := newRunner(store, o)
	if err != nil {
		return err
	}
	if !o.NoBuiltins {
		cfg, err := maintenance.ConfigFromEnv(r.getenv)
		if err != nil {
			return err
		}
		cfg.Extra = append(cfg.Extra, maintenance.Prefix{Container: store.Layout.ScheduleContainer(), Prefix: ClaimPrefix})
		if err := maintenance.Register(reg, maintenance.NewWorker(store, cfg, o.Maintenance)); err != nil {
			return err
		}
	}
	for _, d := range r.decls {
		if err := add(d.timerFunction(r.fireFunc(d))); err != nil {
			return err
		}
	}
	if err := add(sweepFunction(DefaultSweepSchedule, r.sweep)); err != nil {
		return err
	}
	r.checkAppFolder()
	return nil
}

// runner serves the timer functions.
type runner struct {
	store     *storage.Clients
	client    *nightshift.Client
	sched     *delayed.Store
	decls     []Recurring
	parsed    map[string]*ncrontab.Schedule
	getenv    func(string) string
	log       *slog.Logger
	loc       *time.Location
	now       func() time.Time
	lookahead time.Duration
}

func newRunner(store *storage.Clients, o Options) (*runner, error) {
	r := &runner{store: store, getenv: o.Getenv, log: o.Logger, loc: o.Location, now: o.Now, lookahead: o.Lookahead,
		parsed: map[string]*ncrontab.Schedule{}}
	if r.getenv == nil {
		r.getenv = os.Getenv
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.loc == nil {
		r.loc = time.UTC
	}
	if r.now == nil {
		r.now = time.Now
	}
	if !o.NoBuiltins {
		r.decls = append(r.decls, Builtin()...)
	}
	r.decls = append(r.decls, o.Recurring...)
	if err := Validate(r.decls); err != nil {
		return nil, err
	}
	for _, d := range r.decls {
		s, err := d.parsedSchedule(r.getenv)
		if err != nil {
			// The host refuses such an expression too (or, for a 5-field one, runs it):
			// say so loudly, and work out occurrences from the host's schedule status or,
			// failing that, the declared default.
			r.log.Error("recurring job schedule setting is not a 6-field NCRONTAB expression; using the declared default to name occurrences",
				"recurring", d.Name, "error", err.Error())
			s, _ = d.parsedSchedule(nil)
		}
		r.parsed[d.Name] = s
	}
	r.client = nightshift.NewClient(store, &nightshift.ClientOptions{Now: r.now})
	r.sched = delayed.New(store, &delayed.Options{Now: r.now, Logger: r.log})
	return r, nil
}

// envAppRoot is set by the Functions host for the handler process: the app root, where
// the function folders are (docs/host-contract.md §1.2). Not an app setting.
const envAppRoot = "FUNCTIONS_APP_ROOT_PATH"

// checkAppFolder warns about declarations whose timer function is missing from the app
// (not generated, or generated from other declarations): such a job never fires.
func (r *runner) checkAppFolder() {
	root := r.getenv(envAppRoot)
	if root == "" {
		return
	}
	want := map[string]string{SweepFunction: ""}
	for _, d := range r.decls {
		want[d.FunctionName()] = "%" + d.Setting() + "%"
	}
	for fn, sched := range want {
		b, err := os.ReadFile(filepath.Join(root, fn, "function.json"))
		if err != nil {
			r.log.Warn("timer function missing from the app: it will never fire; run `nightshift generate` (or schedule.WriteFunctions) and redeploy",
				"function", fn, "app_root", root)
			continue
		}
		if sched != "" && !strings.Contains(string(b), `"`+sched+`"`) {
			r.log.Warn("timer function does not take its schedule from its app setting; regenerate it", "function", fn, "setting", sched)
		}
	}
}

// Meta keys set on occurrence jobs.
const (
	// MetaRecurring names the recurring job declaration.
	MetaRecurring = "nightshift_recurring"
	// MetaOccurrence is the occurrence (RFC 3339, UTC).
	MetaOccurrence = "nightshift_occurrence"
	// MetaTrigger is "schedule", "past_due" or "startup".
	MetaTrigger = "nightshift_trigger"
)

// Fire triggers.
const (
	TriggerSchedule = "schedule"
	TriggerPastDue  = "past_due"
	TriggerStartup  = "startup"
)

// occurrence works out which occurrence a timer invocation stands for (§1.6, §3.4):
//   - monitor on, normal fire: ScheduleStatus.Next is the occurrence being fired;
//   - past-due catch-up: ScheduleStatus.Next is the (first) missed occurrence;
//   - runOnStartup fire: Next is still in the future; the occurrence is the start time;
//   - monitor off (ScheduleStatus null; sub-minute schedules): the occurrence nearest the
//     clock; a fire far from any occurrence with runOnStartup set is a startup fire.
func occurrence(d Recurring, s *ncrontab.Schedule, ti *hostproto.TimerInfo, now time.Time) (time.Time, string) {
	if st := ti.ScheduleStatus; st != nil && !st.Next.IsZero() {
		switch {
		case ti.IsPastDue:
			return st.Next, TriggerPastDue
		case st.Next.Sub(now) > 2*time.Second:
			return now.Truncate(time.Second), TriggerStartup
		default:
			return st.Next, TriggerSchedule
		}
	}
	trigger := TriggerSchedule
	if ti.IsPastDue {
		trigger = TriggerPastDue
	}
	occ := time.Time{}
	if s != nil {
		occ = nearest(s, now)
	}
	if occ.IsZero() || (d.RunOnStartup && now.Sub(occ) > time.Second) {
		return now.Truncate(time.Second), TriggerStartup
	}
	return occ, trigger
}

// fireFunc serves a recurring job's timer function: one job per occurrence.
func (r *runner) fireFunc(d Recurring) nightshift.FunctionFunc {
	return func(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
		ti, err := inv.Request.Timer(TimerBinding)
		if err != nil {
			return nil, err
		}
		now := r.now().In(r.loc)
		occ, trigger := occurrence(d, r.parsed[d.Name], ti, now)
		id := d.JobID(occ)
		log := r.log.With("recurring", d.Name, "job_id", id, "occurrence", occ.UTC().Format(time.RFC3339), "trigger", trigger, "invocation_id", inv.ID)
		if trigger == TriggerPastDue && d.Policy() == PastDueSkip {
			log.Info("past-due occurrence skipped (policy skip)", "outcome", "skipped")
			return &hostproto.InvokeResponse{Logs: []string{fmt.Sprintf("recurring job %s: past-due occurrence %s skipped (past-due policy skip)", d.Name, occ.UTC().Format(time.RFC3339))}}, nil
		}
		outcome, err := r.enqueueOnce(ctx, d, occ, id, trigger, inv.ID)
		if err != nil {
			log.Error("recurring job not enqueued", "error", err.Error())
			return nil, fmt.Errorf("recurring job %s, occurrence %s: %w", d.Name, occ.UTC().Format(time.RFC3339), err)
		}
		log.Info("recurring job fired", "outcome", outcome)
		return &hostproto.InvokeResponse{
			Logs:        []string{fmt.Sprintf("recurring job %s: occurrence %s (%s) → job %s: %s", d.Name, occ.UTC().Format(time.RFC3339), trigger, id, outcome)},
			ReturnValue: map[string]string{"job_id": id, "outcome": outcome},
		}, nil
	}
}

// sweep serves ScheduleSweep.
func (r *runner) sweep(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
	res, err := r.sched.Sweep(ctx, r.lookahead)
	line := fmt.Sprintf("schedule sweep: moved %d, dropped %d (cancelled), busy %d (other sweeper), failed %d", res.Moved, res.Dropped, res.Busy, res.Failed)
	if err != nil {
		r.log.Error("schedule sweep failed", "error", err.Error(), "moved", res.Moved, "failed", res.Failed, "invocation_id", inv.ID)
		return nil, fmt.Errorf("%s: %w", line, err)
	}
	if res.Moved+res.Dropped > 0 {
		r.log.Info("schedule sweep", "moved", res.Moved, "dropped", res.Dropped, "busy", res.Busy, "invocation_id", inv.ID)
	}
	return &hostproto.InvokeResponse{Logs: []string{line}, ReturnValue: res}, nil
}

// isExists reports whether err says the job id is taken.
func isExists(err error) bool {
	return errors.Is(err, nightshift.ErrJobExists) || errors.Is(err, delayed.ErrJobExists)
}
