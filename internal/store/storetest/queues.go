package storetest

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

func queueCases() []testCase {
	return []testCase{
		{"Queue/CreateIsIdempotent", queueCreateIdempotent},
		{"Queue/DeleteQueue", queueDelete},
		{"Queue/MissingQueueIsNotFound", queueMissing},
		{"Queue/InvalidArguments", queueInvalid},
		{"Queue/EnqueueReceiveDelete", queueRoundTrip},
		{"Queue/ReceiveEmpty", queueReceiveEmpty},
		{"Queue/MessageSizeLimit", queueSizeLimit},
		{"Queue/ReceiveAtMostMax", queueReceiveMax},
		{"Queue/HiddenWhileInvisible", queueHidden},
		{"Queue/VisibilityExpiryRedelivers", queueRedelivery},
		{"Queue/EnqueueDelay", queueDelay},
		{"Queue/UpdateTextAndVisibility", queueUpdate},
		{"Queue/TimeToLive", queueTTL},
		{"Queue/PeekDoesNotReceive", queuePeek},
		{"Queue/ConcurrentReceiveDeliversOnce", queueConcurrentReceive},
	}
}

func queueCreateIdempotent(t *testing.T, h Harness) {
	q := newQueue(t, h)
	is(t, "second CreateQueue", h.Store.CreateQueue(ctx(t), q), nil)
	n, err := h.Store.Count(ctx(t), q)
	is(t, "Count", err, nil)
	if n != 0 {
		t.Fatalf("Count of a new queue = %d, want 0", n)
	}
}

func queueDelete(t *testing.T, h Harness) {
	q := name()
	is(t, "DeleteQueue of a missing queue", h.Store.DeleteQueue(ctx(t), q), store.ErrNotFound)
	is(t, "CreateQueue", h.Store.CreateQueue(ctx(t), q), nil)
	is(t, "DeleteQueue", h.Store.DeleteQueue(ctx(t), q), nil)
	_, err := h.Store.Count(ctx(t), q)
	is(t, "Count after DeleteQueue", err, store.ErrNotFound)
}

func queueMissing(t *testing.T, h Harness) {
	q := name()
	_, err := h.Store.Enqueue(ctx(t), q, "x", 0, 0)
	is(t, "Enqueue", err, store.ErrNotFound)
	_, err = h.Store.Receive(ctx(t), q, 1, time.Second)
	is(t, "Receive", err, store.ErrNotFound)
	_, err = h.Store.Peek(ctx(t), q, 1)
	is(t, "Peek", err, store.ErrNotFound)
	_, err = h.Store.Count(ctx(t), q)
	is(t, "Count", err, store.ErrNotFound)
}

func queueInvalid(t *testing.T, h Harness) {
	for _, bad := range []string{"ab", "Abc", "a--b", "-abc", "abc-", strings.Repeat("a", 64), "a_b"} {
		is(t, "CreateQueue("+bad+")", h.Store.CreateQueue(ctx(t), bad), store.ErrInvalid)
	}
	q := newQueue(t, h)
	_, err := h.Store.Receive(ctx(t), q, 0, 0)
	is(t, "Receive max 0", err, store.ErrInvalid)
	_, err = h.Store.Receive(ctx(t), q, store.MaxReceive+1, 0)
	is(t, "Receive max 33", err, store.ErrInvalid)
	_, err = h.Store.Enqueue(ctx(t), q, "x", 10*time.Second, 10*time.Second)
	is(t, "Enqueue with delay = ttl", err, store.ErrInvalid)
	_, err = h.Store.Enqueue(ctx(t), q, "x", store.MaxVisibility+time.Second, 30*24*time.Hour)
	is(t, "Enqueue with delay over 7 days", err, store.ErrInvalid)
}

// receiveOne receives exactly one message.
func receiveOne(t *testing.T, h Harness, q string, vis time.Duration) store.Message {
	t.Helper()
	ms, err := h.Store.Receive(ctx(t), q, store.MaxReceive, vis)
	is(t, "Receive", err, nil)
	if len(ms) != 1 {
		t.Fatalf("Receive got %d messages, want 1: %+v", len(ms), ms)
	}
	return ms[0]
}

// receiveNone asserts that nothing is visible.
func receiveNone(t *testing.T, h Harness, q, why string) {
	t.Helper()
	ms, err := h.Store.Receive(ctx(t), q, store.MaxReceive, 30*time.Second)
	is(t, "Receive", err, nil)
	if len(ms) != 0 {
		t.Fatalf("%s: Receive got %d messages, want none: %+v", why, len(ms), ms)
	}
}

