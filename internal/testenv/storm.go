package testenv

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/storage"
)

// CrashStorm plays the queue trigger of queue through a crash storm, by the host's rules
// with maxDequeueCount deliveries (docs/host-contract.md §2.3): every round receives the
// visible messages; reaches(m) says whether a delivery reaches the handler. One that does
// not fails at once (the host, or the handler process, is down: the message loses a
// delivery it never ran). One that does invokes function on h in a goroutine of its own; a
// worker that kills "the process" there (runtime.Goexit: no answer, nothing recorded after
// that line) fails the delivery too. A failed delivery is made visible again, or, when its
// DequeueCount reached maxDequeueCount, copied to queue's poison queue and deleted, as the
// host does; an answered delivery is deleted. It returns when queue is empty, failing the
// test after 50 rounds.
func CrashStorm(tb testing.TB, clients *storage.Clients, h http.Handler, function, queue string, maxDequeueCount int, reaches func(m store.Message) bool) {
	tb.Helper()
	ctx := context.Background()
	s := clients.Store()
	for range 50 {
		msgs, err := s.Receive(ctx, queue, store.MaxReceive, 0)
		if err != nil {
			tb.Fatal(err)
		}
		if len(msgs) == 0 {
			return
		}
		for _, m := range msgs {
			answered := reaches(m) && invokeMayDie(h, function, m)
			switch {
			case answered:
			case m.DequeueCount >= int64(maxDequeueCount):
				if _, err := s.Enqueue(ctx, clients.Layout.PoisonQueue(queue), m.Text, 0, 0); err != nil {
					tb.Fatal(err)
				}
			default:
				if _, err := s.Update(ctx, queue, m.ID, m.PopReceipt, m.Text, 0); err != nil {
					tb.Fatal(err)
				}
				continue
			}
			if err := s.DeleteMessage(ctx, queue, m.ID, m.PopReceipt); err != nil {
				tb.Fatal(err)
			}
		}
	}
	tb.Fatal("the crash storm did not empty the queue")
}

// invokeMayDie invokes function on h with m and reports whether the handler answered 200;
// a handler goroutine that exits without answering (runtime.Goexit) is a dead process.
func invokeMayDie(h http.Handler, function string, m store.Message) bool {
	done := make(chan int, 1)
	go func() {
		code := -1
		defer func() { done <- code }()
		req := httptest.NewRequest(http.MethodPost, "/"+function, bytes.NewReader(QueueInvocation(function, m)))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		code = rec.Code
	}()
	return <-done == http.StatusOK
}
