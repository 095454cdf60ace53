// Package azure is the Azure Storage driver of the storage boundary (package store): it
// implements store.Queues, store.Blobs and store.Leases over the azqueue and azblob SDK
// clients, validating arguments like every driver and mapping service errors onto
// store.ErrNotFound, store.ErrConflict, store.ErrTooLarge, store.ErrInvalid and
// store.ErrForbidden and store.ErrUnavailable (the SDK error stays wrapped for errors.As).
package azure

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

// Store is the driver over one storage account's queue and blob services.
type Store struct {
	q    *azqueue.ServiceClient
	b    *azblob.Client
	opts Options
	// emulator: the blob endpoint is an emulator's (Azurite: path-style, on an IP
	// address or localhost, or the devstoreaccount1 account), whose Find Blobs by Tags
	// paging needs a workaround (windowEnd).
	emulator bool
	// traced: the clients trace their calls (Account.Tracing); op names them.
	traced bool

	mu      sync.Mutex
	udc     *service.UserDelegationCredential
	udcTill time.Time
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Linker  = (*Store)(nil)
	_ store.Indexer = (*Store)(nil)
)

// Options say how the driver signs read URLs (store.Linker); the zero value cannot sign.
type Options struct {
	// SharedKey signs service SAS URLs (a connection string with an account key).
	SharedKey *azblob.SharedKeyCredential
	// UserDelegation signs with a user delegation key, requested through the blob
	// client's token credential (identity-based connections; the identity needs a role
	// that may delegate). Used when SharedKey is nil.
	UserDelegation bool
}

// New returns the driver over the given service clients (as the settings build them);
// opts may be nil.
func New(q *azqueue.ServiceClient, b *azblob.Client, opts *Options) *Store {
	s := &Store{q: q, b: b}
	s.emulator = emulator(b.URL())
	if opts != nil {
		s.opts = *opts
	}
	return s
}

// emulator reports whether a blob service URL is an emulator's: Azure's endpoints are
// host names (<account>.blob.…), never an IP address or localhost.
func emulator(blobURL string) bool {
	u, err := url.Parse(blobURL)
	if err != nil {
		return false
	}
	h := u.Hostname()
	return h == "localhost" || net.ParseIP(h) != nil || strings.HasPrefix(u.Path, "/devstoreaccount1")
}

// wrap maps an SDK error onto the store's errors; what says what was being done.
func wrap(err error, what string) error {
	if err == nil {
		return nil
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return fmt.Errorf("%s: %w: %w", what, store.ErrUnavailable, err) // no answer
	}
	var kind error
	switch {
	case re.StatusCode >= http.StatusInternalServerError:
		kind = store.ErrUnavailable
	case re.ErrorCode == "PopReceiptMismatch":
		kind = store.ErrNotFound // Azure answers 404 for the same case
	case re.ErrorCode == "MessageTooLarge" || re.StatusCode == http.StatusRequestEntityTooLarge:
		kind = store.ErrTooLarge
	case re.StatusCode == http.StatusNotFound:
		kind = store.ErrNotFound
	case re.StatusCode == http.StatusConflict || re.StatusCode == http.StatusPreconditionFailed:
		kind = store.ErrConflict
	case re.StatusCode == http.StatusBadRequest:
		kind = store.ErrInvalid
	case re.StatusCode == http.StatusForbidden:
		kind = store.ErrForbidden
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, kind, err)
}