func queueRoundTrip(t *testing.T, h Harness) {
	q := newQueue(t, h)
	text := `{"kind":"x","args":{"s":"<&ü>"}}`
	id, err := h.Store.Enqueue(ctx(t), q, text, 0, time.Hour)
	is(t, "Enqueue", err, nil)
	m := receiveOne(t, h, q, 30*time.Second)
	switch {
	case m.ID != id:
		t.Fatalf("received id %q, enqueued %q", m.ID, id)
	case m.Text != text:
		t.Fatalf("received text %q, want %q", m.Text, text)
	case m.DequeueCount != 1:
		t.Fatalf("DequeueCount = %d, want 1", m.DequeueCount)
	case m.PopReceipt == "":
		t.Fatal("no pop receipt")
	case m.InsertionTime.IsZero() || m.ExpirationTime.Sub(m.InsertionTime) != time.Hour:
		t.Fatalf("inserted %v, expires %v: want expiry one hour after insertion", m.InsertionTime, m.ExpirationTime)
	case m.NextVisible.Sub(m.InsertionTime) < 29*time.Second:
		t.Fatalf("next visible %v, inserted %v: want about 30 s later", m.NextVisible, m.InsertionTime)
	}
	n, err := h.Store.Count(ctx(t), q)
	is(t, "Count", err, nil)
	if n != 1 {
		t.Fatalf("Count with one invisible message = %d, want 1", n)
	}
	is(t, "DeleteMessage", h.Store.DeleteMessage(ctx(t), q, m.ID, m.PopReceipt), nil)
	is(t, "second DeleteMessage", h.Store.DeleteMessage(ctx(t), q, m.ID, m.PopReceipt), store.ErrNotFound)
	if n, _ := h.Store.Count(ctx(t), q); n != 0 {
		t.Fatalf("Count after delete = %d, want 0", n)
	}
}

func queueReceiveEmpty(t *testing.T, h Harness) {
	q := newQueue(t, h)
	ms, err := h.Store.Receive(ctx(t), q, 5, time.Second)
	is(t, "Receive", err, nil)
	if ms == nil || len(ms) != 0 {
		t.Fatalf("Receive on an empty queue = %#v, want an empty slice", ms)
	}
}

func queueSizeLimit(t *testing.T, h Harness) {
	q := newQueue(t, h)
	_, err := h.Store.Enqueue(ctx(t), q, strings.Repeat("a", store.MaxMessageBytes), 0, 0)
	is(t, "Enqueue of exactly 64 KiB", err, nil)
	_, err = h.Store.Enqueue(ctx(t), q, strings.Repeat("a", store.MaxMessageBytes+1), 0, 0)
	is(t, "Enqueue of 64 KiB + 1", err, store.ErrTooLarge)
	m := receiveOne(t, h, q, 30*time.Second)
	if len(m.Text) != store.MaxMessageBytes {
		t.Fatalf("received %d bytes, want %d", len(m.Text), store.MaxMessageBytes)
	}
}

func queueReceiveMax(t *testing.T, h Harness) {
	q := newQueue(t, h)
	for i := range 5 {
		_, err := h.Store.Enqueue(ctx(t), q, string(rune('a'+i)), 0, 0)
		is(t, "Enqueue", err, nil)
	}
	ms, err := h.Store.Receive(ctx(t), q, 3, 30*time.Second)
	is(t, "Receive", err, nil)
	if len(ms) != 3 {
		t.Fatalf("Receive(max 3) got %d", len(ms))
	}
	rest, err := h.Store.Receive(ctx(t), q, store.MaxReceive, 30*time.Second)
	is(t, "Receive", err, nil)
	if len(rest) != 2 {
		t.Fatalf("second Receive got %d, want the other 2", len(rest))
	}
	seen := map[string]bool{}
	for _, m := range append(ms, rest...) {
		seen[m.Text] = true
	}
	if len(seen) != 5 {
		t.Fatalf("received %v, want a … e once each", seen)
	}
}

func queueHidden(t *testing.T, h Harness) {
	q := newQueue(t, h)
	_, err := h.Store.Enqueue(ctx(t), q, "x", 0, 0)
	is(t, "Enqueue", err, nil)
	receiveOne(t, h, q, time.Minute)
	receiveNone(t, h, q, "while the message is invisible")
	ps, err := h.Store.Peek(ctx(t), q, 1)
	is(t, "Peek", err, nil)
	if len(ps) != 0 {
		t.Fatalf("Peek shows an invisible message: %+v", ps)
	}
}

