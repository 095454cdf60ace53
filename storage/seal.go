package storage

import (
	"context"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/nightshift-jobs/nightshift/seal"
)

// ArgsAAD is the additional data that binds a job's sealed args (envelope field
// args_sealed) to the job: sealed args copied into another job's envelope do not open.
func ArgsAAD(jobID string) []byte { return []byte("nightshift/args/" + jobID) }

// blobAAD binds a sealed blob to its container and name.
func blobAAD(container, name string) []byte { return []byte(container + "/" + name) }

// NoKeyError explains a sealed value met without an encryption key configured.
func NoKeyError(what string) error {
	return fmt.Errorf("%s is encrypted, but no encryption key is configured: set %s or %s to the key it was sealed with",
		what, seal.SettingKeyURL, seal.SettingLocalKeys)
}

// sealBlob encrypts a blob's bytes for container/name when a Sealer is configured.
func (c *Clients) sealBlob(ctx context.Context, container, name string, data []byte) ([]byte, error) {
	if c.Sealer == nil {
		return data, nil
	}
	out, err := c.Sealer.Seal(ctx, data, blobAAD(container, name))
	if err != nil {
		return nil, fmt.Errorf("encrypt %s/%s: %w", container, name, err)
	}
	return out, nil
}

// openBlob decrypts a sealed blob read from container/name; a plain blob (written before
// encryption was turned on) is returned as it is.
func (c *Clients) openBlob(ctx context.Context, container, name string, data []byte) ([]byte, error) {
	if !seal.IsSealed(data) {
		return data, nil
	}
	if c.Sealer == nil {
		return nil, NoKeyError(container + "/" + name)
	}
	out, err := c.Sealer.Open(ctx, data, blobAAD(container, name))
	if err != nil {
		return nil, fmt.Errorf("decrypt %s/%s: %w", container, name, err)
	}
	return out, nil
}

// sealerFromEnv builds the Sealer the encryption settings ask for (nil when none is set).
// Key Vault is reached with the storage clients' token credential, or the one the
// identity settings describe when storage uses a connection string.
func sealerFromEnv(getenv func(string) string, c *Clients, opts *Options) (*seal.Sealer, error) {
	return seal.FromEnv(getenv, &seal.EnvOptions{
		Credential: func() (azcore.TokenCredential, error) {
			switch {
			case c.token != nil:
				return c.token, nil
			case opts.Credential != nil:
				return opts.Credential, nil
			}
			return credentialFromEnv(getenv)
		},
		KeyVault: opts.KeyVault,
	})
}
