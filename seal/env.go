package seal

import (
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

// Setting names read by FromEnv.
const (
	// SettingKeyURL is the Key Vault key that wraps data keys:
	// https://<vault>.vault.azure.net/keys/<name>[/<version>].
	SettingKeyURL = "NIGHTSHIFT_ENCRYPTION_KEY_URL"
	// SettingLocalKeys holds local key-encryption keys, "kid:base64-32-bytes[,kid2:…]": the
	// first wraps new data keys, all unwrap.
	SettingLocalKeys = "NIGHTSHIFT_ENCRYPTION_LOCAL_KEYS"
)

// EnvOptions tune FromEnv; the zero value is fine.
type EnvOptions struct {
	// Credential returns the token credential for Key Vault; it is called only when
	// SettingKeyURL is set. nightshift passes the credential its storage clients use.
	Credential func() (azcore.TokenCredential, error)
	// KeyVault tunes the Key Vault client.
	KeyVault *KeyVaultOptions
}

// FromEnv returns the Sealer the settings ask for, or nil (no error) when neither
// SettingKeyURL nor SettingLocalKeys is set. Both set, or a malformed value, is an error
// naming the setting (never echoing key material).
func FromEnv(getenv func(string) string, opts *EnvOptions) (*Sealer, error) {
	if opts == nil {
		opts = &EnvOptions{}
	}
	keyURL := strings.TrimSpace(getenv(SettingKeyURL))
	local := strings.TrimSpace(getenv(SettingLocalKeys))
	switch {
	case keyURL != "" && local != "":
		return nil, fmt.Errorf("settings %s and %s are both set; set one (Key Vault on Azure, local keys for development)", SettingKeyURL, SettingLocalKeys)
	case local != "":
		lk, err := ParseLocalKeys(SettingLocalKeys, local)
		if err != nil {
			return nil, err
		}
		return New(lk), nil
	case keyURL != "":
		if _, _, _, err := parseKeyURL(keyURL); err != nil {
			return nil, fmt.Errorf("setting %s: %s", SettingKeyURL, err)
		}
		if opts.Credential == nil {
			return nil, fmt.Errorf("setting %s: no credential to reach Key Vault with", SettingKeyURL)
		}
		cred, err := opts.Credential()
		if err != nil {
			return nil, fmt.Errorf("setting %s: credential for Key Vault: %w", SettingKeyURL, err)
		}
		kv, err := NewKeyVault(SettingKeyURL, keyURL, cred, opts.KeyVault)
		if err != nil {
			return nil, err
		}
		return New(kv), nil
	}
	return nil, nil
}
