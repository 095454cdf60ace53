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

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"

	"github.com/nightshift-jobs/nightshift/storage"
)

// QueueInvocation returns the body the Functions host posts to function for a received
// queue message bound as "message": Data and Metadata values double-encoded as the host
// sends them (docs/host-contract.md §1.4–1.5).
func QueueInvocation(function string, m *azqueue.DequeuedMessage) []byte {
	enc := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	twice := func(s string) json.RawMessage { return enc(string(enc(s))) }
	iso := func(tm *time.Time) json.RawMessage {
		if tm == nil {
			now := time.Now()
			tm = &now
		}
		return enc(tm.UTC().Format("2006-01-02T15:04:05+00:00"))
	}
	b, _ := json.Marshal(map[string]map[string]json.RawMessage{
		"Data": {"message": twice(*m.MessageText)},
		"Metadata": {
			"Id":              twice(*m.MessageID),
			"DequeueCount":    enc(fmt.Sprint(*m.DequeueCount)),
			"InsertionTime":   iso(m.InsertionTime),
			"ExpirationTime":  iso(m.ExpirationTime),
			"NextVisibleTime": iso(m.TimeNextVisible),
			"PopReceipt":      twice(*m.PopReceipt),
			"sys":             enc(map[string]string{"MethodName": function, "UtcNow": time.Now().UTC().Format(time.RFC3339Nano)}),
		},
	})
	return b
}

// DeliverOnce plays the queue trigger once: it receives up to 32 visible messages of
// queue, invokes function on h with each as the host would, and deletes each message. A
// failed invocation fails the test. It returns how many messages it delivered.
func DeliverOnce(tb testing.TB, store *storage.Clients, h http.Handler, function, queue string) int {
	tb.Helper()
	ctx := context.Background()
	q := store.Queue.NewQueueClient(queue)
	resp, err := q.DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: to.Ptr[int32](32)})
	if err != nil {
		tb.Fatal(err)
	}
	for _, m := range resp.Messages {
		req := httptest.NewRequest(http.MethodPost, "/"+function, bytes.NewReader(QueueInvocation(function, m)))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			tb.Fatalf("%s: %d %s", function, rec.Code, rec.Body.String())
		}
		if _, err := q.DeleteMessage(ctx, *m.MessageID, *m.PopReceipt, nil); err != nil {
			tb.Fatal(err)
		}
	}
	return len(resp.Messages)
}

// Drain plays the queue triggers of queue (function) and of its poison queue
// (deadFunction) until both are empty, failing the test after 100 rounds.
func Drain(tb testing.TB, store *storage.Clients, h http.Handler, queue, function, deadFunction string) {
	tb.Helper()
	for range 100 {
		if DeliverOnce(tb, store, h, function, queue)+DeliverOnce(tb, store, h, deadFunction, store.Layout.PoisonQueue(queue)) == 0 {
			return
		}
	}
	tb.Fatal("queues did not drain")
}
