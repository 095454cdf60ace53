package hostproto

import (
	"encoding/json"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/nightshift-jobs/nightshift/internal/jsonscan"
)

// The request's fast path: one json.Valid pass, then a walk over the bytes that fills
// Data and Metadata with slices of the body. It takes the shape the host sends (one
// "Data" and at most one "Metadata" object, spelt so, with plain keys); any other body
// goes to encoding/json, which decides and words the error. FuzzRequestFastPath holds the
// two to the same result.

// fastRequest decodes body when it has the host's plain shape; ok false leaves it to
// encoding/json.
func fastRequest(body []byte) (req *InvokeRequest, ok bool) {
	if !json.Valid(body) {
		return nil, false
	}
	if i := jsonscan.SkipSpace(body, 0); body[i] != '{' {
		return nil, false
	}
	req = &InvokeRequest{}
	ok = true
	jsonscan.Members(body, func(key, value []byte) bool {
		var dst *map[string]json.RawMessage
		switch k := key[1 : len(key)-1]; {
		case string(k) == "Data":
			dst = &req.Data
		case string(k) == "Metadata":
			dst = &req.Metadata
		case !jsonscan.Plain(key) || foldsTo(k, "data") || foldsTo(k, "metadata"):
			ok = false // a spelling encoding/json would match case-insensitively
			return false
		default:
			return true
		}
		if *dst != nil || value[0] != '{' {
			ok = false
			return false
		}
		*dst, ok = rawMap(value)
		return ok
	})
	if !ok || req.Data == nil {
		return nil, false
	}
	return req, true
}

// foldsTo reports whether the ASCII key k equals lower (lower case) ignoring case.
func foldsTo(k []byte, lower string) bool {
	if len(k) != len(lower) {
		return false
	}
	for i, c := range k {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// rawMap is the members of the object obj by key; false when a key is not plain.
func rawMap(obj []byte) (map[string]json.RawMessage, bool) {
	m := make(map[string]json.RawMessage, jsonscan.Count(obj))
	ok := true
	jsonscan.Members(obj, func(key, value []byte) bool {
		if !jsonscan.Plain(key) {
			ok = false
			return false
		}
		m[hostKey(key[1:len(key)-1])] = value
		return true
	})
	return m, ok
}

// appendUnquoted appends the content of the valid string literal raw to dst; with no
// escapes and dst empty it is a slice of raw.
func appendUnquoted(dst, raw []byte) []byte {
	if len(dst) == 0 && jsonscan.Plain(raw) {
		return raw[1 : len(raw)-1 : len(raw)-1]
	}
	return jsonscan.AppendUnquoted(dst, raw)
}

// doubleString decodes raw when it is one JSON string literal: s1 its content; and, when
// s1 is itself exactly one string literal (the host's double encoding), s2 the content of
// that, with double true. buf is scratch space for s1.
func doubleString(buf, raw []byte) (s1, s2 []byte, double, ok bool) {
	if s1, ok = unquoteInto(buf, raw); !ok || len(s1) == 0 || s1[0] != '"' {
		return s1, nil, false, ok
	}
	// Decoding never makes valid UTF-8 longer, so s2 can take the place of s1.
	into := []byte(nil)
	if utf8.Valid(s1) {
		into = s1
	}
	s2, double = unquoteInto(into, s1)
	return s1, s2, double, true
}

// unquoteInto decodes raw when it is exactly one JSON string literal, into buf[:0] (a
// slice of raw when it has no escapes).
func unquoteInto(buf, raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return nil, false
	}
	if end, _ := jsonscan.StringEnd(raw, 0); end != len(raw) || !json.Valid(raw) {
		return nil, false
	}
	return appendUnquoted(buf[:0], raw), true
}

// respBuf holds response bodies between invocations.
var respBuf = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// appendResponse appends resp as json.Marshal writes it, for the shapes a queue function
// answers with (no outputs; a string, a string map or nothing as return value); false
// leaves any other to json.Marshal.
func appendResponse(dst []byte, resp *InvokeResponse) ([]byte, bool) {
	if len(resp.Outputs) > 0 {
		return dst, false
	}
	dst = append(dst, `{"Logs":[`...)
	for i, l := range resp.Logs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonscan.AppendString(dst, l)
	}
	dst = append(dst, ']')
	switch v := resp.ReturnValue.(type) {
	case nil:
	case string:
		dst = jsonscan.AppendString(append(dst, `,"ReturnValue":`...), v)
	case map[string]string:
		var ok bool
		if dst, ok = appendStringMap(append(dst, `,"ReturnValue":`...), v); !ok {
			return dst, false
		}
	default:
		return dst, false
	}
	return append(dst, '}'), true
}

// appendStringMap appends m with its keys sorted, as json.Marshal does, when it has at
// most 8 entries.
func appendStringMap(dst []byte, m map[string]string) ([]byte, bool) {
	if m == nil {
		return append(dst, "null"...), true
	}
	var buf [8]string
	if len(m) > len(buf) {
		return dst, false
	}
	ks := buf[:0]
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	dst = append(dst, '{')
	for i, k := range ks {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(jsonscan.AppendString(dst, k), ':')
		dst = jsonscan.AppendString(dst, m[k])
	}
	return append(dst, '}'), true
}

// hostKeys are the keys the host puts in every queue invocation (§1.5), so that they need
// no new string.
var hostKeys = []string{"QueueTrigger", "DequeueCount", "ExpirationTime", "Id", "InsertionTime",
	"NextVisibleTime", "PopReceipt", "sys", "message", "job_id", "kind", "args", "attempt", "enqueued_at"}

// hostKey is k as a string, one of hostKeys when it is one.
func hostKey(k []byte) string {
	for _, h := range hostKeys {
		if string(k) == h {
			return h
		}
	}
	return string(k)
}
