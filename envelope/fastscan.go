package envelope

import (
	"bytes"
	"encoding/json"

	"github.com/nightshift-jobs/nightshift/internal/jsonscan"
)

// The fast path of the strict checks: one walk over the bytes of text that json.Valid
// accepted, with no tokens, no reflection and no allocation for the common envelope. It
// only ever accepts; whatever it does not accept goes to the token scan (checkJSONTokens),
// which decides and words the error. The fuzz tests hold the two to the same answers.

// setFrom is the number of keys of one object from which duplicates are looked up in a
// map instead of by comparing with each earlier key.
const setFrom = 16

// fastFrame is one open object or array of the fast scan.
type fastFrame struct {
	obj   bool
	first int                 // index in keys of the object's first key
	set   map[string]struct{} // the object's keys once it has setFrom of them
}

// fastScan reports whether text is one valid JSON value nesting no deeper than MaxDepth
// and with no key twice in an object (after unescaping). When member is not nil it gets
// each member of the top-level object, in order: the key's literal and the value's text.
// false means "not sure": the caller asks the token scan.
func fastScan(text []byte, member func(key, value []byte)) bool {
	if !json.Valid(text) {
		return false
	}
	var stackBuf [MaxDepth]fastFrame
	var keyBuf [32][]byte
	stack, keys := stackBuf[:0], keyBuf[:0]
	for i := jsonscan.SkipSpace(text, 0); i < len(text); {
		switch c := text[i]; c {
		case '{', '[':
			if len(stack) >= MaxDepth {
				return false
			}
			stack = append(stack, fastFrame{obj: c == '{', first: len(keys)})
			i++
		case '}', ']':
			keys = keys[:stack[len(stack)-1].first]
			stack = stack[:len(stack)-1]
			i++
		case '"':
			end, _ := jsonscan.StringEnd(text, i)
			colon := jsonscan.SkipSpace(text, end)
			if colon < len(text) && text[colon] == ':' {
				f := &stack[len(stack)-1]
				var ok bool
				if keys, ok = addKey(f, keys, text[i:end]); !ok {
					return false
				}
				if member != nil && len(stack) == 1 {
					vs := jsonscan.SkipSpace(text, colon+1)
					ve := jsonscan.ValueEnd(text, vs)
					member(text[i:end:end], text[vs:ve:ve])
				}
			}
			i = end
		default:
			i++
		}
	}
	return true
}

// addKey adds the key literal lit to the object f; false when the object has it already.
func addKey(f *fastFrame, keys [][]byte, lit []byte) ([][]byte, bool) {
	key := lit[1 : len(lit)-1]
	if !jsonscan.Plain(lit) {
		key = jsonscan.AppendUnquoted(nil, lit)
	}
	if f.set != nil {
		if _, dup := f.set[string(key)]; dup {
			return keys, false
		}
		f.set[string(key)] = struct{}{}
		return keys, true
	}
	for _, k := range keys[f.first:] {
		if bytes.Equal(k, key) {
			return keys, false
		}
	}
	keys = append(keys, key)
	if n := len(keys) - f.first; n >= setFrom {
		f.set = make(map[string]struct{}, 2*n)
		for _, k := range keys[f.first:] {
			f.set[string(k)] = struct{}{}
		}
	}
	return keys, true
}
