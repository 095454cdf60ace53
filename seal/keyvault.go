package seal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// KeyVault is a KEK held in Azure Key Vault: an RSA key that wraps and unwraps data keys
// with RSA-OAEP-256 (the identity needs the Key Vault Crypto User role, or the wrapKey and
// unwrapKey permissions). Wrapping uses the configured version, or the key's current one;
// the header records the full versioned key id, so values wrapped before a rotation still
// unwrap with their version.
type KeyVault struct {
	client  *azkeys.Client
	vault   string // scheme://host
	name    string
	version string
}

// KeyVaultOptions tune the Key Vault client; the zero value is fine.
type KeyVaultOptions struct {
	// ClientOptions are passed to azkeys.NewClient (transport, retries).
	azkeys.ClientOptions
}

// NewKeyVault returns the KEK for the key keyURL,
// "https://<vault>.vault.azure.net/keys/<name>[/<version>]", reached with cred. setting
// names where keyURL came from, for errors.
func NewKeyVault(setting, keyURL string, cred azcore.TokenCredential, opts *KeyVaultOptions) (*KeyVault, error) {
	vault, name, version, err := parseKeyURL(keyURL)
	if err != nil {
		return nil, fmt.Errorf("setting %s: %s", setting, err)
	}
	if opts == nil {
		opts = &KeyVaultOptions{}
	}
	c, err := azkeys.NewClient(vault, cred, &opts.ClientOptions)
	if err != nil {
		return nil, fmt.Errorf("setting %s: key vault client: %w", setting, err)
	}
	return &KeyVault{client: c, vault: vault, name: name, version: version}, nil
}

// parseKeyURL splits a Key Vault key id into the vault URL, the key name and the version
// ("" when absent).
func parseKeyURL(s string) (vault, name, version string, err error) {
	u, perr := url.Parse(strings.TrimSpace(s))
	if perr != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return "", "", "", errors.New("expected a Key Vault key URL, https://<vault>.vault.azure.net/keys/<name>[/<version>]")
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "keys" || parts[1] == "" {
		return "", "", "", fmt.Errorf("path %q is not /keys/<name>[/<version>]", truncate(u.Path, 100))
	}
	if len(parts) == 3 {
		version = parts[2]
	}
	return u.Scheme + "://" + u.Host, parts[1], version, nil
}

// Wrap wraps dek with the key (its configured version, else its current one) and returns
// the versioned key id Key Vault reports.
func (kv *KeyVault) Wrap(ctx context.Context, dek []byte) ([]byte, string, error) {
	resp, err := kv.client.WrapKey(ctx, kv.name, kv.version, azkeys.KeyOperationParameters{
		Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: dek,
	}, nil)
	if err != nil {
		return nil, "", fmt.Errorf("key vault wrapkey %s/keys/%s: %w", kv.vault, kv.name, err)
	}
	kid := kv.vault + "/keys/" + kv.name + "/" + kv.version
	if resp.KID != nil && *resp.KID != "" {
		kid = string(*resp.KID)
	}
	return resp.Result, kid, nil
}

// Unwrap unwraps a data key with the key version kid names. kid must name this key in this
// vault: a header cannot send nightshift to another vault or key.
func (kv *KeyVault) Unwrap(ctx context.Context, kid string, wrapped []byte) ([]byte, error) {
	vault, name, version, err := parseKeyURL(kid)
	if err != nil || !strings.EqualFold(vault, kv.vault) || name != kv.name {
		return nil, fmt.Errorf("key %q is not the configured Key Vault key %s/keys/%s: %w", truncate(kid, 200), kv.vault, kv.name, ErrUnknownKey)
	}
	resp, err := kv.client.UnwrapKey(ctx, name, version, azkeys.KeyOperationParameters{
		Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: wrapped,
	}, nil)
	if err != nil {
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("key vault unwrapkey %s (%d %s): %w", truncate(kid, 200), re.StatusCode, re.ErrorCode, ErrUnknownKey)
		}
		if errors.As(err, &re) && re.StatusCode == http.StatusBadRequest {
			return nil, fmt.Errorf("key vault unwrapkey %s (%d %s): %w", truncate(kid, 200), re.StatusCode, re.ErrorCode, ErrCorrupt)
		}
		return nil, fmt.Errorf("key vault unwrapkey %s: %w", truncate(kid, 200), err)
	}
	return resp.Result, nil
}
