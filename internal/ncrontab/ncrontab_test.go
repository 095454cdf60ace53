package ncrontab

import (
	"errors"
	"testing"
	"time"
)

func TestParseErrors(t *testing.T) {
	for _, expr := range []string{
		"", "* * * *", "* * * * * * *", // field count
		"60 * * * * *", "* 60 * * * *", "* * 24 * * *", "* * * 0 * *", "* * * 32 * *",
		"* * * * 0 *", "* * * * 13 *", "* * * * * 7", "* * * * * -1",
		"a * * * * *", "* * * * Foo *", "* * * * * Funday", "*/x * * * * *", "/5 * * * * *",
		"1,,2 * * * * *", "? * * * * *", "* * * L * *", "* * * * * 5#3", "1-70 * * * * *",
	} {
		_, err := Parse(expr)
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) = %v, want *Error", expr, err)
		}
	}
}

func TestParseFields(t *testing.T) {
	type want struct {
		f    Field
		vals []int
	}
	cases := []struct {
		expr    string
		seconds bool
		want    []want
	}{
		{"0 */5 * * * *", true, []want{{Second, []int{0}}, {Minute, []int{0, 5, 10, 55}}}},
		{"*/5 * * * *", false, []want{{Second, []int{0}}, {Minute, []int{0, 5, 55}}}},
		{"5/15 * * * * *", true, []want{{Second, []int{5, 20, 35, 50}}}},
		{"10-20/5 * * * * *", true, []want{{Second, []int{10, 15, 20}}}},
		{"20-10 * * * * *", true, []want{{Second, []int{10, 11, 20}}}}, // reversed range swapped
		{"1,3,5-6 * * * * *", true, []want{{Second, []int{1, 3, 5, 6}}}},
		{"0 0 0 * Jan,MAR,december *", true, []want{{Month, []int{1, 3, 12}}}},
		{"0 0 0 * jan-mar *", true, []want{{Month, []int{1, 2, 3}}}},
		{"0 0 0 * * Sun,mon,SATURDAY", true, []want{{DayOfWeek, []int{0, 1, 6}}}},
		{"0 0 0 * * Mon-Fri", true, []want{{DayOfWeek, []int{1, 2, 3, 4, 5}}}},
		{"0 0 0 * * */2", true, []want{{DayOfWeek, []int{0, 2, 4, 6}}}},
		{"0 0 0 1 * *", true, []want{{Day, []int{1}}}},
		{"*/0 * * * * *", true, []want{{Second, []int{0, 1, 59}}}}, // step 0 means 1, as NCrontab
	}
	for _, c := range cases {
		s, err := Parse(c.expr)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.expr, err)
		}
		if s.HasSeconds() != c.seconds {
			t.Errorf("%q HasSeconds = %v", c.expr, s.HasSeconds())
		}
		for _, w := range c.want {
			for _, v := range w.vals {
				if !s.Contains(w.f, v) {
					t.Errorf("%q: %s should contain %d", c.expr, w.f, v)
				}
			}
		}
	}
	s := MustParse("5/15 * * * * *")
	for _, v := range []int{0, 4, 6, 19, 21} {
		if s.Contains(Second, v) {
			t.Errorf("5/15 should not contain %d", v)
		}
	}
	s = MustParse("0 0 0 * * Mon-Fri")
	if s.Contains(DayOfWeek, 0) || s.Contains(DayOfWeek, 6) {
		t.Error("Mon-Fri contains a weekend day")
	}
}

func ts(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04:05", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestNext(t *testing.T) {
	cases := []struct{ expr, after, want string }{
		{"* * * * * *", "2024-01-01 00:00:00", "2024-01-01 00:00:01"},
		{"0 * * * * *", "2024-01-01 00:00:00", "2024-01-01 00:01:00"}, // strictly after
		{"0 */5 * * * *", "2024-01-01 00:03:10", "2024-01-01 00:05:00"},
		{"*/5 * * * *", "2024-01-01 00:03:10", "2024-01-01 00:05:00"},
		{"30 15 10 * * *", "2024-01-01 10:15:30", "2024-01-02 10:15:30"},
		{"0 0 0 * * *", "2024-12-31 23:59:59", "2025-01-01 00:00:00"},
		{"0 0 12 29 2 *", "2023-03-01 00:00:00", "2024-02-29 12:00:00"},  // leap day
		{"0 0 0 31 * *", "2024-04-01 00:00:00", "2024-05-31 00:00:00"},   // skips 30-day months
		{"0 0 9 * * Mon", "2024-05-01 10:00:00", "2024-05-06 09:00:00"},  // 2024-05-01 is a Wednesday
		{"0 0 9 * * 0", "2024-05-01 10:00:00", "2024-05-05 09:00:00"},    // Sunday = 0
		{"0 0 0 13 * Fri", "2024-01-01 00:00:00", "2024-09-13 00:00:00"}, // day AND day-of-week
		{"0 0 0 1 Jan *", "2024-06-01 00:00:00", "2025-01-01 00:00:00"},
		{"0 30 9-17/4 * * *", "2024-01-01 10:00:00", "2024-01-01 13:30:00"},
		{"15,45 * * * * *", "2024-01-01 00:00:15", "2024-01-01 00:00:45"},
		{"0 0 0 1 1 *", "2024-01-01 00:00:00.5", "2025-01-01 00:00:00"},
	}
	for _, c := range cases {
		after, err := time.Parse("2006-01-02 15:04:05.999", c.after)
		if err != nil {
			t.Fatal(err)
		}
		got := MustParse(c.expr).Next(after)
		if !got.Equal(ts(c.want)) {
			t.Errorf("Next(%q, %s) = %s, want %s", c.expr, c.after, got, c.want)
		}
	}
	if got := MustParse("0 0 0 30 2 *").Next(ts("2024-01-01 00:00:00")); !got.IsZero() {
		t.Errorf("February 30th occurred: %s", got)
	}
}

func TestNextDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tz database:", err)
	}
	// 2024-03-31 02:00 CET → 03:00 CEST: 02:30 does not exist and is pushed forward by the gap.
	after := time.Date(2024, 3, 31, 1, 0, 0, 0, berlin)
	got := MustParse("0 30 2 * * *").Next(after)
	if want := time.Date(2024, 3, 31, 3, 30, 0, 0, berlin); !got.Equal(want) {
		t.Errorf("spring forward: got %s, want %s", got, want)
	}
	// 2024-10-27 03:00 CEST → 02:00 CET: 02:30 happens twice and fires once.
	after = time.Date(2024, 10, 27, 1, 0, 0, 0, berlin)
	s := MustParse("0 30 2 * * *")
	first := s.Next(after)
	if _, off := first.Zone(); off != 2*3600 || first.Hour() != 2 || first.Minute() != 30 {
		t.Errorf("fall back first: %s", first)
	}
	second := s.Next(first)
	if second.Day() != 28 {
		t.Errorf("fall back: the ambiguous time fired twice (%s then %s)", first, second)
	}
	// Evaluated in the location of the given time.
	ny, _ := time.LoadLocation("America/New_York")
	got = MustParse("0 0 9 * * *").Next(time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC).In(ny))
	if want := time.Date(2024, 6, 1, 9, 0, 0, 0, ny); !got.Equal(want) {
		t.Errorf("new york: got %s want %s", got, want)
	}
}
