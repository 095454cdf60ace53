package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/jsonscan"
)

// Limits of envelope v1. Every duration and count a producer can set is bounded; a value
// past its bound is refused with a *FieldError naming the field and the bound (the HTTP
// API answers 400 with the same text, the Go client returns it before anything is sent,
// and a queue message breaking one is dead with reason "undecodable"). docs/envelope.md
// lists them; envelope.schema.json carries the same numbers (a test compares them).
const (
	// MaxDepth bounds how deeply objects and arrays nest in an envelope (args included)
	// or an HTTP request body.
	MaxDepth = 64

	// MaxTimeoutSeconds bounds timeout_seconds: 7 days.
	MaxTimeoutSeconds = 7 * 24 * 60 * 60
	// MaxTimeout is MaxTimeoutSeconds as a duration: the longest per-attempt timeout an
	// envelope, an enqueue option or a kind's WorkerOptions may ask for.
	MaxTimeout = MaxTimeoutSeconds * time.Second

	// MaxScheduleAhead bounds how far ahead a job may be scheduled (run_at, the HTTP
	// API's run_in_seconds, EnqueueOptions.RunIn/RunAt): 10 years of 365 days.
	MaxScheduleAhead = 10 * 365 * 24 * time.Hour
	// MaxRunInSeconds is MaxScheduleAhead in seconds, the bound of run_in_seconds.
	MaxRunInSeconds = int64(MaxScheduleAhead / time.Second)

	// MaxAttemptsLimit bounds max_attempts (1–100), a kind's WorkerOptions.MaxAttempts,
	// and so attempt (which never exceeds the job's maximum).
	MaxAttemptsLimit = 100

	// MaxReplays bounds replay, the number of lives a job gets from its dead letter.
	MaxReplays = 10000
	// MaxSnoozes bounds snoozes, how often a job's worker snoozed in one life (a kind's
	// WorkerOptions.MaxSnoozes is at most this).
	MaxSnoozes = 1000

	// MaxMetaEntries bounds the number of meta entries.
	MaxMetaEntries = 64
	// MaxMetaKeyBytes bounds one meta key.
	MaxMetaKeyBytes = 128
	// MaxMetaValueBytes bounds one meta value.
	MaxMetaValueBytes = 1024

	// MaxStatusETagBytes bounds status_etag.
	MaxStatusETagBytes = 128
	// MaxDedupeKeyBytes bounds dedupe_key.
	MaxDedupeKeyBytes = 512

	// MaxBatchChildren bounds the children of one batch (tested with this many).
	MaxBatchChildren = 10000
)

// CheckJSON checks that data is exactly one well-formed JSON value in which no object
// has the same key twice (after unescaping) and nothing nests deeper than MaxDepth.
// Decoders that go on to read the text with encoding/json (where the last of two equal
// keys silently wins, while other readers take the first) call it first. A problem is a
// *FieldError whose Field is the JSON path of the offending key or container, such as
// "args.user.id" or "errors[2]" ("" for the text as a whole).
func CheckJSON(data []byte) error {
	if fastScan(data, nil) {
		return nil
	}
	return checkJSONTokens(data)
}

// checkJSONTokens is CheckJSON token by token (json.Decoder.Token): it words every
// problem, and decides what the fast scan leaves to it.
func checkJSONTokens(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var s scanState
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return &FieldError{"", "is not valid JSON: " + err.Error()}
		}
		if err := s.token(tok); err != nil {
			return err
		}
		if len(s.stack) == 0 {
			break
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &FieldError{"", "is not valid JSON: more data after the first value"}
	}
	return nil
}

// scanFrame is one open object or array.
type scanFrame struct {
	obj   bool
	path  string
	keys  map[string]struct{}
	key   string // the key whose value comes next (objects)
	atKey bool   // the next string is a key (objects)
	index int    // the index of the next element (arrays)
}

type scanState struct{ stack []*scanFrame }

func (s *scanState) top() *scanFrame {
	if len(s.stack) == 0 {
		return nil
	}
	return s.stack[len(s.stack)-1]
}

// childPath is the path of the value that comes next.
func (s *scanState) childPath() string {
	f := s.top()
	switch {
	case f == nil:
		return ""
	case f.obj:
		return JoinPath(f.path, f.key)
	default:
		return fmt.Sprintf("%s[%d]", f.path, f.index)
	}
}

// valueDone records that a value of the top container ended.
func (s *scanState) valueDone() {
	if f := s.top(); f != nil {
		if f.obj {
			f.atKey = true
		} else {
			f.index++
		}
	}
}

func (s *scanState) token(tok json.Token) error {
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{', '[':
			path := s.childPath()
			if len(s.stack) >= MaxDepth {
				return &FieldError{path, fmt.Sprintf("nests deeper than %d levels of objects and arrays (envelope.MaxDepth)", MaxDepth)}
			}
			s.stack = append(s.stack, &scanFrame{obj: t == '{', path: path, atKey: true})
		default:
			s.stack = s.stack[:len(s.stack)-1]
			s.valueDone()
		}
	case string:
		if f := s.top(); f != nil && f.obj && f.atKey {
			if _, dup := f.keys[t]; dup {
				return &FieldError{JoinPath(f.path, t), "is a duplicate key: an object may name a key once (JSON readers disagree on which of two values wins)"}
			}
			if f.keys == nil {
				f.keys = map[string]struct{}{}
			}
			f.keys[t], f.key, f.atKey = struct{}{}, t, false
			return nil
		}
		s.valueDone()
	default:
		s.valueDone()
	}
	return nil
}

var plainKeyRE = regexp.MustCompile(`^[A-Za-z0-9_$@-]+$`)

