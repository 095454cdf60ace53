package store

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidQueueName(t *testing.T) {
	for name, ok := range map[string]bool{
		"abc": true, "jobs-poison": true, "a1-b2-c3": true, strings.Repeat("a", 63): true, "azure-webjobs-hosts": true,
		"ab": false, strings.Repeat("a", 64): false, "Abc": false, "a--b": false, "-ab": false, "ab-": false, "a_b": false, "a.b": false,
	} {
		err := ValidQueueName(name)
		if (err == nil) != ok || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("ValidQueueName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestCheckEnqueue(t *testing.T) {
	ttl, err := CheckEnqueue("abc", "x", 0, 0)
	if err != nil || ttl != DefaultTTL {
		t.Fatalf("default ttl = %v, %v", ttl, err)
	}
	if ttl, _ := CheckEnqueue("abc", "x", 0, 1500*time.Millisecond); ttl != 2*time.Second {
		t.Fatalf("ttl 1.5 s rounds to %v, want 2 s", ttl)
	}
	for _, c := range []struct {
		delay, ttl time.Duration
		text       string
		want       error
	}{
		{-time.Second, 0, "x", ErrInvalid},
		{MaxVisibility + time.Second, 30 * 24 * time.Hour, "x", ErrInvalid},
		{2 * time.Second, 1500 * time.Millisecond, "x", ErrInvalid},
		{0, 0, strings.Repeat("é", MaxMessageBytes/2+1), ErrTooLarge},
	} {
		if _, err := CheckEnqueue("abc", c.text, c.delay, c.ttl); !errors.Is(err, c.want) {
			t.Errorf("CheckEnqueue(delay %v, ttl %v, %d bytes) = %v, want %v", c.delay, c.ttl, len(c.text), err, c.want)
		}
	}
}

func TestValidMetadata(t *testing.T) {
	for md, ok := range map[string]bool{"a": true, "_x1": true, "A_b": true, "1a": false, "a-b": false, "": false} {
		err := ValidMetadata(map[string]string{md: "v"})
		if (err == nil) != ok {
			t.Errorf("key %q: %v, want ok=%v", md, err, ok)
		}
	}
	if err := ValidMetadata(map[string]string{"k": "ü"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("non-ASCII value: %v", err)
	}
}

func TestCheckLease(t *testing.T) {
	for d, ok := range map[time.Duration]bool{-1: true, MinLease: true, MaxLease: true, 0: false, MinLease - time.Second: false, MaxLease + time.Second: false} {
		if err := CheckLease(d); (err == nil) != ok {
			t.Errorf("CheckLease(%v) = %v, want ok=%v", d, err, ok)
		}
	}
}
