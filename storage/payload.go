package storage

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
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
	_, err = c.upload(ctx, c.Layout.PayloadsContainer(), name, data, &azblob.UploadBufferOptions{
		HTTPHeaders: &blob.HTTPHeaders{BlobContentType: to.Ptr(contentType)},
	})
	if err != nil {
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
	resp, err := c.Blob.DownloadStream(ctx, container, name, nil)
	if err != nil {
		if IsNotFound(err) {
			return nil, fmt.Errorf("%s/%s: %w", container, name, ErrNotFound)
		}
		return nil, fmt.Errorf("read %s/%s: %w", container, name, err)
	}
	defer resp.Body.Close()
	raw := limit + seal.Overhead
	if resp.ContentLength != nil && *resp.ContentLength > raw {
		return nil, fmt.Errorf("%s/%s holds %d bytes, over %d: %w", container, name, *resp.ContentLength, limit, ErrTooLarge)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, raw+1))
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", container, name, err)
	}
	if int64(len(data)) <= raw {
		if data, err = c.openBlob(ctx, container, name, data); err != nil {
			return nil, err
		}
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
	_, err := c.Blob.DeleteBlob(ctx, container, name, nil)
	if err != nil && !IsNotFound(err) {
		return fmt.Errorf("delete payload %s/%s: %w", container, name, err)
	}
	return nil
}
