package schedule

//go:generate go run ../cmd/nightshift generate --dir ../functions

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nightshift-jobs/nightshift"
)

// SweepFunction is the timer function that moves due delayed jobs to their queues.
const SweepFunction = "ScheduleSweep"

// DefaultSweepSchedule runs the sweeper at the start of every minute.
const DefaultSweepSchedule = "0 * * * * *"

// GenerateOptions tune the generated function.json files. The zero value is what the
// repository ships.
type GenerateOptions struct {
	// SweepSchedule is the ScheduleSweep timer's schedule; default DefaultSweepSchedule.
	// Tests use a sub-second one.
	SweepSchedule string
	// NoSweep leaves out the ScheduleSweep function.
	NoSweep bool
}

// timerFunction is d's timer function: its schedule is the app-setting reference
// %NIGHTSHIFT_SCHEDULE_<NAME>%, which the host resolves at start-up (§3.1), and the monitor
// stays on so that past-due occurrences are caught up (§3.3, §3.4).
func (d Recurring) timerFunction(serve nightshift.FunctionFunc) nightshift.FunctionSpec {
	return nightshift.FunctionSpec{Name: d.FunctionName(), Trigger: nightshift.TriggerTimer,
		Schedule: "%" + d.Setting() + "%", RunOnStartup: d.RunOnStartup, UseMonitor: true, Serve: serve}
}

// sweepFunction is the ScheduleSweep timer. No monitor: a missed sweep needs no catch-up
// (the next one moves everything due), and the monitor would write a status blob every
// minute.
func sweepFunction(sched string, serve nightshift.FunctionFunc) nightshift.FunctionSpec {
	return nightshift.FunctionSpec{Name: SweepFunction, Trigger: nightshift.TriggerTimer, Schedule: sched, Serve: serve}
}

func renderFunctionJSON(f nightshift.FunctionSpec) []byte {
	out, err := nightshift.FunctionJSON(f)
	if err != nil {
		panic(err) // a timer always renders
	}
	return out
}

// Render returns the generated function.json files for the declarations, keyed by their
// path relative to the functions folder ("RecurringNightly/function.json"). A recurring
// job's schedule is the app-setting reference %NIGHTSHIFT_SCHEDULE_<NAME>%, which the host
// resolves at start-up (§3.1): the setting must exist wherever the app runs (the Bicep
// template and local.settings.json carry the defaults; DefaultSettings lists them). The
// monitor stays on so that past-due occurrences are caught up (§3.3, §3.4).
func Render(decls []Recurring, opts GenerateOptions) (map[string][]byte, error) {
	if err := Validate(decls); err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, d := range decls {
		files[d.FunctionName()+"/function.json"] = renderFunctionJSON(d.timerFunction(nil))
	}
	if !opts.NoSweep {
		sched := opts.SweepSchedule
		if sched == "" {
			sched = DefaultSweepSchedule
		}
		if _, err := parseExpr(sched); err != nil {
			return nil, fmt.Errorf("sweep schedule: %w", err)
		}
		files[SweepFunction+"/function.json"] = renderFunctionJSON(sweepFunction(sched, nil))
	}
	return files, nil
}

// DefaultSettings returns the app settings the generated functions reference, with the
// declared default schedules: what a deployment and local.settings.json must set.
func DefaultSettings(decls []Recurring) map[string]string {
	out := map[string]string{}
	for _, d := range decls {
		out[d.Setting()] = d.Schedule
	}
	return out
}

// Drift is one difference between the generated files and a functions folder; a stale
// one is a Recurring* folder with no declaration.
type Drift = nightshift.FunctionDrift

// Check compares the functions folder dir with what Render produces and lists the
// differences (none when it is up to date).
func Check(dir string, decls []Recurring, opts GenerateOptions) ([]Drift, error) {
	files, err := Render(decls, opts)
	if err != nil {
		return nil, err
	}
	return nightshift.CheckFunctionFiles(dir, files, isRecurringFolder)
}

// WriteFunctions writes the generated function.json files into the functions folder dir
// and removes Recurring* folders that no declaration backs any more. It returns the paths
// it changed (relative to dir).
func WriteFunctions(dir string, decls []Recurring, opts GenerateOptions) ([]string, error) {
	files, err := Render(decls, opts)
	if err != nil {
		return nil, err
	}
	var changed []string
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if cur, err := os.ReadFile(p); err == nil && bytes.Equal(cur, files[rel]) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return changed, err
		}
		if err := os.WriteFile(p, files[rel], 0o644); err != nil {
			return changed, err
		}
		changed = append(changed, rel)
	}
	stale, err := nightshift.StaleFunctionFolders(dir, files, isRecurringFolder)
	if err != nil {
		return changed, err
	}
	for _, s := range stale {
		if err := os.RemoveAll(filepath.Join(dir, s)); err != nil {
			return changed, err
		}
		changed = append(changed, s+" (removed)")
	}
	return changed, nil
}

// isRecurringFolder says whether a functions folder is one the generator owns.
func isRecurringFolder(name string) bool { return strings.HasPrefix(name, FunctionPrefix) }
