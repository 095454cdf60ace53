package seal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func key(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func localSealer(t testing.TB, value string) *Sealer {
	t.Helper()
	lk, err := ParseLocalKeys(SettingLocalKeys, value)
	if err != nil {
		t.Fatal(err)
	}
	return New(lk)
}

func TestSealOpenRoundTripAndPlaintextAbsent(t *testing.T) {
	ctx := context.Background()
	s := localSealer(t, "k1:"+key(t))
	plain := []byte(`{"card":"MARKER-4111111111111111"}`)
	sealed, err := s.Seal(ctx, plain, []byte("status/job-1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !IsSealed(sealed) || bytes.Contains(sealed, []byte("MARKER")) {
		t.Fatalf("sealed value is not sealed or shows the plaintext: %q", sealed)
	}
	if len(sealed)-len(plain) > Overhead {
		t.Fatalf("overhead %d over the documented bound %d", len(sealed)-len(plain), Overhead)
	}
	got, err := s.Open(ctx, sealed, []byte("status/job-1.json"))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if kid, err := KeyID(sealed); err != nil || kid != "k1" {
		t.Fatalf("KeyID = %q, %v", kid, err)
	}
}

// A sealed value moved to another place (another job's record) does not open.
func TestSealedValueBoundToItsPlace(t *testing.T) {
	ctx := context.Background()
	s := localSealer(t, "k1:"+key(t))
	sealed, err := s.Seal(ctx, []byte("secret"), []byte("status/job-1.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Open(ctx, sealed, []byte("status/job-2.json"))
	if !errors.Is(err, ErrCorrupt) || !IsPermanent(err) {
		t.Fatalf("Open at another place = %v, want ErrCorrupt", err)
	}
	for i := len(Magic); i < len(sealed); i += 7 {
		bad := append([]byte(nil), sealed...)
		bad[i] ^= 1
		if _, err := s.Open(ctx, bad, []byte("status/job-1.json")); err == nil {
			t.Fatalf("a value with byte %d flipped opened", i)
		}
	}
	if _, err := s.Open(ctx, []byte(`{"plain":1}`), nil); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("Open of plain bytes = %v, want ErrNotSealed", err)
	}
	if _, err := s.Open(ctx, sealed[:20], []byte("status/job-1.json")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a truncated value = %v, want ErrCorrupt", err)
	}
}

// Rotation of local keys: a new first key wraps, the old one still unwraps; with the old
// key removed, its values fail with an error that names the key.
func TestLocalKeyRotation(t *testing.T) {
	ctx := context.Background()
	k1, k2 := "k1:"+key(t), "k2:"+key(t)
	old, err := localSealer(t, k1).Seal(ctx, []byte("v1"), []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	rotated := localSealer(t, k2+","+k1)
	if got, err := rotated.Open(ctx, old, []byte("a")); err != nil || string(got) != "v1" {
		t.Fatalf("rotated keyring Open(old) = %q, %v", got, err)
	}
	fresh, err := rotated.Seal(ctx, []byte("v2"), []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if kid, _ := KeyID(fresh); kid != "k2" {
		t.Fatalf("new value sealed with %q, want k2", kid)
	}
	_, err = localSealer(t, k2).Open(ctx, old, []byte("a"))
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), `"k1"`) {
		t.Fatalf("Open without k1 = %v, want ErrUnknownKey naming k1", err)
	}
}

type countingKEK struct {
	KEK
	wraps, unwraps atomic.Int64
}

func (c *countingKEK) Wrap(ctx context.Context, dek []byte) ([]byte, string, error) {
	c.wraps.Add(1)
	return c.KEK.Wrap(ctx, dek)
}

func (c *countingKEK) Unwrap(ctx context.Context, kid string, w []byte) ([]byte, error) {
	c.unwraps.Add(1)
	return c.KEK.Unwrap(ctx, kid, w)
}

// One DEK per process until RotateAfter; reads of values another process sealed unwrap
// their DEK once.
func TestDataKeyCacheAndRotation(t *testing.T) {
	ctx := context.Background()
	lk, err := ParseLocalKeys(SettingLocalKeys, "k1:"+key(t))
	if err != nil {
		t.Fatal(err)
	}
	kek := &countingKEK{KEK: lk}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(kek)
	s.now = func() time.Time { return now }
	var sealed [][]byte
	for range 10 {
		b, err := s.Seal(ctx, []byte("x"), nil)
		if err != nil {
			t.Fatal(err)
		}
		sealed = append(sealed, b)
	}
	if n := kek.wraps.Load(); n != 1 {
		t.Fatalf("10 seals wrapped %d data keys, want 1", n)
	}
	now = now.Add(RotateAfter)
	if _, err := s.Seal(ctx, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	if n := kek.wraps.Load(); n != 2 {
		t.Fatalf("after RotateAfter: %d wraps, want 2", n)
	}
	reader := New(kek)
	for _, b := range sealed {
		if _, err := reader.Open(ctx, b, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := kek.unwraps.Load(); n != 1 {
		t.Fatalf("10 opens of one DEK unwrapped %d times, want 1", n)
	}
}

func TestFromEnv(t *testing.T) {
	secret := key(t)
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	if s, err := FromEnv(env(nil), nil); s != nil || err != nil {
		t.Fatalf("no settings: %v, %v; want nil, nil", s, err)
	}
	if s, err := FromEnv(env(map[string]string{SettingLocalKeys: "k1:" + secret}), nil); s == nil || err != nil {
		t.Fatalf("local keys: %v, %v", s, err)
	}
	cases := map[string]map[string]string{
		"both":        {SettingLocalKeys: "k1:" + secret, SettingKeyURL: "https://v.vault.azure.net/keys/k"},
		"short key":   {SettingLocalKeys: "k1:" + secret[:20]},
		"no id":       {SettingLocalKeys: secret},
		"duplicate":   {SettingLocalKeys: "k1:" + secret + ",k1:" + secret},
		"http url":    {SettingKeyURL: "http://v.vault.azure.net/keys/k"},
		"secrets url": {SettingKeyURL: "https://v.vault.azure.net/secrets/k"},
		"no cred":     {SettingKeyURL: "https://v.vault.azure.net/keys/k"},
	}
	for name, kv := range cases {
		_, err := FromEnv(env(kv), nil)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		setting := SettingLocalKeys
		if _, ok := kv[SettingLocalKeys]; !ok {
			setting = SettingKeyURL
		}
		if !strings.Contains(err.Error(), setting) {
			t.Errorf("%s: error %q does not name %s", name, err, setting)
		}
		if strings.Contains(err.Error(), secret[:16]) {
			t.Errorf("%s: error %q echoes key material", name, err)
		}
	}
}

func BenchmarkSeal4KiB(b *testing.B) {
	ctx := context.Background()
	s := localSealer(b, "k1:"+key(b))
	plain := bytes.Repeat([]byte("a"), 4096)
	b.SetBytes(int64(len(plain)))
	for b.Loop() {
		if _, err := s.Seal(ctx, plain, []byte("status/x.json")); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen4KiB(b *testing.B) {
	ctx := context.Background()
	s := localSealer(b, "k1:"+key(b))
	sealed, err := s.Seal(ctx, bytes.Repeat([]byte("a"), 4096), []byte("status/x.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(4096)
	for b.Loop() {
		if _, err := s.Open(ctx, sealed, []byte("status/x.json")); err != nil {
			b.Fatal(err)
		}
	}
}
