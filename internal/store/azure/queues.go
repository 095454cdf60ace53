package azure

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

func secs(d time.Duration) *int32 {
	n := int32(store.Seconds(d))
	return &n
}

// CreateQueue creates a queue; an existing one is not an error.
func (s *Store) CreateQueue(ctx context.Context, name string) error {
	ctx = s.op(ctx, "CreateQueue")
	if err := store.ValidQueueName(name); err != nil {
		return err
	}
	_, err := s.q.CreateQueue(ctx, name, nil)
	if err = wrap(err, "create queue "+name); errors.Is(err, store.ErrConflict) {
		return nil
	}
	return err
}

// DeleteQueue deletes a queue and its messages.
func (s *Store) DeleteQueue(ctx context.Context, name string) error {
	ctx = s.op(ctx, "DeleteQueue")
	if err := store.ValidQueueName(name); err != nil {
		return err
	}
	_, err := s.q.DeleteQueue(ctx, name, nil)
	return wrap(err, "delete queue "+name)
}

// Enqueue puts a message on a queue.
func (s *Store) Enqueue(ctx context.Context, name, text string, delay, ttl time.Duration) (string, error) {
	ctx = s.op(ctx, "Enqueue")
	ttl, err := store.CheckEnqueue(name, text, delay, ttl)
	if err != nil {
		return "", err
	}
	opts := &azqueue.EnqueueMessageOptions{TimeToLive: secs(ttl)}
	if delay > 0 {
		opts.VisibilityTimeout = secs(delay)
	}
	resp, err := s.q.NewQueueClient(name).EnqueueMessage(ctx, text, opts)
	if err != nil {
		return "", wrap(err, "enqueue on "+name)
	}
	if len(resp.Messages) == 0 || resp.Messages[0].MessageID == nil {
		return "", fmt.Errorf("enqueue on %s: no message id in the response", name)
	}
	return *resp.Messages[0].MessageID, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// Receive takes visible messages, hiding them for visibility.
func (s *Store) Receive(ctx context.Context, name string, max int, visibility time.Duration) ([]store.Message, error) {
	ctx = s.op(ctx, "Receive")
	visibility, err := store.CheckReceive(name, max, visibility)
	if err != nil {
		return nil, err
	}
	n := int32(max)
	resp, err := s.q.NewQueueClient(name).DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: &n, VisibilityTimeout: secs(visibility)})
	if err != nil {
		return nil, wrap(err, "receive from "+name)
	}
	out := make([]store.Message, 0, len(resp.Messages))
	for _, m := range resp.Messages {
		out = append(out, store.Message{
			ID: deref(m.MessageID), PopReceipt: deref(m.PopReceipt), Text: deref(m.MessageText), DequeueCount: deref(m.DequeueCount),
			InsertionTime: deref(m.InsertionTime), ExpirationTime: deref(m.ExpirationTime), NextVisible: deref(m.TimeNextVisible),
		})
	}
	return out, nil
}

// Peek returns visible messages without receiving them.
func (s *Store) Peek(ctx context.Context, name string, max int) ([]store.Message, error) {
	ctx = s.op(ctx, "Peek")
	if _, err := store.CheckReceive(name, max, 0); err != nil {
		return nil, err
	}
	n := int32(max)
	resp, err := s.q.NewQueueClient(name).PeekMessages(ctx, &azqueue.PeekMessagesOptions{NumberOfMessages: &n})
	if err != nil {
		return nil, wrap(err, "peek at "+name)
	}
	out := make([]store.Message, 0, len(resp.Messages))
	for _, m := range resp.Messages {
		out = append(out, store.Message{
			ID: deref(m.MessageID), Text: deref(m.MessageText), DequeueCount: deref(m.DequeueCount),
			InsertionTime: deref(m.InsertionTime), ExpirationTime: deref(m.ExpirationTime),
		})
	}
	return out, nil
}

// DeleteMessage deletes a received message.
func (s *Store) DeleteMessage(ctx context.Context, name, id, popReceipt string) error {
	ctx = s.op(ctx, "DeleteMessage")
	if err := store.CheckUpdate(name, id, popReceipt, 0); err != nil {
		return err
	}
	_, err := s.q.NewQueueClient(name).DeleteMessage(ctx, id, popReceipt, nil)
	return wrap(err, "delete message "+id+" from "+name)
}

// Update replaces a received message's text and hides it for timeout; it returns the new
// pop receipt.
func (s *Store) Update(ctx context.Context, name, id, popReceipt, text string, timeout time.Duration) (string, error) {
	ctx = s.op(ctx, "Update")
	if err := store.CheckUpdate(name, id, popReceipt, timeout); err != nil {
		return "", err
	}
	if len(text) > store.MaxMessageBytes {
		return "", fmt.Errorf("message of %d bytes is over the %d-byte limit: %w", len(text), store.MaxMessageBytes, store.ErrTooLarge)
	}
	resp, err := s.q.NewQueueClient(name).UpdateMessage(ctx, id, popReceipt, text, &azqueue.UpdateMessageOptions{VisibilityTimeout: secs(timeout)})
	if err != nil {
		return "", wrap(err, "update message "+id+" on "+name)
	}
	return deref(resp.PopReceipt), nil
}

// Count returns the approximate number of messages on a queue.
func (s *Store) Count(ctx context.Context, name string) (int, error) {
	ctx = s.op(ctx, "Count")
	if err := store.ValidQueueName(name); err != nil {
		return 0, err
	}
	resp, err := s.q.NewQueueClient(name).GetProperties(ctx, nil)
	if err != nil {
		return 0, wrap(err, "properties of queue "+name)
	}
	return int(deref(resp.ApproximateMessagesCount)), nil
}
