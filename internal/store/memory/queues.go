package memory

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

type queue struct {
	msgs []*message // insertion order
}

type message struct {
	id, text, pop string
	dequeues      int64
	inserted      time.Time
	expires       time.Time
	visible       time.Time
}

func (m *message) export(pop string) store.Message {
	return store.Message{
		ID: m.id, PopReceipt: pop, Text: m.text, DequeueCount: m.dequeues,
		InsertionTime: m.inserted.Truncate(time.Second), ExpirationTime: m.expires.Truncate(time.Second),
		NextVisible: m.visible.Truncate(time.Second),
	}
}

// queue returns a live queue with its expired messages dropped; s.mu must be held.
func (s *Store) queue(name string, now time.Time) (*queue, error) {
	q := s.queues[name]
	if q == nil {
		return nil, notFound("queue %s", name)
	}
	q.msgs = slices.DeleteFunc(q.msgs, func(m *message) bool { return !now.Before(m.expires) })
	return q, nil
}

// CreateQueue creates a queue; an existing one is not an error.
func (s *Store) CreateQueue(_ context.Context, name string) error {
	if err := store.ValidQueueName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queues[name] == nil {
		s.queues[name] = &queue{}
	}
	return nil
}

// DeleteQueue deletes a queue and its messages.
func (s *Store) DeleteQueue(_ context.Context, name string) error {
	if err := store.ValidQueueName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queues[name] == nil {
		return notFound("queue %s", name)
	}
	delete(s.queues, name)
	return nil
}

// Enqueue puts a message on a queue.
func (s *Store) Enqueue(_ context.Context, name, text string, delay, ttl time.Duration) (string, error) {
	ttl, err := store.CheckEnqueue(name, text, delay, ttl)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	q, err := s.queue(name, now)
	if err != nil {
		return "", err
	}
	m := &message{
		id: newID(), text: text, inserted: now, expires: now.Add(ttl),
		visible: now.Add(time.Duration(store.Seconds(delay)) * time.Second),
	}
	q.msgs = append(q.msgs, m)
	return m.id, nil
}

// Receive takes visible messages, hiding them for visibility.
func (s *Store) Receive(_ context.Context, name string, max int, visibility time.Duration) ([]store.Message, error) {
	visibility, err := store.CheckReceive(name, max, visibility)
	if err != nil {
		return nil, err
	}
	return s.visible(name, max, func(m *message, now time.Time) store.Message {
		m.dequeues++
		m.pop = "p" + strconv.FormatUint(s.next(), 36) + "-" + newID()
		m.visible = now.Add(time.Duration(store.Seconds(visibility)) * time.Second)
		return m.export(m.pop)
	})
}

// visible hands at most max visible messages of queue name, oldest first, to take and
// returns what it made of them.
func (s *Store) visible(name string, max int, take func(m *message, now time.Time) store.Message) ([]store.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	q, err := s.queue(name, now)
	if err != nil {
		return nil, err
	}
	out := []store.Message{}
	for _, m := range q.msgs {
		if len(out) == max {
			break
		}
		if !m.visible.After(now) {
			out = append(out, take(m, now))
		}
	}
	return out, nil
}

// Peek returns visible messages without receiving them.
func (s *Store) Peek(_ context.Context, name string, max int) ([]store.Message, error) {
	if _, err := store.CheckReceive(name, max, 0); err != nil {
		return nil, err
	}
	return s.visible(name, max, func(m *message, _ time.Time) store.Message { return m.export("") })
}

// find returns the index of the message with id and popReceipt; s.mu must be held.
func (s *Store) find(name, id, popReceipt string) (*queue, int, error) {
	q, err := s.queue(name, s.now())
	if err != nil {
		return nil, 0, err
	}
	i := slices.IndexFunc(q.msgs, func(m *message) bool { return m.id == id })
	if i < 0 {
		return nil, 0, notFound("message %s on queue %s", id, name)
	}
	if q.msgs[i].pop != popReceipt {
		return nil, 0, notFound("message %s on queue %s: the pop receipt is not the current one", id, name)
	}
	return q, i, nil
}

// DeleteMessage deletes a received message.
func (s *Store) DeleteMessage(_ context.Context, name, id, popReceipt string) error {
	if err := store.CheckUpdate(name, id, popReceipt, 0); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, i, err := s.find(name, id, popReceipt)
	if err != nil {
		return err
	}
	q.msgs = slices.Delete(q.msgs, i, i+1)
	return nil
}

// Update replaces a received message's text, hides it for timeout and returns its new
// pop receipt.
func (s *Store) Update(_ context.Context, name, id, popReceipt, text string, timeout time.Duration) (string, error) {
	if err := store.CheckUpdate(name, id, popReceipt, timeout); err != nil {
		return "", err
	}
	if len(text) > store.MaxMessageBytes {
		return "", fmt.Errorf("message of %d bytes is over the %d-byte limit: %w", len(text), store.MaxMessageBytes, store.ErrTooLarge)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, i, err := s.find(name, id, popReceipt)
	if err != nil {
		return "", err
	}
	m := q.msgs[i]
	m.text = text
	m.pop = "p" + strconv.FormatUint(s.next(), 36) + "-" + newID()
	m.visible = s.now().Add(time.Duration(store.Seconds(timeout)) * time.Second)
	return m.pop, nil
}

// Count returns the number of live messages on a queue, invisible ones included.
func (s *Store) Count(_ context.Context, name string) (int, error) {
	if err := store.ValidQueueName(name); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.queue(name, s.now())
	if err != nil {
		return 0, err
	}
	return len(q.msgs), nil
}
