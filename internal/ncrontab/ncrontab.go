// Package ncrontab parses NCRONTAB expressions, the cron dialect of Azure Functions timer
// triggers, and computes their occurrences.
//
// An expression has six space-separated fields, {second} {minute} {hour} {day} {month}
// {day-of-week}, or five (no seconds; the second is then always 0), as the Functions timer
// extension accepts (docs/host-contract.md §3.1). Each field is "*", a value, a range
// "a-b" (reversed ranges are swapped), a step "*/n", "a-b/n" or "a/n" (= a-max/n), or a
// comma-separated list of those. Months accept English names and day-of-week accepts English
// day names (Sunday = 0, values 0–6), matched case-insensitively by prefix ("Jan", "january",
// "MON"). Unlike Vixie cron, the day and day-of-week fields must BOTH match (NCrontab
// semantics), and "?", "L", "W", "#" and day-of-week 7 are not accepted.
//
// Occurrences are computed on the wall clock of the time's location. A wall-clock time that
// does not exist (spring-forward gap) is pushed forward by the gap; a wall-clock time that
// occurs twice (fall-back) fires once, at its first instant.
package ncrontab

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Field identifies one field of an expression.
type Field int

// The six fields, in expression order.
const (
	Second Field = iota
	Minute
	Hour
	Day
	Month
	DayOfWeek
)

var fieldInfo = [...]struct {
	name     string
	min, max int
	names    []string
}{
	Second:    {"Second", 0, 59, nil},
	Minute:    {"Minute", 0, 59, nil},
	Hour:      {"Hour", 0, 23, nil},
	Day:       {"Day", 1, 31, nil},
	Month:     {"Month", 1, 12, []string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"}},
	DayOfWeek: {"DayOfWeek", 0, 6, []string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}},
}

// String returns the field's name.
func (f Field) String() string { return fieldInfo[f].name }

// Schedule is a parsed NCRONTAB expression.
type Schedule struct {
	expr       string
	hasSeconds bool
	// bits[f] has bit v set when value v is allowed in field f.
	bits [6]uint64
}

// Error reports an expression that is not valid NCRONTAB.
type Error struct {
	// Expr is the whole expression.
	Expr string
	// Field is the offending field; -1 when the problem is the field count.
	Field Field
	// Problem says what is wrong.
	Problem string
}

func (e *Error) Error() string {
	if e.Field < 0 {
		return fmt.Sprintf("ncrontab %q: %s", e.Expr, e.Problem)
	}
	return fmt.Sprintf("ncrontab %q: %s field: %s", e.Expr, e.Field, e.Problem)
}

// Parse parses a 6-field (with seconds) or 5-field NCRONTAB expression.
func Parse(expr string) (*Schedule, error) {
	parts := strings.Fields(expr)
	s := &Schedule{expr: expr}
	switch len(parts) {
	case 6:
		s.hasSeconds = true
	case 5:
		parts = append([]string{"0"}, parts...)
	default:
		return nil, &Error{Expr: expr, Field: -1, Problem: fmt.Sprintf("has %d fields; expected 6 ({second} {minute} {hour} {day} {month} {day-of-week}) or 5 (without seconds)", len(parts))}
	}
	for i, p := range parts {
		bits, err := parseField(Field(i), p)
		if err != nil {
			return nil, &Error{Expr: expr, Field: Field(i), Problem: err.Error()}
		}
		s.bits[i] = bits
	}
	return s, nil
}

// MustParse is Parse for expressions known to be valid; it panics on error.
func MustParse(expr string) *Schedule {
	s, err := Parse(expr)
	if err != nil {
		panic(err)
	}
	return s
}

// String returns the expression as given.
func (s *Schedule) String() string { return s.expr }

// HasSeconds reports whether the expression had a seconds field (6 fields).
func (s *Schedule) HasSeconds() bool { return s.hasSeconds }

// Contains reports whether value v is allowed in field f.
func (s *Schedule) Contains(f Field, v int) bool {
	return v >= 0 && v < 64 && s.bits[f]&(1<<uint(v)) != 0
}

