package maintenance_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/maintenance"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

func putStatus(t *testing.T, c *storage.Clients, st record.Status) {
	t.Helper()
	if _, err := c.PutStatus(context.Background(), &st, ""); err != nil {
		t.Fatal(err)
	}
}

func exists(t *testing.T, c *storage.Clients, container, name string) bool {
	t.Helper()
	_, err := c.Store().Properties(context.Background(), container, name)
	if storage.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// forBackends runs test once per storage backend (Azurite and memory), in parallel, each
// with fresh clients on their own prefix.
func forBackends(t *testing.T, test func(t *testing.T, c *storage.Clients)) {
	t.Helper()
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			test(t, b.Clients(t))
		})
	}
}

func TestRetention(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		real := time.Now().UTC()
		day := 24 * time.Hour
		putStatus(t, c, record.Status{JobID: "old-done", Kind: "k", State: record.StateSucceeded, Attempt: 1, UpdatedAt: real,
			Logs: []record.LogLine{{Time: real, Level: "INFO", Message: "captured log line"}}})
		putStatus(t, c, record.Status{JobID: "recent-done", Kind: "k", State: record.StateSucceeded, Attempt: 1, UpdatedAt: real.Add(15 * day)})
		putStatus(t, c, record.Status{JobID: "old-queued", Kind: "k", State: record.StateQueued, UpdatedAt: real})
		putStatus(t, c, record.Status{JobID: "far-queued", Kind: "k", State: record.StateQueued, UpdatedAt: real, NextRunAt: real.Add(30 * day)})
		for _, id := range []string{"old-done", "recent-done", "ghost"} {
			if _, err := c.PutResult(ctx, id, "application/octet-stream", []byte("result of "+id)); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []*record.DeadLetter{
			{DeadID: "dl-old", JobID: "dl-old", Reason: record.ReasonAttemptsExhausted, DiedAt: real},
			{DeadID: "dl-replayed", JobID: "dl-replayed", Reason: record.ReasonPermanentError, DiedAt: real, ReplayedAt: real.Add(50 * day), Replays: 1},
		} {
			if _, err := c.PutDeadLetter(ctx, d, ""); err != nil {
				t.Fatal(err)
			}
		}
		claims := maintenance.Prefix{Container: c.Layout.ScheduleContainer(), Prefix: "fired/"}
		if _, err := c.Store().Put(ctx, claims.Container, "fired/x/1.json", []byte("{}"), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Store().Put(ctx, claims.Container, "due/keep.json", []byte("{}"), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}

		// 20 days on, with the default 14/90-day retention.
		cfg, err := maintenance.ConfigFromEnv(func(string) string { return "" })
		if err != nil || cfg.RetentionDays != 14 || cfg.DeadLetterRetentionDays != 90 {
			t.Fatalf("defaults %+v, %v", cfg, err)
		}
		cfg.Extra = []maintenance.Prefix{claims}
		now := real.Add(20 * day)
		w := maintenance.NewWorker(c, cfg, &maintenance.Options{Now: func() time.Time { return now }})
		// A dry run deletes nothing but counts the same.
		dry, err := w.Run(ctx, maintenance.Args{DryRun: true}, now, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !exists(t, c, c.Layout.StatusContainer(), "old-done.json") {
			t.Fatal("dry run deleted a status")
		}
		out, err := w.Run(ctx, maintenance.Args{}, now, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := out.Retention
		if r.DeletedStatuses != 2 || r.DeletedResults != 2 || r.DeletedDeadLetters != 0 || r.DeletedOther != 1 {
			t.Errorf("retention %+v, want 2 statuses, 2 results, 0 dead letters, 1 claim", r)
		}
		if dry.Retention.DeletedStatuses != r.DeletedStatuses || dry.Retention.DeletedResults != r.DeletedResults {
			t.Errorf("dry run counted %+v, the real run %+v", dry.Retention, r)
		}
		for name, want := range map[string]bool{"old-done.json": false, "old-queued.json": false, "recent-done.json": true, "far-queued.json": true} {
			if got := exists(t, c, c.Layout.StatusContainer(), name); got != want {
				t.Errorf("status %s exists = %v, want %v", name, got, want)
			}
		}
		for name, want := range map[string]bool{"old-done": false, "ghost": false, "recent-done": true} {
			if got := exists(t, c, c.Layout.ResultsContainer(), name); got != want {
				t.Errorf("result %s exists = %v, want %v", name, got, want)
			}
		}
		if exists(t, c, claims.Container, "fired/x/1.json") || !exists(t, c, claims.Container, "due/keep.json") {
			t.Error("claims under fired/ must go, schedule entries under due/ must stay")
		}

		// 100 days on, dead letters past 90 days go, unless replayed since.
		now = real.Add(100 * day)
		out, err = w.Run(ctx, maintenance.Args{}, now, nil)
		if err != nil {
			t.Fatal(err)
		}
		if out.Retention.DeletedDeadLetters != 1 || exists(t, c, c.Layout.DeadLettersContainer(), "dl-old.json") || !exists(t, c, c.Layout.DeadLettersContainer(), "dl-replayed.json") {
			t.Errorf("dead-letter retention: %+v", out.Retention)
		}
	})
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{maintenance.SettingRetentionDays: "7", maintenance.SettingDeadLetterRetentionDays: "30"}
	cfg, err := maintenance.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil || cfg.RetentionDays != 7 || cfg.DeadLetterRetentionDays != 30 {
		t.Errorf("ConfigFromEnv = %+v, %v", cfg, err)
	}
	for _, bad := range []string{"0", "-1", "two", "1.5", "99999"} {
		env[maintenance.SettingDeadLetterRetentionDays] = bad
		_, err := maintenance.ConfigFromEnv(func(k string) string { return env[k] })
		var se *storage.SettingError
		if !errors.As(err, &se) || se.Setting != maintenance.SettingDeadLetterRetentionDays {
			t.Errorf("%q: %v, want a SettingError naming %s", bad, err, maintenance.SettingDeadLetterRetentionDays)
		}
	}
}

func TestDailyReport(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		real := time.Now().UTC()
		date := real.Format(maintenance.DateLayout)
		fail := func(class, msg string) []envelope.AttemptError {
			return []envelope.AttemptError{{Attempt: 1, At: real, Error: msg, Class: class}}
		}
		for _, st := range []record.Status{
			{JobID: "a1", Kind: "a", State: record.StateSucceeded, Attempt: 1, DurationMS: 100},
			{JobID: "a2", Kind: "a", State: record.StateSucceeded, Attempt: 2, DurationMS: 200, Errors: fail("retryable", "timeout talking to upstream\nstack…")},
			{JobID: "a3", Kind: "a", State: record.StateDead, Attempt: 1, DurationMS: 300, LastError: "boom", Errors: fail("permanent", "boom")},
			{JobID: "b1", Kind: "b", State: record.StateRetrying, Attempt: 1, LastError: "boom", Errors: fail("retryable", "boom")},
			{JobID: "b2", Kind: "b", State: record.StateSucceeded, Attempt: 1, DurationMS: 50},
			{JobID: "b3", Kind: "b", State: record.StateRetrying, Attempt: 1, LastError: "boom", Errors: fail("retryable", "boom")},
			{JobID: "old", Kind: "b", State: record.StateSucceeded, Attempt: 1, UpdatedAt: real.Add(-48 * time.Hour)},
		} {
			if st.UpdatedAt.IsZero() {
				st.UpdatedAt = real
			}
			putStatus(t, c, st)
		}
		for _, d := range []*record.DeadLetter{
			{DeadID: "a3", JobID: "a3", Reason: record.ReasonPermanentError, DiedAt: real},
			{DeadID: "msg-x", Reason: record.ReasonUndecodable, DiedAt: real},
			{DeadID: "older", Reason: record.ReasonUndecodable, DiedAt: real.Add(-72 * time.Hour)},
		} {
			if _, err := c.PutDeadLetter(ctx, d, ""); err != nil {
				t.Fatal(err)
			}
		}
		w := maintenance.NewWorker(c, maintenance.Config{}, nil)
		// The job enqueued a day later reports on this day by default.
		out, err := w.Run(ctx, maintenance.Args{}, real.Add(24*time.Hour), nil)
		if err != nil {
			t.Fatal(err)
		}
		if out.Date != date || out.Report != "daily/"+date+".json" || out.Jobs != 6 {
			t.Errorf("outcome %+v", out)
		}
		rep, err := maintenance.ReadReport(ctx, c, "")
		if err != nil {
			t.Fatal(err)
		}
		if rep.Date != date || rep.Jobs != 6 || rep.ByState[record.StateSucceeded] != 3 || rep.ByState[record.StateRetrying] != 2 || rep.ByState[record.StateDead] != 1 {
			t.Errorf("report totals: date %s jobs %d by state %v", rep.Date, rep.Jobs, rep.ByState)
		}
		if len(rep.Kinds) != 2 {
			t.Fatalf("kinds %+v", rep.Kinds)
		}
		a, b := rep.Kinds[0], rep.Kinds[1]
		if a.Kind != "a" || a.Jobs != 3 || a.Retried != 1 || a.Duration != (maintenance.Durations{Count: 3, P50: 200, P95: 300, Max: 300}) {
			t.Errorf("kind a: %+v", a)
		}
		if b.Kind != "b" || b.Jobs != 3 || b.Duration != (maintenance.Durations{Count: 1, P50: 50, P95: 50, Max: 50}) {
			t.Errorf("kind b: %+v", b)
		}
		if len(rep.Failures) != 3 {
			t.Fatalf("failures %+v", rep.Failures)
		}
		if f := rep.Failures[0]; f.Kind != "b" || f.Count != 2 || f.Error != "boom" || f.State != record.StateRetrying || f.Class != "retryable" {
			t.Errorf("top failure %+v", f)
		}
		found := false
		for _, f := range rep.Failures {
			if f.Kind == "a" && f.State == record.StateSucceeded && f.Error == "timeout talking to upstream" {
				found = true
			}
		}
		if !found {
			t.Errorf("failures %+v lack a2's retried error (first line only)", rep.Failures)
		}
		if len(rep.DeadLetters) != 2 || rep.DeadLetters[record.ReasonPermanentError] != 1 || rep.DeadLetters[record.ReasonUndecodable] != 1 {
			t.Errorf("dead letters %v", rep.DeadLetters)
		}
		if _, err := maintenance.ReadReport(ctx, c, "1999-01-01"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("missing report: %v", err)
		}
		if _, err := maintenance.ReadReport(ctx, c, "yesterday"); err == nil || !strings.Contains(err.Error(), "yyyy-mm-dd") {
			t.Errorf("bad date: %v", err)
		}
		dates, err := maintenance.ReportDates(ctx, c)
		if err != nil || len(dates) != 1 || dates[0] != date {
			t.Errorf("ReportDates = %v, %v", dates, err)
		}
	})
}
