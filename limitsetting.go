package nightshift

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/storage"
)

// SettingLimits holds flow-control limits by kind as JSON, overriding the kinds'
// WorkerOptions.Limits: {"import": {"concurrency": 5, "key_arg": "customer_id", "rate":
// 10, "per": "1s"}}. Durations (slot_lease, wait, per) are Go duration strings or
// seconds. NewApp reads it once; a kind it names that the app does not register is an
// error.
const SettingLimits = "NIGHTSHIFT_LIMITS"

// limitsJSON is Limits as the setting spells it.
type limitsJSON struct {
	Concurrency int          `json:"concurrency,omitempty"`
	KeyArg      string       `json:"key_arg,omitempty"`
	SlotLease   jsonDuration `json:"slot_lease,omitzero"`
	Wait        jsonDuration `json:"wait,omitzero"`
	Rate        int          `json:"rate,omitempty"`
	Per         jsonDuration `json:"per,omitzero"`
	Burst       int          `json:"burst,omitempty"`
}

// jsonDuration is a duration as a Go duration string ("1.5s") or a number of seconds.
type jsonDuration time.Duration

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = jsonDuration(v)
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("duration %s is neither a string like \"30s\" nor seconds", b)
	}
	*d = jsonDuration(f * float64(time.Second))
	return nil
}

func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// IsZero leaves unset durations out of the JSON (omitzero).
func (d jsonDuration) IsZero() bool { return d == 0 }

// ParseLimits parses the value of SettingLimits ("" is no limits).
func ParseLimits(s string) (map[string]Limits, error) {
	m, err := parseLimits(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SettingLimits, err)
	}
	return m, nil
}

func parseLimits(s string) (map[string]Limits, error) {
	out := map[string]Limits{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	var raw map[string]limitsJSON
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	for kind, j := range raw {
		l := j.limits()
		if err := l.check(); err != nil {
			return nil, fmt.Errorf("kind %q: %w", kind, err)
		}
		out[kind] = l
	}
	return out, nil
}

// MarshalJSON spells l as SettingLimits does.
func (l Limits) MarshalJSON() ([]byte, error) {
	return json.Marshal(limitsJSON{Concurrency: l.Concurrency, KeyArg: l.KeyArg, SlotLease: jsonDuration(l.SlotLease), Wait: jsonDuration(l.Wait),
		Rate: l.Rate, Per: jsonDuration(l.Per), Burst: l.Burst})
}

// UnmarshalJSON reads l as SettingLimits spells it.
func (l *Limits) UnmarshalJSON(b []byte) error {
	var j limitsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*l = j.limits()
	return nil
}

func (j limitsJSON) limits() Limits {
	return Limits{Concurrency: j.Concurrency, KeyArg: j.KeyArg, SlotLease: time.Duration(j.SlotLease), Wait: time.Duration(j.Wait),
		Rate: j.Rate, Per: time.Duration(j.Per), Burst: j.Burst}
}

// SetLimits replaces the flow-control limits of a registered kind (before the handler
// serves it).
func (r *Registry) SetLimits(kind string, l Limits) error {
	if err := l.check(); err != nil {
		return fmt.Errorf("nightshift: kind %q: Limits: %w", kind, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.kinds[kind]
	if !ok {
		return fmt.Errorf("nightshift: kind %q is not registered", kind)
	}
	next := *e
	next.opts.Limits = l
	r.kinds[kind] = &next
	return nil
}

// Limits returns the flow-control limits of every registered kind that has any.
func (r *Registry) Limits() map[string]Limits {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := map[string]Limits{}
	for k, e := range r.kinds {
		if e.opts.Limits != (Limits{}) {
			out[k] = e.opts.Limits
		}
	}
	return out
}

// applyLimitsSetting applies SettingLimits to the registry.
func (r *Registry) applyLimitsSetting(getenv func(string) string) error {
	m, err := parseLimits(getenv(SettingLimits))
	if err != nil {
		return &storage.SettingError{Setting: SettingLimits, Problem: err.Error()}
	}
	for kind, l := range m {
		if err := r.SetLimits(kind, l); err != nil {
			return &storage.SettingError{Setting: SettingLimits, Problem: err.Error()}
		}
	}
	return nil
}

// LimitState is what storage holds for one limit key of a kind.
type LimitState struct {
	Kind string `json:"kind"`
	// KeyHash names the key (the blob names hold a hash of it, not the key).
	KeyHash string `json:"key_hash"`
	// Slots is how many slot blobs exist (Concurrency limits; a slot blob is made the
	// first time it is needed).
	Slots int `json:"slots,omitempty"`
	// NextStart is the rate limit's next start time (a past time: a start is free now).
	NextStart time.Time `json:"next_start,omitzero"`
}

// LimitStates lists the flow-control records in storage, by kind and key hash. Whether a
// slot is held is a lease the listing cannot see without taking it, so only the slot
// blobs are counted.
func (c *Client) LimitStates(ctx context.Context) ([]LimitState, error) {
	s := c.store.Store()
	cont := c.store.Layout.UniqueContainer()
	byKey := map[string]*LimitState{}
	get := func(kind, hash string) *LimitState {
		k := kind + "/" + hash
		if byKey[k] == nil {
			byKey[k] = &LimitState{Kind: kind, KeyHash: hash}
		}
		return byKey[k]
	}
	for it, err := range s.List(ctx, cont, flowPrefix) {
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("nightshift: limits: %w", err)
		}
		parts := strings.Split(strings.TrimPrefix(it.Name, flowPrefix), "/")
		switch {
		case len(parts) == 4 && parts[0] == "slots":
			get(parts[1], parts[2]).Slots++
		case len(parts) == 3 && parts[0] == "rate":
			var st rateState
			data, _, err := s.Get(ctx, cont, it.Name, 4096)
			if err != nil {
				continue
			}
			if json.Unmarshal(data, &st) == nil {
				get(parts[1], strings.TrimSuffix(parts[2], ".json")).NextStart = st.TAT
			}
		}
	}
	out := make([]LimitState, 0, len(byKey))
	for _, v := range byKey {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].KeyHash < out[j].KeyHash
	})
	return out, nil
}

// LimitKeyHash is the hash a LimitState names a key by.
func LimitKeyHash(key string) string { return keyHash(key) }
