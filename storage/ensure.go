package storage

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

// Ensure creates every queue and container of the layout that does not exist yet. It is
// idempotent; on Azure, Bicep creates them and Ensure finds them all present.
func (c *Clients) Ensure(ctx context.Context) error {
	s := c.Store()
	for _, q := range c.Layout.Queues() {
		if err := s.CreateQueue(ctx, q); err != nil {
			return fmt.Errorf("create queue %s: %w", q, err)
		}
	}
	for _, name := range c.Layout.Containers() {
		if err := s.CreateContainer(ctx, name); err != nil {
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

// IsNotFound reports whether err says a queue, container, blob or message does not
// exist: the storage boundary's not-found error, or a 404 from an SDK client.
func IsNotFound(err error) bool {
	return errors.Is(err, store.ErrNotFound) || isStatus(err, http.StatusNotFound)
}

// IsConflict reports whether a conditional write lost: the storage boundary's conflict
// error, or from an SDK client 409 (already exists, with If-None-Match: *) or 412 (ETag
// changed, with If-Match).
func IsConflict(err error) bool {
	return errors.Is(err, store.ErrConflict) || isStatus(err, http.StatusConflict) || isStatus(err, http.StatusPreconditionFailed)
}
