// Package schedule turns scheduled work into nightshift jobs: recurring jobs declared in
// Go and fired by Functions timer triggers, and delayed jobs due beyond the queue's 7-day
// visibility limit (held in Blob by package internal/delayed and moved to their queue by
// the ScheduleSweep timer). Every occurrence becomes an ordinary job, so it gets retries,
// a status, a result and a dead letter like any other.
//
// A recurring job is declared once, in Go:
//
//	nightly := schedule.Recurring{
//		Name:     "NightlyStats",
//		Schedule: "0 0 3 * * *", // 03:00 every day (6-field NCRONTAB, UTC on Flex)
//		Args:     CSVStatsArgs{Container: "uploads", Blob: "daily.csv"},
//		PastDue:  schedule.PastDueRunOnce,
//	}
//
// Each declaration is backed by a timer function, functions/Recurring<Name>/function.json,
// which WriteFunctions (or `nightshift generate`) writes from the declarations; its
// schedule is the app setting %NIGHTSHIFT_SCHEDULE_<NAME>%, so every environment can
// move it without a code change. Setup wires the timer functions, the sweeper and the
// built-in maintenance job into the handler. docs/scheduling.md has the full story.
package schedule

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/ncrontab"
)

// SettingPrefix starts the app setting that holds a recurring job's schedule:
// NIGHTSHIFT_SCHEDULE_<NAME> (the name upper-cased, words separated by '_'). It is a
// prefix, not a setting itself.
const SettingPrefix = "NIGHTSHIFT_SCHEDULE_"

// FunctionPrefix starts the name of a recurring job's timer function: Recurring<Name>.
const FunctionPrefix = "Recurring"

// TimerBinding is the name of the timer trigger binding in generated function.json files.
const TimerBinding = nightshift.TimerBinding

// PastDuePolicy says what a recurring job does with the single catch-up invocation the
// Functions host makes when it (re)starts after missing one or more occurrences
// (docs/host-contract.md §3.4). However many were missed, there is one catch-up.
type PastDuePolicy string

// Past-due policies.
const (
	// PastDueRunOnce runs the job once for the missed occurrences (the default).
	PastDueRunOnce PastDuePolicy = "run_once"
	// PastDueSkip drops the catch-up; the job next runs at its next occurrence.
	PastDueSkip PastDuePolicy = "skip"
)

// Recurring declares a job that runs on a schedule.
type Recurring struct {
	// Name identifies the declaration: 1–40 letters and digits starting with an upper-case
	// letter (CamelCase). It names the timer function (Recurring<Name>), the schedule
	// setting (NIGHTSHIFT_SCHEDULE_<NAME>) and the occurrence job ids
	// (cron-<name>-<occurrence unix seconds>).
	Name string
	// Schedule is the default 6-field NCRONTAB expression, evaluated by the Functions
	// host in its time zone (UTC on Flex Consumption and Linux plans, §3.2). The app setting
	// NIGHTSHIFT_SCHEDULE_<NAME> overrides it per environment.
	Schedule string
	// Args are the job's arguments; the kind is Args.Kind(). Leave nil and set Kind (and
	// RawArgs) for a kind whose Go type is not at hand.
	Args nightshift.JobArgs
	// Kind and RawArgs are used when Args is nil.
	Kind    string
	RawArgs json.RawMessage
	// PastDue is the past-due policy; default PastDueRunOnce.
	PastDue PastDuePolicy
	// RunOnStartup also runs the job whenever the host starts (every restart and
	// scale-out, §3.4); rarely what you want.
	RunOnStartup bool
	// Queue is the queue the jobs go to (full name); default the jobs queue.
	Queue string
	// MaxAttempts and Timeout override the kind's defaults for these jobs.
	MaxAttempts int
	Timeout     time.Duration
	// Description is shown by `nightshift schedules`.
	Description string
}

var nameRE = regexp.MustCompile(`^[A-Z][A-Za-z0-9]{0,39}$`)

// FunctionName is the name of the declaration's timer function (its folder in functions/).
func (r Recurring) FunctionName() string { return FunctionPrefix + r.Name }

// Setting is the app setting that overrides the declaration's schedule:
// NIGHTSHIFT_SCHEDULE_ + the name in upper snake case ("NightlyCSVStats" →
// NIGHTSHIFT_SCHEDULE_NIGHTLY_CSV_STATS).
func (r Recurring) Setting() string { return SettingPrefix + upperSnake(r.Name) }

// JobKind is the kind of the declaration's jobs.
func (r Recurring) JobKind() string {
	if r.Args != nil {
		return r.Args.Kind()
	}
	return r.Kind
}

