package seal

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
)

// LocalKeys is a KEK ring of 256-bit keys held in a setting: the first key wraps new data
// keys, every key unwraps. Data keys are wrapped with AES-256-GCM (a random nonce, the key
// id as additional data).
type LocalKeys struct {
	setting string
	first   string
	keys    map[string]cipher.AEAD
}

var localKIDRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ParseLocalKeys parses "kid:base64(32 bytes),kid2:…" (standard or URL base64, padded or
// not). Ids are 1–64 letters, digits, '_', '.' or '-'. Errors name setting and the entry,
// never the key material.
func ParseLocalKeys(setting, value string) (*LocalKeys, error) {
	lk := &LocalKeys{setting: setting, keys: map[string]cipher.AEAD{}}
	for i, entry := range strings.Split(value, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		kid, b64, ok := strings.Cut(entry, ":")
		kid = strings.TrimSpace(kid)
		if !ok || !localKIDRE.MatchString(kid) {
			return nil, fmt.Errorf("setting %s: entry %d is not \"id:base64-key\" with an id of 1–64 letters, digits, '_', '.' or '-'", setting, i+1)
		}
		key, err := decodeKey(strings.TrimSpace(b64))
		if err != nil || len(key) != dekSize {
			return nil, fmt.Errorf("setting %s: key %q is not base64 of exactly 32 bytes (make one with: openssl rand -base64 32)", setting, kid)
		}
		if _, dup := lk.keys[kid]; dup {
			return nil, fmt.Errorf("setting %s: key id %q appears twice", setting, kid)
		}
		aead, err := newAEAD(key)
		if err != nil {
			return nil, fmt.Errorf("setting %s: key %q: %w", setting, kid, err)
		}
		lk.keys[kid] = aead
		if lk.first == "" {
			lk.first = kid
		}
	}
	if lk.first == "" {
		return nil, fmt.Errorf("setting %s: no key; expected \"id:base64-of-32-bytes[,older-id:…]\"", setting)
	}
	return lk, nil
}

func decodeKey(s string) ([]byte, error) {
	var last error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err == nil {
			return b, nil
		}
		last = err
	}
	return nil, last
}

// Wrap wraps dek with the first key.
func (lk *LocalKeys) Wrap(_ context.Context, dek []byte) ([]byte, string, error) {
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, "", err
	}
	return lk.keys[lk.first].Seal(nonce, nonce, dek, []byte(lk.first)), lk.first, nil
}

// Unwrap unwraps a data key that the key kid wrapped.
func (lk *LocalKeys) Unwrap(_ context.Context, kid string, wrapped []byte) ([]byte, error) {
	aead, ok := lk.keys[kid]
	if !ok {
		return nil, fmt.Errorf("key %q is not among the keys of setting %s (keep a key there until every value it sealed is rewritten or gone): %w", truncate(kid, 64), lk.setting, ErrUnknownKey)
	}
	if len(wrapped) < nonceSize+tagSize {
		return nil, fmt.Errorf("wrapped key is truncated: %w", ErrCorrupt)
	}
	dek, err := aead.Open(nil, wrapped[:nonceSize], wrapped[nonceSize:], []byte(kid))
	if err != nil {
		return nil, fmt.Errorf("local key %q does not unwrap this data key: %w", kid, ErrCorrupt)
	}
	return dek, nil
}
