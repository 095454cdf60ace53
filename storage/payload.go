package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/seal"
)

// ArgsPayloadBlob is the blob name of a job's claim-checked args.
func ArgsPayloadBlob(jobID string) string { return jobID + "/args.json" }

// PutPayload stores a payload blob in the payloads container (replacing one of the same
// name: payload names are derived from job ids, so a rewrite holds the same bytes). With a
// Sealer the blob is sealed for its container and name.
func (c *Clients) PutPayload(ctx context.Context, name, contentType string, data []byte) error {
	data, err := c.sealBlob(ctx, c.Layout.PayloadsContainer(), name, data)
	if err != nil {
		return fmt.Errorf("write payload %s: %w", name, err)
	}
	if _, err = c.upload(ctx, c.Layout.PayloadsContainer(), name, data, store.PutOptions{ContentType: contentType}); err != nil {
		return fmt.Errorf("write payload %s: %w", name, err)
	}
	return nil
}

// ErrTooLarge is returned (wrapped) when a blob is larger than the caller allows.
var ErrTooLarge = errors.New("too large")

// GetPayload reads a payload blob of at most limit bytes from the payloads container
// (ErrNotFound wrapped when missing, ErrTooLarge when it holds more): the size is checked
// before the body is read, and the read stops at limit+1 bytes (plus seal.Overhead for a
// sealed payload, which is opened; limit bounds the opened bytes).
func (c *Clients) GetPayload(ctx context.Context, name string, limit int64) ([]byte, error) {
	container := c.Layout.PayloadsContainer()
	raw := limit + seal.Overhead
	data, _, err := c.Store().Get(ctx, container, name, raw)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("%s/%s: %w", container, name, ErrNotFound)
	case errors.Is(err, store.ErrTooLarge):
		return nil, fmt.Errorf("%s/%s holds more than %d bytes: %w", container, name, limit, ErrTooLarge)
	case err != nil:
		return nil, fmt.Errorf("read %s/%s: %w", container, name, err)
	}
	if data, err = c.openBlob(ctx, container, name, data); err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s/%s holds more than %d bytes: %w", container, name, limit, ErrTooLarge)
	}
	return data, nil
}

// DeletePayload removes a payload blob from the payloads container, by its exact name; a
// missing one is not an error.
func (c *Clients) DeletePayload(ctx context.Context, name string) error {
	container := c.Layout.PayloadsContainer()
	err := c.Store().Delete(ctx, container, name, store.DeleteOptions{})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete payload %s/%s: %w", container, name, err)
	}
	return nil
}
