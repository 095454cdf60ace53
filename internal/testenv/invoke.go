package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/storage"
)

// QueueInvocation returns the body the Functions host posts to function for a queue
// message received through the storage boundary (any driver) and bound as "message":
// Data and Metadata values double-encoded as the host sends them
// (docs/host-contract.md §1.4–1.5). Zero times are sent as the current time.
func QueueInvocation(function string, m store.Message) []byte {
	enc := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	twice := func(s string) json.RawMessage { return enc(string(enc(s))) }
	iso := func(tm time.Time) json.RawMessage {
		if tm.IsZero() {
			tm = time.Now()
		}
		return enc(tm.UTC().Format("2006-01-02T15:04:05+00:00"))
	}
	b, _ := json.Marshal(map[string]map[string]json.RawMessage{
		"Data": {"message": twice(m.Text)},
		"Metadata": {
			"Id":              twice(m.ID),
			"DequeueCount":    enc(fmt.Sprint(m.DequeueCount)),
			"InsertionTime":   iso(m.InsertionTime),
			"ExpirationTime":  iso(m.ExpirationTime),
			"NextVisibleTime": iso(m.NextVisible),
			"PopReceipt":      twice(m.PopReceipt),
			"sys":             enc(map[string]string{"MethodName": function, "UtcNow": time.Now().UTC().Format(time.RFC3339Nano)}),
		},
	})
	return b
}

// DeliverOnce plays the queue trigger once: it receives up to 32 visible messages of
// queue through the storage boundary (so it works on Azurite and on storage.NewMemory),
// invokes function on h with each as the host would, and deletes each message. A failed
// invocation fails the test. It returns how many messages it delivered.
func DeliverOnce(tb testing.TB, clients *storage.Clients, h http.Handler, function, queue string) int {
	tb.Helper()
	ctx := context.Background()
	s := clients.Store()
	msgs, err := s.Receive(ctx, queue, store.MaxReceive, 0)
	if err != nil {
		tb.Fatal(err)
	}
	for _, m := range msgs {
		req := httptest.NewRequest(http.MethodPost, "/"+function, bytes.NewReader(QueueInvocation(function, m)))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			tb.Fatalf("%s: %d %s", function, rec.Code, rec.Body.String())
		}
		if err := s.DeleteMessage(ctx, queue, m.ID, m.PopReceipt); err != nil {
			tb.Fatal(err)
		}
	}
	return len(msgs)
}

// Drain plays the queue triggers of queue (function) and of its poison queue
// (deadFunction) until both are empty, failing the test after 100 rounds.
func Drain(tb testing.TB, clients *storage.Clients, h http.Handler, queue, function, deadFunction string) {
	tb.Helper()
	for range 100 {
		if DeliverOnce(tb, clients, h, function, queue)+DeliverOnce(tb, clients, h, deadFunction, clients.Layout.PoisonQueue(queue)) == 0 {
			return
		}
	}
	tb.Fatal("queues did not drain")
}