// JoinPath appends an object key to a JSON path: "args" + "user" is "args.user"; a key
// that is not plain letters, digits, '_', '-', '$' or '@' is quoted: args["a.b"].
func JoinPath(path, key string) string {
	if !plainKeyRE.MatchString(key) {
		return path + "[" + strconv.Quote(truncate(key, 64)) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// PrefixPath puts the path of a field error found inside a value under the value's own
// field name: PrefixPath("args", err) turns field "user.id" into "args.user.id". Errors
// of other types are returned unchanged.
func PrefixPath(prefix string, err error) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return err
	}
	field := prefix
	switch {
	case fe.Field == "":
	case strings.HasPrefix(fe.Field, "["):
		field += fe.Field
	default:
		field += "." + fe.Field
	}
	return &FieldError{field, fe.Problem}
}

// jsonNumber reads v as a JSON number; the problem names what was there instead.
func jsonNumber(field string, v json.RawMessage) (string, error) {
	if jsonscan.IsNumber(v) {
		return string(v), nil
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	tok, err := dec.Token()
	n, ok := tok.(json.Number)
	if err != nil || !ok {
		return "", &FieldError{field, "expected a number, got " + jsonKind(tok)}
	}
	return string(n), nil
}

func jsonKind(tok json.Token) string {
	switch t := tok.(type) {
	case string:
		return "string"
	case bool:
		return "bool"
	case json.Delim:
		if t == '[' {
			return "array"
		}
		return "object"
	}
	return "something else"
}

// DecodeInt reads the JSON value v of field as a whole number from lo to hi; the problem
// names the bounds (what names hi, such as "the attempt limit", is added to the text).
// Numbers like 1e300 or 2.5 are refused, not wrapped or truncated.
func DecodeInt(field string, v json.RawMessage, lo, hi int64, what string) (int64, error) {
	n, err := jsonNumber(field, v)
	if err != nil {
		return 0, err
	}
	i, perr := strconv.ParseInt(n, 10, 64)
	if perr != nil {
		return 0, &FieldError{field, fmt.Sprintf("%s must be a whole number from %d to %d (%s)", truncate(n, 32), lo, hi, what)}
	}
	return i, CheckInt(field, i, lo, hi, what)
}

// CheckInt reports a *FieldError when i is outside lo…hi (what names hi).
func CheckInt(field string, i, lo, hi int64, what string) error {
	switch {
	case i < lo:
		return &FieldError{field, fmt.Sprintf("%d must be %d or more", i, lo)}
	case i > hi:
		return &FieldError{field, fmt.Sprintf("%d must be at most %d (%s)", i, hi, what)}
	}
	return nil
}

// DecodeSeconds reads the JSON value v of field as a number of seconds from 0 to hi (what
// names hi, such as "7 days"). Numbers past float64's range are refused as out of range.
func DecodeSeconds(field string, v json.RawMessage, hi float64, what string) (float64, error) {
	n, err := jsonNumber(field, v)
	if err != nil {
		return 0, err
	}
	f, perr := strconv.ParseFloat(n, 64)
	if perr != nil {
		return 0, &FieldError{field, fmt.Sprintf("%s is out of range: at most %g seconds (%s)", truncate(n, 32), hi, what)}
	}
	return f, CheckSeconds(field, f, hi, what)
}

// CheckSeconds reports a *FieldError when f is not a finite number of seconds from 0 to
// hi (what names hi).
func CheckSeconds(field string, f, hi float64, what string) error {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return &FieldError{field, fmt.Sprintf("%g is not a number of seconds", f)}
	case f < 0:
		return &FieldError{field, fmt.Sprintf("%g must be 0 or more", f)}
	case f > hi:
		return &FieldError{field, fmt.Sprintf("%g must be at most %g seconds (%s)", f, hi, what)}
	}
	return nil
}

// CheckMeta reports a *FieldError when meta (the value of field) has more than
// MaxMetaEntries entries, an empty key, or a key or value longer than its bound.
func CheckMeta(field string, meta map[string]string) error {
	if len(meta) > MaxMetaEntries {
		return &FieldError{field, fmt.Sprintf("has %d entries; at most %d (envelope.MaxMetaEntries)", len(meta), MaxMetaEntries)}
	}
	for k, v := range meta {
		switch {
		case k == "":
			return &FieldError{field, "has an empty key"}
		case len(k) > MaxMetaKeyBytes:
			return &FieldError{field, fmt.Sprintf("key %q… is %d bytes; at most %d (envelope.MaxMetaKeyBytes)", truncate(k, 32), len(k), MaxMetaKeyBytes)}
		case len(v) > MaxMetaValueBytes:
			return &FieldError{JoinPath(field, k), fmt.Sprintf("is %d bytes; at most %d (envelope.MaxMetaValueBytes)", len(v), MaxMetaValueBytes)}
		}
	}
	return nil
}

// CheckRunAt reports a *FieldError when t is more than MaxScheduleAhead after now.
func CheckRunAt(field string, t, now time.Time) error {
	if !t.IsZero() && t.Sub(now) > MaxScheduleAhead {
		return &FieldError{field, fmt.Sprintf("%s is more than 10 years ahead (envelope.MaxScheduleAhead)", t.UTC().Format(time.RFC3339))}
	}
	return nil
}

// Bound descriptions used in problems.
const (
	whatAttempts = "envelope.MaxAttemptsLimit"
	whatTimeout  = "7 days, envelope.MaxTimeoutSeconds"
	whatReplays  = "envelope.MaxReplays"
	whatSnoozes  = "envelope.MaxSnoozes"
)
