// Package storage turns the Functions host's storage settings into clients, names every
// queue, container and blob (the storage layout, see docs/storage-layout.md), and reads
// and writes the job records (status, results, dead letters, batches, dedupe locks,
// payloads) with conditional writes. All its I/O goes through the storage boundary
// (internal/store): the Azure driver for clients from FromEnv, the in-memory driver for
// NewMemory.
package storage

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/tracing"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/store/azure"
	"github.com/nightshift-jobs/nightshift/internal/store/memory"
	"github.com/nightshift-jobs/nightshift/seal"
)

// Setting names read from the environment (app settings reach a custom handler as
// environment variables; locally they come from local.settings.json or the shell).
const (
	// SettingStorage is the host's storage connection setting. Its value is a connection
	// string; when it is empty, the identity-based "__" settings below are used
	// (docs/host-contract.md §4.1–4.3).
	SettingStorage = "AzureWebJobsStorage"
	// SettingAccountName names the storage account for identity-based connections.
	SettingAccountName = SettingStorage + "__accountName"
	// SettingQueueServiceURI is the queue endpoint for identity-based connections.
	SettingQueueServiceURI = SettingStorage + "__queueServiceUri"
	// SettingBlobServiceURI is the blob endpoint for identity-based connections.
	SettingBlobServiceURI = SettingStorage + "__blobServiceUri"
	// SettingCredential selects the credential kind; "managedidentity" or empty.
	SettingCredential = SettingStorage + "__credential"
	// SettingClientID selects a user-assigned managed identity by client id.
	SettingClientID = SettingStorage + "__clientId"
	// SettingNamePrefix optionally prefixes every queue and container nightshift uses,
	// so that several deployments or test runs can share one storage account.
	SettingNamePrefix = "NIGHTSHIFT_NAME_PREFIX"
)

// DevelopmentStorage is the connection string that UseDevelopmentStorage=true stands for:
// Azurite's well-known account on its default loopback ports. The Go SDK cannot parse the
// shorthand itself.
const DevelopmentStorage = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
	"AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;" +
	"BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;" +
	"TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"

// Clients holds the storage boundary every function of this package does its queue and
// blob I/O through (see Store), the Azure SDK clients built from the settings, plus what
// is needed to sign short-lived links (a shared key locally, a token credential for user
// delegation SAS). Build it with FromEnv, or NewMemory for tests.
type Clients struct {
	// AccountName is the storage account name.
	AccountName string
	// QueueURL and BlobURL are the service endpoints ("" on NewMemory), without
	// credentials.
	QueueURL, BlobURL string
	// Layout names the queues and containers, from NIGHTSHIFT_NAME_PREFIX.
	Layout Layout
	// Sealer, when set, encrypts every record, result and payload blob nightshift writes
	// and the args the client enqueues (docs/encryption.md); reads open sealed blobs and
	// pass plain ones through. FromEnv sets it from NIGHTSHIFT_ENCRYPTION_KEY_URL or
	// NIGHTSHIFT_ENCRYPTION_LOCAL_KEYS.
	Sealer *seal.Sealer
	// MaxPayloadBytes is the payload maximum from NIGHTSHIFT_MAX_PAYLOAD_BYTES (0: unset,
	// the default applies). Every client and handler built on these clients honours it.
	MaxPayloadBytes int64

	// store is the storage boundary (nil in Clients built by hand, which cannot do I/O);
	// token is the identity-based connection's credential (Key Vault uses it too).
	store store.Store
	token azcore.TokenCredential
}

// Store returns the storage boundary these clients do their queue and blob I/O through:
// the Azure driver (FromEnv) or the in-memory driver (NewMemory).
func (c *Clients) Store() store.Store { return c.store }

// NewMemory returns clients backed by the in-memory driver (internal/store/memory) on the
// layout of layoutPrefix (NIGHTSHIFT_NAME_PREFIX; "" for none), with every queue and
// container of the layout created, reading the time from now (time.Now when nil).
//
// For tests: only the storage package's functions work on it. Queue and Blob are nil, so
// code that still calls the SDK clients directly panics on it.
func NewMemory(layoutPrefix string, now func() time.Time) (*Clients, error) {
	layout, err := NewLayout(layoutPrefix)
	if err != nil {
		return nil, err
	}
	c := &Clients{AccountName: "memory", Layout: layout, store: memory.New(now)}
	if err := c.Ensure(context.Background()); err != nil {
		return nil, err
	}
	return c, nil
}

// SettingMaxPayloadBytes is the largest job args, inline or claim-checked, in bytes.
const SettingMaxPayloadBytes = "NIGHTSHIFT_MAX_PAYLOAD_BYTES"