// JobArgs returns the JSON arguments of the declaration's jobs.
func (r Recurring) JobArgs() (json.RawMessage, error) {
	if r.Args == nil {
		return r.RawArgs, nil
	}
	b, err := json.Marshal(r.Args)
	if err != nil {
		return nil, fmt.Errorf("recurring job %s: args %T do not encode as JSON: %w", r.Name, r.Args, err)
	}
	return b, nil
}

// Policy returns the past-due policy with its default applied.
func (r Recurring) Policy() PastDuePolicy {
	if r.PastDue == "" {
		return PastDueRunOnce
	}
	return r.PastDue
}

// JobID is the id of the job for the occurrence at t: cron-<name lower-cased>-<unix
// seconds>. Every fire for the same occurrence gets the same id, so a duplicate fire
// cannot make a second job.
func (r Recurring) JobID(occurrence time.Time) string {
	return JobIDPrefix(r.Name) + strconv.FormatInt(occurrence.Unix(), 10)
}

// JobIDPrefix is the prefix of every occurrence job id of the named declaration.
func JobIDPrefix(name string) string { return "cron-" + strings.ToLower(name) + "-" }

// OccurrenceOf parses the occurrence time out of a job id made by JobID for name.
func OccurrenceOf(name, jobID string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(jobID, JobIDPrefix(name))
	if !ok {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(rest, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(sec, 0).UTC(), true
}

// EffectiveSchedule returns the schedule in force: the app setting when it is set (getenv
// may be nil), else the declared default, with where it came from.
func (r Recurring) EffectiveSchedule(getenv func(string) string) (expr, source string) {
	if getenv != nil {
		if v := strings.TrimSpace(getenv(r.Setting())); v != "" {
			return v, "app setting " + r.Setting()
		}
	}
	return r.Schedule, "recurring job " + r.Name
}

// parsedSchedule parses the effective schedule (see EffectiveSchedule); errors are
// *ExprError values naming the source and the position.
func (r Recurring) parsedSchedule(getenv func(string) string) (*ncrontab.Schedule, error) {
	expr, src := r.EffectiveSchedule(getenv)
	s, err := parseExpr(expr)
	if err != nil {
		if ee, ok := err.(*ExprError); ok {
			ee.Source = src
		}
		return nil, err
	}
	return s, nil
}

// Validate checks the declaration: its name, kind, args, policy and default schedule.
func (r Recurring) Validate() error {
	if !nameRE.MatchString(r.Name) {
		return fmt.Errorf("recurring job name %q: must be 1–40 letters and digits starting with an upper-case letter (it becomes the function name %s<Name>)", r.Name, FunctionPrefix)
	}
	if r.Args != nil && (r.Kind != "" || len(r.RawArgs) > 0) {
		return fmt.Errorf("recurring job %s: set Args, or Kind and RawArgs, not both", r.Name)
	}
	if p := envelope.ValidKind(r.JobKind()); p != "" {
		return fmt.Errorf("recurring job %s: kind %s", r.Name, p)
	}
	args, err := r.JobArgs()
	if err != nil {
		return err
	}
	if len(args) > 0 && !json.Valid(args) {
		return fmt.Errorf("recurring job %s: RawArgs is not valid JSON", r.Name)
	}
	switch r.PastDue {
	case "", PastDueRunOnce, PastDueSkip:
	default:
		return fmt.Errorf("recurring job %s: past-due policy %q; expected %q or %q", r.Name, r.PastDue, PastDueRunOnce, PastDueSkip)
	}
	if r.MaxAttempts < 0 || r.Timeout < 0 {
		return fmt.Errorf("recurring job %s: MaxAttempts and Timeout must not be negative", r.Name)
	}
	if _, err := r.parsedSchedule(nil); err != nil {
		return err
	}
	return nil
}

// Validate checks a list of declarations: each one, and that names (compared
// case-insensitively, as job ids and function names are) are unique.
func Validate(decls []Recurring) error {
	seen := map[string]string{}
	for _, d := range decls {
		if err := d.Validate(); err != nil {
			return err
		}
		k := strings.ToLower(d.Name)
		if prev, dup := seen[k]; dup {
			return fmt.Errorf("recurring job names %q and %q collide (names are compared case-insensitively)", prev, d.Name)
		}
		seen[k] = d.Name
	}
	return nil
}

// upperSnake turns CamelCase into UPPER_SNAKE: "NightlyCSVStats" → "NIGHTLY_CSV_STATS".
func upperSnake(s string) string {
	rs := []rune(s)
	var b strings.Builder
	for i, r := range rs {
		if i > 0 && unicode.IsUpper(r) {
			prevLower := unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1])
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if prevLower || (unicode.IsUpper(rs[i-1]) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}
