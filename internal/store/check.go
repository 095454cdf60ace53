package store

import (
	"fmt"
	"strings"
	"time"
)

// ValidQueueName returns nil when name is a valid queue name, else an error wrapping
// ErrInvalid that states the rule: 3–63 lowercase letters, digits and single hyphens,
// starting and ending with a letter or digit.
func ValidQueueName(name string) error { return validName("queue", name) }

// ValidContainerName returns nil when name is a valid container name (the same rule as
// for queues), else an error wrapping ErrInvalid.
func ValidContainerName(name string) error { return validName("container", name) }

func validName(what, name string) error {
	if len(name) < 3 || len(name) > 63 {
		return fmt.Errorf("%s name %q has %d characters, not 3–63: %w", what, name, len(name), ErrInvalid)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(name)-1 && name[i-1] != '-':
		default:
			return fmt.Errorf("%s name %q is not lowercase letters, digits and single hyphens starting and ending with a letter or digit: %w", what, name, ErrInvalid)
		}
	}
	return nil
}

// ValidBlobName returns nil when name is 1–1024 bytes long, else an error wrapping
// ErrInvalid.
func ValidBlobName(name string) error {
	if len(name) == 0 || len(name) > 1024 {
		return fmt.Errorf("blob name %q has %d bytes, not 1–1024: %w", name, len(name), ErrInvalid)
	}
	return nil
}

// ValidMetadata returns nil when every key is an ASCII identifier (a letter or
// underscore, then letters, digits and underscores) and every value printable ASCII
// without leading or trailing spaces, else an error wrapping ErrInvalid.
func ValidMetadata(md map[string]string) error {
	for k, v := range md {
		if !identifier(k) {
			return fmt.Errorf("metadata key %q is not an ASCII identifier: %w", k, ErrInvalid)
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] > 0x7e {
				return fmt.Errorf("metadata value of %q is not printable ASCII: %w", k, ErrInvalid)
			}
		}
		if len(v) > 0 && (v[0] == ' ' || v[len(v)-1] == ' ') {
			return fmt.Errorf("metadata value of %q starts or ends with a space: %w", k, ErrInvalid)
		}
	}
	return nil
}

func identifier(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// Seconds returns d rounded up to whole seconds, the precision the service keeps.
func Seconds(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

// CheckEnqueue validates Enqueue's arguments and returns the time to live to use
// (DefaultTTL for ttl <= 0), rounded up to whole seconds like delay.
func CheckEnqueue(queue, text string, delay, ttl time.Duration) (time.Duration, error) {
	if err := ValidQueueName(queue); err != nil {
		return 0, err
	}
	if len(text) > MaxMessageBytes {
		return 0, fmt.Errorf("message of %d bytes is over the %d-byte limit: %w", len(text), MaxMessageBytes, ErrTooLarge)
	}
	if delay < 0 || delay > MaxVisibility {
		return 0, fmt.Errorf("delay %s is outside 0 … %s: %w", delay, MaxVisibility, ErrInvalid)
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	ttl = time.Duration(Seconds(ttl)) * time.Second
	if Seconds(delay) >= Seconds(ttl) {
		return 0, fmt.Errorf("delay %s is not shorter than the time to live %s: %w", delay, ttl, ErrInvalid)
	}
	return ttl, nil
}

// CheckReceive validates the arguments of Receive (visibility) and Peek (visibility 0)
// and returns the visibility to use (DefaultVisibility for visibility <= 0).
func CheckReceive(queue string, max int, visibility time.Duration) (time.Duration, error) {
	if err := ValidQueueName(queue); err != nil {
		return 0, err
	}
	if max < 1 || max > MaxReceive {
		return 0, fmt.Errorf("max %d is outside 1 … %d: %w", max, MaxReceive, ErrInvalid)
	}
	if visibility <= 0 {
		visibility = DefaultVisibility
	}
	if visibility > MaxVisibility {
		return 0, fmt.Errorf("visibility %s is over %s: %w", visibility, MaxVisibility, ErrInvalid)
	}
	return visibility, nil
}

// CheckUpdate validates the arguments of Update and DeleteMessage (timeout 0).
func CheckUpdate(queue, id, popReceipt string, timeout time.Duration) error {
	if err := ValidQueueName(queue); err != nil {
		return err
	}
	if id == "" || popReceipt == "" {
		return fmt.Errorf("message id and pop receipt are required: %w", ErrInvalid)
	}
	if timeout < 0 || timeout > MaxVisibility {
		return fmt.Errorf("visibility timeout %s is outside 0 … %s: %w", timeout, MaxVisibility, ErrInvalid)
	}
	return nil
}

// CheckBlob validates a container and blob name.
func CheckBlob(container, name string) error {
	if err := ValidContainerName(container); err != nil {
		return err
	}
	return ValidBlobName(name)
}

// CheckPut validates Put's arguments.
func CheckPut(container, name string, opts PutOptions) error {
	if err := CheckBlob(container, name); err != nil {
		return err
	}
	if opts.IfMatch != "" && opts.IfNoneMatchAny {
		return fmt.Errorf("IfMatch and IfNoneMatchAny exclude each other: %w", ErrInvalid)
	}
	if err := ValidMetadata(opts.Metadata); err != nil {
		return err
	}
	return ValidTags(opts.Tags)
}

// ValidTags returns nil when tags fit the service's index-tag rules, else an error
// wrapping ErrInvalid: at most MaxTags tags, keys of 1–MaxTagKey and values of
// 0–MaxTagValue characters, each character a letter, digit, space or one of + - . / : = _
// (TagChar). Keys and values are case-sensitive.
func ValidTags(tags map[string]string) error {
	if len(tags) > MaxTags {
		return fmt.Errorf("%d index tags, over %d: %w", len(tags), MaxTags, ErrInvalid)
	}
	for k, v := range tags {
		if len(k) == 0 || len(k) > MaxTagKey {
			return fmt.Errorf("tag key %q has %d characters, not 1–%d: %w", k, len(k), MaxTagKey, ErrInvalid)
		}
		if len(v) > MaxTagValue {
			return fmt.Errorf("value of tag %q has %d characters, over %d: %w", k, len(v), MaxTagValue, ErrInvalid)
		}
		if !tagString(k) || !tagString(v) {
			return fmt.Errorf("tag %q=%q has a character other than letters, digits, space and + - . / : = _: %w", k, v, ErrInvalid)
		}
	}
	return nil
}

// TagChar reports whether c may appear in an index tag's key or value.
func TagChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte(" +-./:=_", c) >= 0
}

func tagString(s string) bool {
	for i := 0; i < len(s); i++ {
		if !TagChar(s[i]) {
			return false
		}
	}
	return true
}

// CheckFind validates FindByTags' container and returns the page size to use: max, or
// MaxFindResults when max is <= 0 or larger (as the service does).
func CheckFind(container string, max int) (int, error) {
	if err := ValidContainerName(container); err != nil {
		return 0, err
	}
	if max <= 0 || max > MaxFindResults {
		return MaxFindResults, nil
	}
	return max, nil
}

// CheckLease validates a lease duration.
func CheckLease(d time.Duration) error {
	if d >= 0 && (d < MinLease || d > MaxLease) {
		return fmt.Errorf("lease duration %s is outside %s … %s (or negative for no expiry): %w", d, MinLease, MaxLease, ErrInvalid)
	}
	return nil
}
