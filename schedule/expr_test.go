package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/ncrontab"
)

func TestParseExprErrorsNamePosition(t *testing.T) {
	cases := []struct {
		expr         string
		field        string
		column, wide int
		problem      string
	}{
		{"0 61 * * * *", "minute", 3, 2, "61 is outside 0–59"},
		{"0 0 25 * * *", "hour", 5, 2, "25 is outside 0–23"},
		{"0 0 0 * Foo *", "month", 9, 3, `"Foo" is not a known name`},
		{"0 0 0 * * Mon-Funday", "day-of-week", 11, 10, `"Funday" is not a known name`},
		{"*/x * * * * *", "second", 1, 3, `step "x"`},
		{"0  0 0 32 * *", "day", 8, 2, "32 is outside 1–31"},
		{"*/5 * * * *", "", 1, 1, "has 5 fields; nightshift requires 6"},
		{"0 0 * * * * *", "", 13, 1, "has 7 fields"},
		{"00:05:00", "", 1, 8, "looks like a TimeSpan"},
		{"", "", 1, 1, "has 0 fields"},
		{"0 0 0 30 2 *", "", 7, 4, "never occurs"},
	}
	for _, c := range cases {
		_, err := parseExpr(c.expr)
		var ee *ExprError
		if !errors.As(err, &ee) {
			t.Errorf("parseExpr(%q) = %v, want *ExprError", c.expr, err)
			continue
		}
		if ee.Field != c.field || ee.Column != c.column || ee.Width != c.wide || !strings.Contains(ee.Problem, c.problem) {
			t.Errorf("parseExpr(%q): field %q column %d width %d problem %q; want %q %d %d containing %q",
				c.expr, ee.Field, ee.Column, ee.Width, ee.Problem, c.field, c.column, c.wide, c.problem)
		}
		if !strings.Contains(err.Error(), `"`+c.expr+`"`) {
			t.Errorf("error %q does not quote the expression", err)
		}
	}
	_, err := parseExpr("0 61 * * * *")
	var ee *ExprError
	errors.As(err, &ee)
	if got, want := ee.Caret(), "0 61 * * * *\n  ^^"; got != want {
		t.Errorf("Caret() = %q, want %q", got, want)
	}
	if got := err.Error(); got != `schedule "0 61 * * * *": minute field at column 3: 61 is outside 0–59` {
		t.Errorf("Error() = %q", got)
	}
	if _, err := parseExpr("0 30 2 * * Mon-Fri"); err != nil {
		t.Errorf("valid expression: %v", err)
	}
}

func TestSettingOverrideErrorNamesSetting(t *testing.T) {
	d := Recurring{Name: "NightlyCSVStats", Schedule: "0 0 3 * * *", Kind: "csv_stats"}
	if got := d.Setting(); got != "NIGHTSHIFT_SCHEDULE_NIGHTLY_CSV_STATS" {
		t.Errorf("Setting() = %q", got)
	}
	env := map[string]string{d.Setting(): "0 0 3 * *"}
	_, err := d.parsedSchedule(func(k string) string { return env[k] })
	if err == nil || !strings.HasPrefix(err.Error(), "app setting NIGHTSHIFT_SCHEDULE_NIGHTLY_CSV_STATS: schedule \"0 0 3 * *\"") {
		t.Errorf("error %v does not name the setting", err)
	}
	expr, src := d.EffectiveSchedule(func(string) string { return "" })
	if expr != "0 0 3 * * *" || src != "recurring job NightlyCSVStats" {
		t.Errorf("EffectiveSchedule = %q, %q", expr, src)
	}
}

func TestUpperSnake(t *testing.T) {
	for in, want := range map[string]string{
		"Maintenance": "MAINTENANCE", "NightlyCSVStats": "NIGHTLY_CSV_STATS", "HourlySync2": "HOURLY_SYNC2",
		"A": "A", "ABC": "ABC", "SyncS3Bucket": "SYNC_S3_BUCKET",
	} {
		if got := upperSnake(in); got != want {
			t.Errorf("upperSnake(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Recurring{Name: "Nightly", Schedule: "0 0 3 * * *", Kind: "k"}
	if err := Validate([]Recurring{ok, Maintenance()}); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		decls []Recurring
		want  string
	}{
		{[]Recurring{{Name: "nightly", Schedule: "0 0 3 * * *", Kind: "k"}}, "upper-case"},
		{[]Recurring{{Name: "Nightly", Schedule: "0 0 3 * * *"}}, "kind is required"},
		{[]Recurring{{Name: "Nightly", Schedule: "0 0 3 * *", Kind: "k"}}, "recurring job Nightly: schedule"},
		{[]Recurring{{Name: "Nightly", Schedule: "0 0 3 * * *", Kind: "k", PastDue: "later"}}, "past-due policy"},
		{[]Recurring{{Name: "Nightly", Schedule: "0 0 3 * * *", Kind: "k", RawArgs: []byte("{")}}, "not valid JSON"},
		{[]Recurring{ok, {Name: "NIGHTLY", Schedule: "0 0 3 * * *", Kind: "k"}}, "collide"},
	}
	for _, b := range bad {
		err := Validate(b.decls)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("Validate(%+v) = %v, want %q", b.decls, err, b.want)
		}
	}
}

func TestJobIDRoundTrip(t *testing.T) {
	d := Recurring{Name: "HourlySync"}
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	id := d.JobID(at)
	if id != "cron-hourlysync-1795428000" {
		t.Errorf("JobID = %q", id)
	}
	got, ok := OccurrenceOf("HourlySync", id)
	if !ok || !got.Equal(at) {
		t.Errorf("OccurrenceOf = %v, %v", got, ok)
	}
	if _, ok := OccurrenceOf("Hourly", id); ok {
		t.Error("OccurrenceOf matched another declaration's id")
	}
}

func TestPrevAndNearest(t *testing.T) {
	every2 := ncrontab.MustParse("*/2 * * * * *")
	hourly := ncrontab.MustParse("0 0 * * * *")
	yearly := ncrontab.MustParse("0 0 0 1 1 *")
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		s       *ncrontab.Schedule
		at      time.Time
		prev    time.Time
		nearest time.Time
	}{
		{every2, base.Add(300 * time.Millisecond), base, base},
		{every2, base.Add(-10 * time.Millisecond), base.Add(-2 * time.Second), base}, // fired a hair early
		{every2, base.Add(1900 * time.Millisecond), base, base.Add(2 * time.Second)}, // closer to the next one
		{hourly, base.Add(59 * time.Minute), base, base},
		{hourly, base, base, base},
		{yearly, base, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, c := range cases {
		if got := prevFire(c.s, c.at); !got.Equal(c.prev) {
			t.Errorf("prevFire(%s, %s) = %s, want %s", c.s, c.at, got, c.prev)
		}
		if got := nearest(c.s, c.at); !got.Equal(c.nearest) {
			t.Errorf("nearest(%s, %s) = %s, want %s", c.s, c.at, got, c.nearest)
		}
	}
}
