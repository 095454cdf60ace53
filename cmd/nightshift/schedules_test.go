package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/maintenance"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/schedule"
	"github.com/nightshift-jobs/nightshift/storage"
)

// runSchedCLI runs the CLI with args and returns stdout, stderr and the exit code.
func runSchedCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	code := exitOK
	var ue usageError
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.code
	case errors.As(err, &ue), isCobraUsage(err):
		code = exitUsage
	default:
		code = exitFailure
	}
	if err != nil {
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), code
}

func TestGenerateCommand(t *testing.T) {
	dir := t.TempDir()
	_, stderr, code := runSchedCLI(t, "generate", "--dir", dir, "--check")
	if code != exitFailure || !strings.Contains(stderr, "RecurringMaintenance/function.json: missing") {
		t.Fatalf("--check on an empty folder: %d %q", code, stderr)
	}
	out, _, code := runSchedCLI(t, "generate", "--dir", dir)
	if code != exitOK || !strings.Contains(out, "wrote "+filepath.Join(dir, "RecurringMaintenance", "function.json")) || !strings.Contains(out, "ScheduleSweep") {
		t.Fatalf("generate: %d %q", code, out)
	}
	if out, _, code := runSchedCLI(t, "generate", "--dir", dir, "--check"); code != exitOK || !strings.Contains(out, "up to date") {
		t.Fatalf("--check after generate: %d %q", code, out)
	}
	// The repository's own folder is up to date (the same check CI can run).
	if _, stderr, code := runSchedCLI(t, "generate", "--check"); code != exitOK {
		t.Errorf("repository functions/ drifted: %s", stderr)
	}
	out, _, code = runSchedCLI(t, "generate", "--settings")
	var settings map[string]string
	if code != exitOK || json.Unmarshal([]byte(out), &settings) != nil || settings[schedule.SettingMaintenanceSchedule] != schedule.DefaultMaintenanceSchedule {
		t.Errorf("--settings: %d %q", code, out)
	}
}

func TestSchedulesAndReportCommands(t *testing.T) {
	store := testenv.Clients(t)
	t.Setenv(storage.SettingStorage, testenv.ConnectionString(t))
	t.Setenv(storage.SettingNamePrefix, store.Layout.Prefix())
	t.Setenv(schedule.SettingMaintenanceSchedule, "0 0 4 * * *")
	ctx := context.Background()
	client := nightshift.NewClient(store, nil)

	// The last maintenance occurrence succeeded; one delayed job waits 30 days out.
	occ := time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)
	id := schedule.Maintenance().JobID(occ)
	if _, err := store.PutStatus(ctx, &record.Status{JobID: id, Kind: maintenance.Kind, State: record.StateSucceeded, Attempt: 1,
		FinishedAt: occ.Add(time.Minute), Meta: map[string]string{schedule.MetaTrigger: schedule.TriggerSchedule}}, ""); err != nil {
		t.Fatal(err)
	}
	res, err := schedule.Enqueue(ctx, client, "cli.later", nil, &nightshift.EnqueueOptions{RunIn: 30 * 24 * time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}

	out, stderr, code := runSchedCLI(t, "schedules", "--json", "--next", "2")
	var got struct {
		Recurring []schedule.Info `json:"recurring"`
		Delayed   []struct {
			JobID string    `json:"job_id"`
			Due   time.Time `json:"due"`
		} `json:"delayed"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("schedules --json: %d %q %q", code, out, stderr)
	}
	if len(got.Recurring) != 1 {
		t.Fatalf("recurring %+v", got.Recurring)
	}
	m := got.Recurring[0]
	if m.Name != "Maintenance" || m.Schedule != "0 0 4 * * *" || m.Source != "setting" || len(m.Next) != 2 ||
		m.Next[0].Hour() != 4 || m.Last == nil || m.Last.JobID != id || m.Last.State != record.StateSucceeded {
		t.Errorf("maintenance entry %+v (last %+v)", m, m.Last)
	}
	if len(got.Delayed) != 1 || got.Delayed[0].JobID != res.JobID || !got.Delayed[0].Due.Equal(res.RunAt) {
		t.Errorf("delayed %+v, want %s due %s", got.Delayed, res.JobID, res.RunAt)
	}
	out, _, code = runSchedCLI(t, "schedules", "--tz", "Europe/Berlin")
	if code != exitOK || !strings.Contains(out, "NEXT (Europe/Berlin)") || !strings.Contains(out, "05:00:00") ||
		!strings.Contains(out, "succeeded (occurrence 2026-11-22 05:00:00") || !strings.Contains(out, res.JobID) {
		t.Errorf("schedules text: %d\n%s", code, out)
	}
	if _, _, code := runSchedCLI(t, "schedules", "--tz", "Mars/Olympus"); code != exitUsage {
		t.Errorf("bad --tz: exit %d, want %d", code, exitUsage)
	}

	out, _, code = runSchedCLI(t, "schedules", "cancel", res.JobID)
	if code != exitOK || !strings.Contains(out, "removed from the durable schedule") {
		t.Errorf("schedules cancel: %d %q", code, out)
	}
	if entries, _ := schedule.Scheduled(ctx, store); len(entries) != 0 {
		t.Errorf("still scheduled: %+v", entries)
	}
	if _, stderr, code := runSchedCLI(t, "schedules", "cancel", id); code != exitFailure || !strings.Contains(stderr, "already succeeded") {
		t.Errorf("cancel of a finished job: %d %q", code, stderr)
	}

	// Reports.
	if _, stderr, code := runSchedCLI(t, "report"); code != exitFailure || !strings.Contains(stderr, "no reports") {
		t.Errorf("report with none: %d %q", code, stderr)
	}
	w := maintenance.NewWorker(store, maintenance.Config{}, nil)
	o, err := w.Run(ctx, maintenance.Args{ReportDate: "2026-11-22"}, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	out, _, code = runSchedCLI(t, "report", "--date", o.Date, "--json")
	var rep maintenance.Report
	if code != exitOK || json.Unmarshal([]byte(out), &rep) != nil || rep.Date != "2026-11-22" {
		t.Errorf("report --json: %d %q", code, out)
	}
	out, _, code = runSchedCLI(t, "report")
	if code != exitOK || !strings.Contains(out, "nightshift report for 2026-11-22") || !strings.Contains(out, "retention: statuses 14 days") {
		t.Errorf("report: %d %q", code, out)
	}
	if out, _, code := runSchedCLI(t, "report", "--list"); code != exitOK || strings.TrimSpace(out) != "2026-11-22" {
		t.Errorf("report --list: %d %q", code, out)
	}
	if _, _, code := runSchedCLI(t, "report", "--date", "22/11/2026"); code != exitUsage {
		t.Errorf("report --date bad: exit %d", code)
	}
}
