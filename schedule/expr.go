package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/ncrontab"
)

// ExprError reports a schedule expression that nightshift does not accept, with the
// position of the problem: Column is the 1-based byte column in Expr where the offending
// field starts (or where a missing field would be), Width the length of that field.
type ExprError struct {
	// Source says where the expression came from: a declaration ("recurring job Nightly")
	// or an app setting ("app setting NIGHTSHIFT_SCHEDULE_NIGHTLY").
	Source string
	// Expr is the whole expression.
	Expr string
	// Field names the offending field ("second", "minute", …), "" for the field count.
	Field string
	// Column and Width locate the problem in Expr (1-based column).
	Column, Width int
	// Problem says what is wrong.
	Problem string
}

func (e *ExprError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "schedule %q", e.Expr)
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s field at column %d", e.Field, e.Column)
	} else {
		fmt.Fprintf(&b, " at column %d", e.Column)
	}
	fmt.Fprintf(&b, ": %s", e.Problem)
	return b.String()
}

// Caret returns the expression with a line under it marking the problem, for terminals:
//
//	0 61 * * * *
//	  ^^
func (e *ExprError) Caret() string {
	w := max(e.Width, 1)
	return e.Expr + "\n" + strings.Repeat(" ", max(e.Column-1, 0)) + strings.Repeat("^", w)
}

// fieldNames are the six NCRONTAB fields, in order, as ExprError names them.
var fieldNames = [6]string{"second", "minute", "hour", "day", "month", "day-of-week"}

// fieldSpans returns the start offset and length of each space-separated field of expr.
func fieldSpans(expr string) [][2]int {
	var out [][2]int
	start := -1
	for i := 0; i <= len(expr); i++ {
		space := i == len(expr) || expr[i] == ' ' || expr[i] == '\t'
		switch {
		case !space && start < 0:
			start = i
		case space && start >= 0:
			out = append(out, [2]int{start, i - start})
			start = -1
		}
	}
	return out
}

// parseExpr parses a schedule expression the way nightshift accepts it: NCRONTAB with
// exactly six fields ({second} {minute} {hour} {day} {month} {day-of-week}). The
// Functions host also takes five fields, but Windows Consumption rejects them
// (docs/host-contract.md §3.1), and TimeSpan schedules only work on App Service
// plans, so neither is accepted here. Errors are *ExprError values with the position.
func parseExpr(expr string) (*ncrontab.Schedule, error) {
	spans := fieldSpans(expr)
	if len(spans) != 6 {
		col, width := len(expr)+1, 1
		problem := fmt.Sprintf("has %d fields; expected 6: {second} {minute} {hour} {day} {month} {day-of-week}, e.g. \"0 30 2 * * *\" for 02:30 every day", len(spans))
		if len(spans) > 6 {
			col, width = spans[6][0]+1, len(expr)-spans[6][0]
		}
		if len(spans) == 5 {
			problem = "has 5 fields; nightshift requires 6 (with a leading seconds field, e.g. \"0 " + strings.TrimSpace(expr) +
				"\") because the Functions host on Windows Consumption rejects 5-field expressions"
			col = 1
		}
		if len(spans) == 1 && strings.Contains(expr, ":") {
			problem = "looks like a TimeSpan; nightshift accepts only 6-field NCRONTAB expressions (TimeSpan schedules work only on App Service plans)"
			col, width = 1, len(expr)
		}
		return nil, &ExprError{Expr: expr, Column: col, Width: width, Problem: problem}
	}
	s, err := ncrontab.Parse(expr)
	if err != nil {
		var pe *ncrontab.Error
		if errors.As(err, &pe) && pe.Field >= 0 && int(pe.Field) < len(spans) {
			sp := spans[pe.Field]
			return nil, &ExprError{Expr: expr, Field: fieldNames[pe.Field], Column: sp[0] + 1, Width: sp[1], Problem: pe.Problem}
		}
		return nil, &ExprError{Expr: expr, Column: 1, Width: len(expr), Problem: err.Error()}
	}
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, &ExprError{Expr: expr, Column: spans[3][0] + 1, Width: spans[4][0] + spans[4][1] - spans[3][0],
			Problem: "never occurs (day and month never match, e.g. February 30th)"}
	}
	return s, nil
}

// prevFire returns the latest occurrence of s at or before t (in t's location), or the zero
// time when there is none in the last 30 years. ncrontab only searches forwards, so this
// searches windows of growing size backwards from t.
func prevFire(s *ncrontab.Schedule, t time.Time) time.Time {
	for _, w := range []time.Duration{2 * time.Second, 2 * time.Minute, 2 * time.Hour, 2 * 24 * time.Hour, 64 * 24 * time.Hour, 2 * 366 * 24 * time.Hour, 30 * 366 * 24 * time.Hour} {
		o := s.Next(t.Add(-w))
		if o.IsZero() || o.After(t) {
			continue
		}
		for {
			n := s.Next(o)
			if n.IsZero() || n.After(t) {
				return o
			}
			o = n
		}
	}
	return time.Time{}
}

// nearest returns the occurrence a fire at t belongs to: the latest occurrence at or
// before t, or the next one when it is less than 500 ms away and closer (a timer can fire
// a few milliseconds early).
func nearest(s *ncrontab.Schedule, t time.Time) time.Time {
	prev := prevFire(s, t)
	next := s.Next(t.Add(-time.Nanosecond))
	if !next.IsZero() && next.After(t) {
		ahead := next.Sub(t)
		if ahead < 500*time.Millisecond && (prev.IsZero() || ahead < t.Sub(prev)) {
			return next
		}
	}
	return prev
}