func parseField(f Field, text string) (uint64, error) {
	info := fieldInfo[f]
	var bits uint64
	for _, item := range strings.Split(text, ",") {
		if item == "" {
			return 0, fmt.Errorf("empty value in %q", text)
		}
		step := 1
		rng := item
		if i := strings.IndexByte(item, '/'); i >= 0 {
			if i == 0 {
				return 0, fmt.Errorf("%q: a step needs a range or * before the /", item)
			}
			n, err := strconv.Atoi(item[i+1:])
			if err != nil || n < 0 {
				return 0, fmt.Errorf("%q: step %q is not a non-negative number", item, item[i+1:])
			}
			if n > 0 {
				step = n
			}
			rng = item[:i]
		}
		lo, hi := info.min, info.max
		switch {
		case rng == "*":
		case strings.IndexByte(rng, '-') > 0:
			a, b, _ := strings.Cut(rng, "-")
			var err error
			if lo, err = parseValue(f, a); err != nil {
				return 0, err
			}
			if hi, err = parseValue(f, b); err != nil {
				return 0, err
			}
			if lo > hi {
				lo, hi = hi, lo
			}
		default:
			v, err := parseValue(f, rng)
			if err != nil {
				return 0, err
			}
			lo = v
			hi = v
			if strings.Contains(item, "/") {
				hi = info.max // "a/n" means a-max/n
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, nil
}

func parseValue(f Field, s string) (int, error) {
	info := fieldInfo[f]
	if s == "" {
		return 0, fmt.Errorf("empty value")
	}
	if s[0] >= '0' && s[0] <= '9' {
		v, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", s)
		}
		if v < info.min || v > info.max {
			return 0, fmt.Errorf("%d is outside %d–%d", v, info.min, info.max)
		}
		return v, nil
	}
	if info.names == nil {
		return 0, fmt.Errorf("%q is not a number between %d and %d", s, info.min, info.max)
	}
	for i, n := range info.names {
		if len(s) <= len(n) && strings.EqualFold(n[:len(s)], s) {
			return info.min + i, nil
		}
	}
	return 0, fmt.Errorf("%q is not a known name; use one of %s", s, strings.Join(info.names, ", "))
}

// civil is a wall-clock date and time without a zone.
type civil struct{ y, mo, d, h, mi, s int }

func toCivil(t time.Time) civil {
	return civil{t.Year(), int(t.Month()), t.Day(), t.Hour(), t.Minute(), t.Second()}
}

// naive maps a civil time onto UTC, for calendar arithmetic only.
func (c civil) naive() time.Time {
	return time.Date(c.y, time.Month(c.mo), c.d, c.h, c.mi, c.s, 0, time.UTC)
}

func fromNaive(t time.Time) civil { return toCivil(t) }

// maxSearchYears bounds the search: an expression such as "0 0 0 30 2 *" never occurs.
const maxSearchYears = 30

// Next returns the first occurrence strictly after t, in t's location, or the zero time when
// the expression never occurs (e.g. February 30th). Sub-second parts of t are ignored, as
// NCrontab does: the search starts at the next whole second.
func (s *Schedule) Next(t time.Time) time.Time {
	loc := t.Location()
	start := toCivil(t).naive().Add(time.Second)
	limit := start.AddDate(maxSearchYears, 0, 0)
	for c := start; c.Before(limit); {
		next, ok := s.nextCivil(c, limit)
		if !ok {
			return time.Time{}
		}
		inst := instant(fromNaive(next), loc)
		if inst.After(t) {
			return inst
		}
		// The civil time maps to an instant not after t: the second pass of a fall-back
		// hour, or a gap pushed backwards. Keep searching after it.
		c = next.Add(time.Second)
	}
	return time.Time{}
}

// nextCivil finds the first civil time >= c (as a naive UTC time) that matches.
func (s *Schedule) nextCivil(c, limit time.Time) (time.Time, bool) {
	for c.Before(limit) {
		switch {
		case !s.Contains(Month, int(c.Month())):
			c = time.Date(c.Year(), c.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		case !s.Contains(Day, c.Day()) || !s.Contains(DayOfWeek, int(c.Weekday())):
			c = time.Date(c.Year(), c.Month(), c.Day()+1, 0, 0, 0, 0, time.UTC)
		case !s.Contains(Hour, c.Hour()):
			c = time.Date(c.Year(), c.Month(), c.Day(), c.Hour()+1, 0, 0, 0, time.UTC)
		case !s.Contains(Minute, c.Minute()):
			c = time.Date(c.Year(), c.Month(), c.Day(), c.Hour(), c.Minute()+1, 0, 0, time.UTC)
		case !s.Contains(Second, c.Second()):
			c = c.Add(time.Second)
		default:
			return c, true
		}
	}
	return time.Time{}, false
}

// instant converts a wall-clock time in loc to an instant. A time inside a spring-forward
// gap is pushed forward by the gap (02:30 in a 02:00→03:00 gap becomes 03:30); an ambiguous
// time takes its first (daylight) instant.
func instant(c civil, loc *time.Location) time.Time {
	naive := c.naive()
	// Try the offsets in effect around that wall-clock time; keep those that round-trip.
	var best time.Time
	for _, probe := range []time.Duration{-26 * time.Hour, 26 * time.Hour} {
		_, off := naive.Add(probe).In(loc).Zone()
		cand := naive.Add(-time.Duration(off) * time.Second)
		if toCivil(cand.In(loc)) == c && (best.IsZero() || cand.Before(best)) {
			best = cand
		}
	}
	for _, probe := range []time.Duration{-3 * time.Hour, 0, 3 * time.Hour} {
		_, off := naive.Add(probe).In(loc).Zone()
		cand := naive.Add(-time.Duration(off) * time.Second)
		if toCivil(cand.In(loc)) == c && (best.IsZero() || cand.Before(best)) {
			best = cand
		}
	}
	if !best.IsZero() {
		return best.In(loc)
	}
	// In a gap: use the offset from before the transition, which lands after it by the
	// length of the gap.
	_, off := naive.Add(-3 * time.Hour).In(loc).Zone()
	return naive.Add(-time.Duration(off) * time.Second).In(loc)
}
