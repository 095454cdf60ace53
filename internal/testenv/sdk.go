package testenv

import (
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"

	"github.com/nightshift-jobs/nightshift/internal/store/azure"
	"github.com/nightshift-jobs/nightshift/storage"
)

// QueueService returns the queue service client under c's Azure driver, for tests that
// reach past the storage boundary on purpose (plant a raw message, read one as the host
// would). It fails the caller's expectations loudly: c must come from FromEnv.
func QueueService(c *storage.Clients) *azqueue.ServiceClient {
	q, _ := azureDriver(c).Services()
	return q
}

// BlobService returns the blob service client under c's Azure driver (see QueueService).
func BlobService(c *storage.Clients) *azblob.Client {
	_, b := azureDriver(c).Services()
	return b
}

func azureDriver(c *storage.Clients) *azure.Store {
	d, ok := c.Store().(*azure.Store)
	if !ok {
		panic("testenv: these clients are not on the Azure driver (storage.FromEnv builds them)")
	}
	return d
}

// SignsWith says how c's Azure driver signs read links: "shared-key", "user-delegation"
// or "" (see azure.Store.SignsWith).
func SignsWith(c *storage.Clients) string { return azureDriver(c).SignsWith() }
