package seal

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"testing"
)

// FuzzOpen: whatever bytes arrive as a sealed value (args_sealed comes from anyone who
// can send to the queue), Open and KeyID return a value or an error, never panic; a value
// opens only when Seal produced it for that place.
func FuzzOpen(f *testing.F) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	lk, err := ParseLocalKeys(SettingLocalKeys, "k1:"+key)
	if err != nil {
		f.Fatal(err)
	}
	s := New(lk)
	ctx := context.Background()
	good, err := s.Seal(ctx, []byte(`{"a":1}`), []byte("place"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, []byte("place"))
	f.Add(good[:len(good)-1], []byte("place"))
	f.Add(append([]byte(nil), Magic...), []byte(""))
	f.Add([]byte("not sealed"), []byte("place"))
	f.Fuzz(func(t *testing.T, data, aad []byte) {
		_, _ = KeyID(data)
		plain, err := s.Open(ctx, data, aad)
		if err != nil {
			if !IsPermanent(err) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("Open: a local key gave a retryable error: %v", err)
			}
			return
		}
		// The only value ever sealed with this key is {"a":1} for "place" (by this process
		// or the fuzzing coordinator, each with its own data key): anything else that opens
		// is a forgery.
		if !bytes.Equal(aad, []byte("place")) || string(plain) != `{"a":1}` {
			t.Fatalf("Open accepted bytes Seal did not make: %q (aad %q) → %q", data, aad, plain)
		}
	})
}