func queueRedelivery(t *testing.T, h Harness) {
	q := newQueue(t, h)
	_, err := h.Store.Enqueue(ctx(t), q, "x", 0, 0)
	is(t, "Enqueue", err, nil)
	first := receiveOne(t, h, q, time.Second)
	h.Sleep(2 * time.Second)
	second := receiveOne(t, h, q, 30*time.Second)
	switch {
	case second.ID != first.ID:
		t.Fatalf("redelivered %s, want %s", second.ID, first.ID)
	case second.DequeueCount != 2:
		t.Fatalf("DequeueCount after redelivery = %d, want 2", second.DequeueCount)
	case second.PopReceipt == first.PopReceipt:
		t.Fatal("redelivery kept the pop receipt")
	}
	is(t, "DeleteMessage with the stale pop receipt", h.Store.DeleteMessage(ctx(t), q, first.ID, first.PopReceipt), store.ErrNotFound)
	_, err = h.Store.Update(ctx(t), q, first.ID, first.PopReceipt, "x", 0)
	is(t, "Update with the stale pop receipt", err, store.ErrNotFound)
	is(t, "DeleteMessage with the current pop receipt", h.Store.DeleteMessage(ctx(t), q, second.ID, second.PopReceipt), nil)
}

func queueDelay(t *testing.T, h Harness) {
	q := newQueue(t, h)
	id, err := h.Store.Enqueue(ctx(t), q, "later", time.Second, 0)
	is(t, "Enqueue", err, nil)
	receiveNone(t, h, q, "before the delay passed")
	if n, _ := h.Store.Count(ctx(t), q); n != 1 {
		t.Fatalf("Count with one delayed message = %d, want 1", n)
	}
	h.Sleep(2 * time.Second)
	m := receiveOne(t, h, q, 30*time.Second)
	if m.ID != id || m.DequeueCount != 1 {
		t.Fatalf("got %+v, want %s on its first delivery", m, id)
	}
}

func queueUpdate(t *testing.T, h Harness) {
	q := newQueue(t, h)
	_, err := h.Store.Enqueue(ctx(t), q, "a", 0, 0)
	is(t, "Enqueue", err, nil)
	m := receiveOne(t, h, q, time.Minute)
	pop, err := h.Store.Update(ctx(t), q, m.ID, m.PopReceipt, "b", time.Minute)
	is(t, "Update", err, nil)
	if pop == "" || pop == m.PopReceipt {
		t.Fatalf("Update returned pop receipt %q (was %q), want a new one", pop, m.PopReceipt)
	}
	receiveNone(t, h, q, "after Update hid it for a minute")
	is(t, "DeleteMessage with the replaced pop receipt", h.Store.DeleteMessage(ctx(t), q, m.ID, m.PopReceipt), store.ErrNotFound)
	_, err = h.Store.Update(ctx(t), q, m.ID, pop, "c", 0)
	is(t, "Update to visible", err, nil)
	again := receiveOne(t, h, q, 30*time.Second)
	if again.Text != "c" || again.DequeueCount != 2 {
		t.Fatalf("after Update got text %q, dequeue count %d; want \"c\", 2", again.Text, again.DequeueCount)
	}
}

func queueTTL(t *testing.T, h Harness) {
	q := newQueue(t, h)
	_, err := h.Store.Enqueue(ctx(t), q, "short", 0, time.Second)
	is(t, "Enqueue", err, nil)
	_, err = h.Store.Enqueue(ctx(t), q, "long", 0, time.Hour)
	is(t, "Enqueue", err, nil)
	h.Sleep(2 * time.Second)
	m := receiveOne(t, h, q, 30*time.Second)
	if m.Text != "long" {
		t.Fatalf("received %q, want only the message that has not expired", m.Text)
	}
}

func queuePeek(t *testing.T, h Harness) {
	q := newQueue(t, h)
	id, err := h.Store.Enqueue(ctx(t), q, "p", 0, 0)
	is(t, "Enqueue", err, nil)
	ps, err := h.Store.Peek(ctx(t), q, store.MaxReceive)
	is(t, "Peek", err, nil)
	if len(ps) != 1 || ps[0].ID != id || ps[0].Text != "p" || ps[0].PopReceipt != "" || ps[0].DequeueCount != 0 {
		t.Fatalf("Peek = %+v, want the message, no pop receipt, dequeue count 0", ps)
	}
	if m := receiveOne(t, h, q, 30*time.Second); m.DequeueCount != 1 {
		t.Fatalf("DequeueCount after a peek = %d, want 1", m.DequeueCount)
	}
}

func queueConcurrentReceive(t *testing.T, h Harness) {
	q := newQueue(t, h)
	_, err := h.Store.Enqueue(ctx(t), q, "once", 0, 0)
	is(t, "Enqueue", err, nil)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		got  int
		errs []error
	)
	for range 8 {
		wg.Go(func() {
			ms, err := h.Store.Receive(ctx(t), q, 1, time.Minute)
			mu.Lock()
			defer mu.Unlock()
			got += len(ms)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 || got != 1 {
		t.Fatalf("8 concurrent receives got %d messages (errors %v), want exactly 1", got, errs)
	}
}
