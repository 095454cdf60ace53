package storage

import (
	"context"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
)

// ArgsPayloadBlob is the blob name of a job's claim-checked args.
func ArgsPayloadBlob(jobID string) string { return jobID + "/args.json" }

// PutPayload stores a payload blob in the payloads container (replacing one of the same
// name: payload names are derived from job ids, so a rewrite holds the same bytes).
func (c *Clients) PutPayload(ctx context.Context, name, contentType string, data []byte) error {
	_, err := c.Blob.UploadBuffer(ctx, c.Layout.PayloadsContainer(), name, data, &azblob.UploadBufferOptions{
		HTTPHeaders: &blob.HTTPHeaders{BlobContentType: to.Ptr(contentType)},
	})
	if err != nil {
		return fmt.Errorf("write payload %s: %w", name, err)
	}
	return nil
}

// GetPayload reads a payload blob from container (ErrNotFound wrapped when missing).
func (c *Clients) GetPayload(ctx context.Context, container, name string) ([]byte, error) {
	data, _, err := c.download(ctx, container, name)
	return data, err
}

// DeletePayload removes a payload blob; a missing one is not an error.
func (c *Clients) DeletePayload(ctx context.Context, container, name string) error {
	_, err := c.Blob.DeleteBlob(ctx, container, name, nil)
	if err != nil && !IsNotFound(err) {
		return fmt.Errorf("delete payload %s/%s: %w", container, name, err)
	}
	return nil
}