// MaxPayloadFromEnv reads SettingMaxPayloadBytes (0 when unset; a SettingError when it
// is not a positive number).
func MaxPayloadFromEnv(getenv func(string) string) (int64, error) {
	v := strings.TrimSpace(getenv(SettingMaxPayloadBytes))
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, &SettingError{Setting: SettingMaxPayloadBytes, Problem: fmt.Sprintf("%q is not a positive number of bytes", v)}
	}
	return n, nil
}

// SettingError reports a missing or malformed storage setting: which setting, and what
// was expected instead.
type SettingError struct {
	Setting string
	Problem string
}

func (e *SettingError) Error() string {
	return fmt.Sprintf("setting %s: %s", e.Setting, e.Problem)
}

// Options tune the SDK clients; the zero value is fine.
type Options struct {
	// Transport replaces the HTTP transport (tests, connection-pool tuning).
	Transport policy.Transporter
	// Credential overrides the token credential for identity-based connections (and for
	// Key Vault, when encryption uses it).
	Credential azcore.TokenCredential
	// KeyVault tunes the Key Vault client of the encryption key (tests).
	KeyVault *seal.KeyVaultOptions
	// Tracing, when not the zero Provider, traces the queue and blob calls: a span per
	// call under the span of its context, with the SDK's HTTP spans beneath
	// (nightshiftotel's Observer.StorageTracing gives one; docs/observability.md).
	Tracing tracing.Provider
}

// FromEnv builds clients from the host's storage settings, read through getenv (usually
// os.Getenv). A connection string in AzureWebJobsStorage wins; otherwise the identity-based
// settings are used, as the Functions host does (docs/host-contract.md §4.2).
func FromEnv(getenv func(string) string, opts *Options) (*Clients, error) {
	if opts == nil {
		opts = &Options{}
	}
	layout, err := NewLayout(getenv(SettingNamePrefix))
	if err != nil {
		return nil, err
	}
	var c *Clients
	if cs := strings.TrimSpace(getenv(SettingStorage)); cs != "" {
		c, err = fromConnectionString(cs, opts)
	} else {
		c, err = fromIdentity(getenv, opts)
	}
	if err != nil {
		return nil, err
	}
	c.Layout = layout
	if c.MaxPayloadBytes, err = MaxPayloadFromEnv(getenv); err != nil {
		return nil, err
	}
	if c.Sealer, err = sealerFromEnv(getenv, c, opts); err != nil {
		return nil, err
	}
	return c, nil
}

// ParseConnectionString splits a storage connection string into its keys (case-insensitive
// lookup keys are lower-cased). UseDevelopmentStorage=true expands to DevelopmentStorage.
func ParseConnectionString(cs string) (map[string]string, error) {
	kv := map[string]string{}
	for _, part := range strings.Split(cs, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, &SettingError{SettingStorage, fmt.Sprintf("connection string part %q is not Key=Value", redact(part))}
		}
		kv[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	if strings.EqualFold(kv["usedevelopmentstorage"], "true") {
		if _, proxy := kv["developmentstorageproxyuri"]; proxy {
			return nil, &SettingError{SettingStorage, "DevelopmentStorageProxyUri is not supported; give Azurite's endpoints explicitly"}
		}
		return ParseConnectionString(DevelopmentStorage)
	}
	return kv, nil
}

func redact(part string) string {
	k, _, _ := strings.Cut(part, "=")
	if len(k) > 40 {
		k = k[:40]
	}
	return k + "=…"
}

// fromConnectionString builds the queue and blob clients from a storage connection
// string, authenticated with its account key or its SAS token.
func fromConnectionString(cs string, opts *Options) (*Clients, error) {
	kv, err := ParseConnectionString(cs)
	if err != nil {
		return nil, err
	}
	account := kv["accountname"]
	key := kv["accountkey"]
	sasToken := strings.TrimPrefix(kv["sharedaccesssignature"], "?")
	if key == "" && sasToken == "" {
		return nil, &SettingError{SettingStorage, "connection string has neither AccountKey nor SharedAccessSignature (expected e.g. \"DefaultEndpointsProtocol=https;AccountName=…;AccountKey=…\" or \"UseDevelopmentStorage=true\")"}
	}
	queueURL, err := serviceEndpoint(kv, "Queue", kv["queueendpoint"])
	if err != nil {
		return nil, err
	}
	blobURL, err := serviceEndpoint(kv, "Blob", kv["blobendpoint"])
	if err != nil {
		return nil, err
	}
	if account == "" {
		account = accountFromURL(blobURL)
	}
	if key != "" {
		if _, err := base64.StdEncoding.DecodeString(key); err != nil {
			return nil, &SettingError{SettingStorage, "AccountKey is not valid base64: " + err.Error()}
		}
	}
	return open(azure.Account{Name: account, QueueURL: queueURL, BlobURL: blobURL, Key: key, SAS: sasToken, Transport: opts.Transport, Tracing: opts.Tracing})
}

// open builds the Azure driver of the account and the clients over it.
func open(a azure.Account) (*Clients, error) {
	d, err := azure.Open(a)
	if err != nil {
		return nil, err
	}
	return &Clients{AccountName: a.Name, QueueURL: a.QueueURL, BlobURL: a.BlobURL, store: d, token: a.Credential}, nil
}

// serviceEndpoint returns the base URL (ending in "/") of a storage service ("Queue" or
// "Blob"): the connection string's explicit endpoint, else one made of the protocol,
// account name and endpoint suffix.
func serviceEndpoint(kv map[string]string, service, explicit string) (string, error) {
	if explicit != "" {
		u, err := url.Parse(explicit)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return "", &SettingError{SettingStorage, fmt.Sprintf("%sEndpoint %q is not an absolute URL", service, explicit)}
		}
		return strings.TrimSuffix(explicit, "/") + "/", nil
	}
	account := kv["accountname"]
	if account == "" {
		return "", &SettingError{SettingStorage, fmt.Sprintf("connection string needs AccountName or %sEndpoint", service)}
	}
	proto := kv["defaultendpointsprotocol"]
	if proto == "" {
		proto = "https"
	}
	suffix := kv["endpointsuffix"]
	if suffix == "" {
		suffix = "core.windows.net"
	}
	return fmt.Sprintf("%s://%s.%s.%s/", proto, account, strings.ToLower(service), suffix), nil
}

func accountFromURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	// Azurite style: http://127.0.0.1:10000/devstoreaccount1/
	if seg := strings.Trim(p.Path, "/"); seg != "" {
		return strings.Split(seg, "/")[0]
	}
	host, _, _ := strings.Cut(p.Hostname(), ".")
	return host
}

func fromIdentity(getenv func(string) string, opts *Options) (*Clients, error) {
	account := strings.TrimSpace(getenv(SettingAccountName))
	queueURL := strings.TrimSpace(getenv(SettingQueueServiceURI))
	blobURL := strings.TrimSpace(getenv(SettingBlobServiceURI))
	if account == "" && (queueURL == "" || blobURL == "") {
		return nil, &SettingError{SettingStorage, fmt.Sprintf(
			"not set: give a connection string (e.g. UseDevelopmentStorage=true for Azurite), or %s, or both %s and %s for an identity-based connection",
			SettingAccountName, SettingQueueServiceURI, SettingBlobServiceURI)}
	}
	if account != "" {
		if queueURL == "" {
			queueURL = "https://" + account + ".queue.core.windows.net/"
		}
		if blobURL == "" {
			blobURL = "https://" + account + ".blob.core.windows.net/"
		}
	}
	for name, v := range map[string]string{SettingQueueServiceURI: queueURL, SettingBlobServiceURI: blobURL} {
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, &SettingError{name, fmt.Sprintf("%q is not an https URL (identity-based connections need https endpoints)", v)}
		}
	}
	if account == "" {
		account = accountFromURL(blobURL)
	}
	cred := opts.Credential
	if cred == nil {
		var err error
		cred, err = credentialFromEnv(getenv)
		if err != nil {
			return nil, err
		}
	}
	return open(azure.Account{Name: account, QueueURL: queueURL, BlobURL: blobURL, Credential: cred, Transport: opts.Transport, Tracing: opts.Tracing})
}

func credentialFromEnv(getenv func(string) string) (azcore.TokenCredential, error) {
	kind := strings.TrimSpace(getenv(SettingCredential))
	clientID := strings.TrimSpace(getenv(SettingClientID))
	switch {
	case strings.EqualFold(kind, "managedidentity"):
		o := &azidentity.ManagedIdentityCredentialOptions{}
		if clientID != "" {
			o.ID = azidentity.ClientID(clientID)
		}
		cred, err := azidentity.NewManagedIdentityCredential(o)
		if err != nil {
			return nil, fmt.Errorf("setting %s=managedidentity: %w", SettingCredential, err)
		}
		return cred, nil
	case kind == "":
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("default Azure credential (set %s=managedidentity on Azure): %w", SettingCredential, err)
		}
		return cred, nil
	default:
		return nil, &SettingError{SettingCredential, fmt.Sprintf("%q is not supported; expected \"managedidentity\" or empty (default credential chain)", kind)}
	}
}

// IsSettingError reports whether err is a SettingError.
func IsSettingError(err error) bool {
	var se *SettingError
	return errors.As(err, &se)
}
