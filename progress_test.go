package nightshift

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/record"
)

// The reporter writes the first report at once, folds later ones into one trailing write
// per interval, never writes after stop, and stop returns promptly with the last value.
func TestProgressReporterThrottle(t *testing.T) {
	var mu sync.Mutex
	var writes []record.Progress
	r := newProgressReporter(context.Background(), 200*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(_ context.Context, p *record.Progress) error {
			mu.Lock()
			writes = append(writes, *p)
			mu.Unlock()
			return nil
		})
	for i := 0; i <= 10; i++ {
		r.report(context.Background(), float64(i)/10, "step")
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	if len(writes) != 1 {
		t.Fatalf("after a burst of 11 reports: %d writes", len(writes))
	}
	mu.Unlock()
	r.report(context.Background(), 0.5, "half")
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	if len(writes) != 1 {
		t.Fatalf("a report within the interval was written at once: %+v", writes)
	}
	mu.Unlock()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(writes) }
	for deadline := time.Now().Add(5 * time.Second); count() < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	if len(writes) != 2 || writes[1].Fraction != 0.5 || writes[1].Message != "half" {
		t.Fatalf("trailing write: %+v", writes)
	}
	mu.Unlock()
	r.report(context.Background(), 2, "over the top") // clamped to 1; scheduled for later
	start := time.Now()
	last := r.stop()
	if time.Since(start) > time.Second {
		t.Fatalf("stop waited %s for a scheduled write", time.Since(start))
	}
	if last == nil || last.Fraction != 1 || last.Message != "over the top" {
		t.Fatalf("last %+v", last)
	}
	n := count()
	r.report(context.Background(), 0.5, "after stop")
	time.Sleep(300 * time.Millisecond)
	if count() != n {
		t.Fatalf("a write after stop: %+v", writes)
	}
	var nilR *progressReporter
	nilR.report(context.Background(), 1, "nil reporter is a no-op")
	if nilR.stop() != nil || nilR.wrote() {
		t.Fatal("nil reporter")
	}
}
