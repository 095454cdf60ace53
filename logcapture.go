package nightshift

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/record"
)

// captureHandler tees a job's log records: to the handler's own slog handler (stdout JSON),
// and into a bounded list kept in the job's status record and the invocation's Logs.
type captureHandler struct {
	next  slog.Handler
	buf   *captureBuf
	attrs []slog.Attr
	group string
}

type captureBuf struct {
	mu      sync.Mutex
	attempt int
	lines   []record.LogLine
	dropped int
}

func newCapture(next slog.Handler, attempt int) (*slog.Logger, *captureBuf) {
	// One allocation for the handler and its buffer.
	c := &struct {
		h   captureHandler
		buf captureBuf
	}{buf: captureBuf{attempt: attempt}}
	c.h = captureHandler{next: next, buf: &c.buf}
	return slog.New(&c.h), &c.buf
}

func (h *captureHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelDebug
}

// Handle records a redacted copy of r (see redactAttr) in the capture and passes the
// same copy on: sensitive values reach neither the status record nor the process log.
func (h *captureHandler) Handle(ctx context.Context, r slog.Record) error {
	red := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		red.AddAttrs(redactAttr(a))
		return true
	})
	r = red
	var b strings.Builder
	b.WriteString(r.Message)
	write := func(a slog.Attr) bool {
		if a.Equal(slog.Attr{}) {
			return true
		}
		key := a.Key
		if h.group != "" {
			key = h.group + "." + key
		}
		fmt.Fprintf(&b, " %s=%v", key, a.Value.Resolve())
		return true
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	h.buf.add(record.LogLine{Time: t.UTC(), Level: r.Level.String(), Message: b.String(), Attempt: h.buf.attempt})
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	as = append([]slog.Attr(nil), as...)
	for i := range as {
		as[i] = redactAttr(as[i])
	}
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	c.next = h.next.WithAttrs(as)
	return &c
}

func (h *captureHandler) WithGroup(name string) slog.Handler {
	c := *h
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	c.next = h.next.WithGroup(name)
	return &c
}

func (b *captureBuf) add(l record.LogLine) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, l)
	if len(b.lines) > record.MaxLogLines {
		b.dropped++
		b.lines = b.lines[1:]
	}
}

// snapshot returns the captured lines and how many older ones were dropped.
func (b *captureBuf) snapshot() ([]record.LogLine, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]record.LogLine(nil), b.lines...), b.dropped
}

// text renders captured lines for the invocation's Logs.
func (b *captureBuf) text() []string {
	lines, _ := b.snapshot()
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		out = append(out, l.Level+" "+l.Message)
	}
	return out
}
