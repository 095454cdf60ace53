// Package seal is nightshift's envelope encryption for data at rest: job args, results,
// status records (which hold captured logs and inline results), dead-letter records and
// claim-checked payloads.
//
// Each sealed value is encrypted with AES-256-GCM under a random 256-bit data key (DEK)
// and a random 96-bit nonce. The DEK is wrapped by a key-encryption key (KEK): an RSA key
// in Azure Key Vault (RSA-OAEP-256, see NewKeyVault) or a local 256-bit key from a setting
// (see ParseLocalKeys). The wrapped DEK and the id of the KEK that wrapped it travel in a
// small header in front of the ciphertext, so a value stays readable after the KEK is
// rotated, as long as the old KEK can still unwrap.
//
// Sealed bytes have this layout (integers big-endian):
//
//	magic   8 bytes  0x89 "NSSEAL1" (never the start of UTF-8 text, so never of JSON)
//	kidLen  2 bytes, kid (the KEK id: a local key name or a versioned Key Vault key URL)
//	wrapLen 2 bytes, wrapped DEK
//	nonce   12 bytes
//	ciphertext and 16-byte GCM tag
//
// The GCM additional data is the header (magic through wrapped DEK) followed by the
// caller's aad, which names where the value lives (for nightshift: container/blob, or the
// job id for args in a queue message). A sealed value moved to another place, or with an
// altered header, does not open.
//
// A Sealer keeps one DEK per process and replaces it every RotateAfter (one hour) or
// MaxSealsPerDEK seals, so Key Vault is called about once an hour to wrap; unwrapped DEKs
// are cached (bounded) by their wrapped bytes, so reads call it once per DEK.
package seal

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Magic starts every sealed value.
var Magic = []byte("\x89NSSEAL1")

// Overhead bounds the bytes a sealed value has beyond its plaintext: the header with a
// kid of at most MaxKIDBytes and a wrapped DEK of at most MaxWrappedBytes, the nonce and
// the GCM tag.
const Overhead = 8 + 2 + MaxKIDBytes + 2 + MaxWrappedBytes + nonceSize + tagSize

// MaxKIDBytes bounds a KEK id in a header.
const MaxKIDBytes = 1024

// MaxWrappedBytes bounds a wrapped DEK in a header (an RSA-4096 wrap is 512 bytes).
const MaxWrappedBytes = 1024

// RotateAfter is how long a Sealer uses one DEK before it makes a new one.
const RotateAfter = time.Hour

// MaxSealsPerDEK is how many values a Sealer seals with one DEK before it makes a new one
// (far below the 2^32 random-nonce bound of AES-GCM).
const MaxSealsPerDEK = 1 << 24

// maxCachedDEKs bounds the cache of unwrapped DEKs.
const maxCachedDEKs = 1024

const (
	dekSize   = 32
	nonceSize = 12
	tagSize   = 16
)

// ErrNotSealed is returned (wrapped) when Open is given bytes that are not a sealed value.
var ErrNotSealed = errors.New("not a sealed value")

// ErrCorrupt is returned (wrapped) when a sealed value's header is malformed or its
// ciphertext does not authenticate: it was altered, belongs to another place (aad), or
// its DEK was unwrapped with the wrong key. Retrying does not help.
var ErrCorrupt = errors.New("sealed value does not open")

// ErrUnknownKey is returned (wrapped) when a sealed value names a KEK the keyring does not
// hold (a local key removed too early, or a value sealed by another keyring). Retrying does
// not help until the key is configured again.
var ErrUnknownKey = errors.New("sealed with a key that is not configured")

// KEK wraps and unwraps data keys. Implementations: the local keys of ParseLocalKeys and
// the Key Vault key of NewKeyVault.
type KEK interface {
	// Wrap encrypts dek and returns the wrapped bytes and the id of the key that wrapped
	// them (which Unwrap is later given).
	Wrap(ctx context.Context, dek []byte) (wrapped []byte, kid string, err error)
	// Unwrap returns the DEK that the key kid wrapped. A kid the KEK cannot use gives an
	// error wrapping ErrUnknownKey.
	Unwrap(ctx context.Context, kid string, wrapped []byte) ([]byte, error)
}

// IsSealed reports whether b starts like a sealed value.
func IsSealed(b []byte) bool { return bytes.HasPrefix(b, Magic) }

// IsPermanent reports whether err from Open cannot be cured by retrying: the value is not
// sealed, is corrupt, belongs elsewhere, or names a key that is not configured. Other
// errors (Key Vault unreachable, throttled) may pass.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrNotSealed) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnknownKey)
}

// Sealer seals and opens values with data keys wrapped by a KEK. It is safe for concurrent
// use. The zero value is not usable: use New.
type Sealer struct {
	kek KEK
	now func() time.Time

	mu      sync.Mutex
	cur     *dataKey
	opened  map[string]cipher.AEAD // by wrapped DEK
	sealing sync.Mutex             // one wrap at a time when the DEK is replaced
}

type dataKey struct {
	aead   cipher.AEAD
	header []byte // magic, kid, wrapped DEK
	kid    string
	made   time.Time
	seals  int
}

// New returns a Sealer whose data keys kek wraps.
func New(kek KEK) *Sealer {
	return &Sealer{kek: kek, now: time.Now, opened: map[string]cipher.AEAD{}}
}

// Seal encrypts plaintext for the place aad names and returns the sealed value.
func (s *Sealer) Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	dk, err := s.dataKey(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(dk.header)+nonceSize+len(plaintext)+tagSize)
	out = append(out, dk.header...)
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	out = append(out, nonce...)
	return dk.aead.Seal(out, nonce, plaintext, additional(dk.header, aad)), nil
}

