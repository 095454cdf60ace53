package storage

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

// Ensure creates every queue and container of the layout that does not exist yet. It is
// idempotent; on Azure, Bicep creates them and Ensure finds them all present.
func (c *Clients) Ensure(ctx context.Context) error {
	for _, q := range c.Layout.Queues() {
		if _, err := c.Queue.CreateQueue(ctx, q, nil); err != nil && !isStatus(err, http.StatusConflict) {
			return fmt.Errorf("create queue %s: %w", q, err)
		}
	}
	for _, name := range c.Layout.Containers() {
		if _, err := c.Blob.CreateContainer(ctx, name, nil); err != nil && !isStatus(err, http.StatusConflict) {
			return fmt.Errorf("create container %s: %w", name, err)
		}
	}
	return nil
}

// isStatus reports whether err is an Azure response error with the given HTTP status.
func isStatus(err error, status int) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == status
}

// IsNotFound reports whether err is a 404 from storage.
func IsNotFound(err error) bool { return isStatus(err, http.StatusNotFound) }

// IsConflict reports whether a conditional write lost: 409 (already exists, with
// If-None-Match: *) or 412 (ETag changed, with If-Match).
func IsConflict(err error) bool {
	return isStatus(err, http.StatusConflict) || isStatus(err, http.StatusPreconditionFailed)
}
