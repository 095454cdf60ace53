package azure

import (
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/tracing"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"
)

// Account says how to reach one storage account's queue and blob services: with its
// account key, a SAS token, or a token credential (identity-based), in that order of
// precedence.
type Account struct {
	// Name is the account name.
	Name string
	// QueueURL and BlobURL are the service endpoints, ending in "/".
	QueueURL, BlobURL string
	// Key is the base64 account key (shared-key authentication; signs SAS links).
	Key string
	// SAS is a SAS token without its leading "?".
	SAS string
	// Credential authenticates identity-based connections; read links are then signed
	// with a user delegation key.
	Credential azcore.TokenCredential
	// Transport replaces the HTTP transport (tests, connection-pool tuning).
	Transport policy.Transporter
	// Tracing, when not the zero Provider, traces every SDK call: a span per call named
	// after the driver operation ("blob Put", "queue Enqueue"), a child of the span of
	// the call's context, and the SDK's "HTTP <method>" span per try under it.
	Tracing tracing.Provider
}

// defaultTransport is the HTTP client of every account opened without a Transport: the
// SDK's default keeps only a few idle connections per host, so a handler or local host
// running 24 jobs at once (batchSize + newBatchThreshold) closed and reopened connections
// to storage all the time (a new TCP connection, and on Azure a TLS handshake, for about
// every other job under a backlog). This one keeps up to 256 idle per host.
var defaultTransport = func() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 512
	tr.MaxIdleConnsPerHost = 256
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}
}()

// Open builds the SDK clients of the account and returns the driver over them.
func Open(a Account) (*Store, error) {
	qopts := &azqueue.ClientOptions{}
	bopts := &azblob.ClientOptions{}
	t := a.Transport
	if t == nil {
		t = defaultTransport
	}
	qopts.Transport, bopts.Transport = t, t
	traced := traceWith(a.Tracing, &qopts.ClientOptions, &bopts.ClientOptions)
	s, err := openClients(a, qopts, bopts)
	if err != nil {
		return nil, err
	}
	s.traced = traced
	return s, nil
}

// openClients builds the SDK clients with the account's credential.
func openClients(a Account, qopts *azqueue.ClientOptions, bopts *azblob.ClientOptions) (*Store, error) {
	switch {
	case a.Key != "":
		return openShared(a, qopts, bopts)
	case a.SAS != "":
		q, err := azqueue.NewServiceClientWithNoCredential(a.QueueURL+"?"+a.SAS, qopts)
		if err != nil {
			return nil, fmt.Errorf("queue client: %w", err)
		}
		b, err := azblob.NewClientWithNoCredential(a.BlobURL+"?"+a.SAS, bopts)
		if err != nil {
			return nil, fmt.Errorf("blob client: %w", err)
		}
		return New(q, b, nil), nil
	case a.Credential != nil:
		q, err := azqueue.NewServiceClient(a.QueueURL, a.Credential, qopts)
		if err != nil {
			return nil, fmt.Errorf("queue client: %w", err)
		}
		b, err := azblob.NewClient(a.BlobURL, a.Credential, bopts)
		if err != nil {
			return nil, fmt.Errorf("blob client: %w", err)
		}
		return New(q, b, &Options{UserDelegation: true}), nil
	default:
		return nil, fmt.Errorf("account %s: no key, SAS token or credential", a.Name)
	}
}

func openShared(a Account, qopts *azqueue.ClientOptions, bopts *azblob.ClientOptions) (*Store, error) {
	qkey, err := azqueue.NewSharedKeyCredential(a.Name, a.Key)
	if err != nil {
		return nil, fmt.Errorf("account key: %w", err)
	}
	bkey, err := azblob.NewSharedKeyCredential(a.Name, a.Key)
	if err != nil {
		return nil, fmt.Errorf("account key: %w", err)
	}
	q, err := azqueue.NewServiceClientWithSharedKeyCredential(a.QueueURL, qkey, qopts)
	if err != nil {
		return nil, fmt.Errorf("queue client: %w", err)
	}
	b, err := azblob.NewClientWithSharedKeyCredential(a.BlobURL, bkey, bopts)
	if err != nil {
		return nil, fmt.Errorf("blob client: %w", err)
	}
	return New(q, b, &Options{SharedKey: bkey}), nil
}

// Services returns the SDK clients the driver works over, for tests and tools that
// reach past the boundary on purpose (a test that plants a raw blob).
func (s *Store) Services() (*azqueue.ServiceClient, *azblob.Client) { return s.q, s.b }

// SignsWith says how the driver signs read URLs: "shared-key", "user-delegation" or ""
// (it cannot sign).
func (s *Store) SignsWith() string {
	switch {
	case s.opts.SharedKey != nil:
		return "shared-key"
	case s.opts.UserDelegation:
		return "user-delegation"
	}
	return ""
}