// Open decrypts a value that Seal sealed for the same aad.
func (s *Sealer) Open(ctx context.Context, sealed, aad []byte) ([]byte, error) {
	kid, wrapped, rest, err := parse(sealed)
	if err != nil {
		return nil, err
	}
	header := sealed[:len(sealed)-len(rest)]
	aead, err := s.unwrapped(ctx, kid, wrapped)
	if err != nil {
		return nil, err
	}
	if len(rest) < nonceSize+tagSize {
		return nil, fmt.Errorf("seal: value is truncated: %w", ErrCorrupt)
	}
	plain, err := aead.Open(nil, rest[:nonceSize], rest[nonceSize:], additional(header, aad))
	if err != nil {
		return nil, fmt.Errorf("seal: value sealed with key %q does not authenticate for %q (altered, or moved from another place): %w", kid, truncate(string(aad), 200), ErrCorrupt)
	}
	return plain, nil
}

// KeyID returns the id of the KEK that sealed value (its header's kid).
func KeyID(sealed []byte) (string, error) {
	kid, _, _, err := parse(sealed)
	return kid, err
}

func additional(header, aad []byte) []byte {
	a := make([]byte, 0, len(header)+len(aad))
	return append(append(a, header...), aad...)
}

func parse(b []byte) (kid string, wrapped, rest []byte, err error) {
	if !IsSealed(b) {
		return "", nil, nil, ErrNotSealed
	}
	p := b[len(Magic):]
	field := func(max int) ([]byte, bool) {
		if len(p) < 2 {
			return nil, false
		}
		n := int(binary.BigEndian.Uint16(p))
		if n == 0 || n > max || len(p) < 2+n {
			return nil, false
		}
		v := p[2 : 2+n]
		p = p[2+n:]
		return v, true
	}
	k, ok := field(MaxKIDBytes)
	if !ok {
		return "", nil, nil, fmt.Errorf("seal: malformed key id in header: %w", ErrCorrupt)
	}
	w, ok := field(MaxWrappedBytes)
	if !ok {
		return "", nil, nil, fmt.Errorf("seal: malformed wrapped key in header: %w", ErrCorrupt)
	}
	return string(k), w, p, nil
}

// dataKey returns the current DEK, making and wrapping a new one when there is none yet or
// the current one is older than RotateAfter or has sealed MaxSealsPerDEK values.
func (s *Sealer) dataKey(ctx context.Context) (*dataKey, error) {
	if dk := s.current(); dk != nil {
		return dk, nil
	}
	s.sealing.Lock()
	defer s.sealing.Unlock()
	if dk := s.current(); dk != nil {
		return dk, nil
	}
	dek := make([]byte, dekSize)
	if _, err := rand.Read(dek); err != nil {
		return nil, fmt.Errorf("seal: data key: %w", err)
	}
	wrapped, kid, err := s.kek.Wrap(ctx, dek)
	if err != nil {
		return nil, fmt.Errorf("seal: wrap data key: %w", err)
	}
	if len(kid) == 0 || len(kid) > MaxKIDBytes || len(wrapped) == 0 || len(wrapped) > MaxWrappedBytes {
		return nil, fmt.Errorf("seal: wrap gave a key id of %d bytes and a wrapped key of %d bytes (bounds %d, %d)", len(kid), len(wrapped), MaxKIDBytes, MaxWrappedBytes)
	}
	aead, err := newAEAD(dek)
	if err != nil {
		return nil, err
	}
	header := make([]byte, 0, len(Magic)+4+len(kid)+len(wrapped))
	header = append(header, Magic...)
	header = binary.BigEndian.AppendUint16(header, uint16(len(kid)))
	header = append(header, kid...)
	header = binary.BigEndian.AppendUint16(header, uint16(len(wrapped)))
	header = append(header, wrapped...)
	dk := &dataKey{aead: aead, header: header, kid: kid, made: s.now(), seals: 1}
	s.mu.Lock()
	s.cur = dk
	s.remember(string(wrapped), aead)
	s.mu.Unlock()
	return dk, nil
}

func (s *Sealer) current() *dataKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	dk := s.cur
	if dk == nil || s.now().Sub(dk.made) >= RotateAfter || dk.seals >= MaxSealsPerDEK {
		return nil
	}
	dk.seals++
	return dk
}

// unwrapped returns the AEAD of a wrapped DEK, from the cache or by unwrapping it.
func (s *Sealer) unwrapped(ctx context.Context, kid string, wrapped []byte) (cipher.AEAD, error) {
	s.mu.Lock()
	aead, ok := s.opened[string(wrapped)]
	s.mu.Unlock()
	if ok {
		return aead, nil
	}
	dek, err := s.kek.Unwrap(ctx, kid, wrapped)
	if err != nil {
		return nil, fmt.Errorf("seal: unwrap data key of key %q: %w", kid, err)
	}
	if len(dek) != dekSize {
		return nil, fmt.Errorf("seal: key %q unwrapped a data key of %d bytes, not %d: %w", kid, len(dek), dekSize, ErrCorrupt)
	}
	if aead, err = newAEAD(dek); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.remember(string(wrapped), aead)
	s.mu.Unlock()
	return aead, nil
}

// remember caches an unwrapped DEK; when the cache is full an arbitrary entry goes.
// s.mu must be held.
func (s *Sealer) remember(wrapped string, aead cipher.AEAD) {
	if _, ok := s.opened[wrapped]; !ok && len(s.opened) >= maxCachedDEKs {
		for k := range s.opened {
			delete(s.opened, k)
			break
		}
	}
	s.opened[wrapped] = aead
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return cipher.NewGCM(block)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
