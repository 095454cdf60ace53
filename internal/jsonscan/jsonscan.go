// Package jsonscan reads and writes the few JSON shapes on the invocation path (the host's
// request, the job envelope, the handler's response) without reflection.
//
// Readers take text that json.Valid accepted: they walk it by its bytes and never check the
// grammar again. Every reader gives the same answer as encoding/json for such text (string
// unescaping, U+FFFD for invalid UTF-8 and lone surrogates); callers fall back to
// encoding/json for anything else, so errors keep encoding/json's wording.
package jsonscan

import (
	"slices"
	"unicode/utf16"
	"unicode/utf8"
)

// SkipSpace returns the index of the first byte at or after i that is not JSON whitespace.
func SkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// StringEnd returns the index after the string literal that starts at b[i] (a '"'), and
// whether its content has a backslash escape.
func StringEnd(b []byte, i int) (end int, escaped bool) {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			return i + 1, escaped
		}
	}
	return len(b), escaped
}

// ValueEnd returns the index after the value that starts at b[i] (valid JSON).
func ValueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		end, _ := StringEnd(b, i)
		return end
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i, _ = StringEnd(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	}
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// Members calls yield with each member of the object obj (valid JSON, an object, maybe
// surrounded by whitespace) in order: the key's literal (quotes included) and the value's
// text, both slices of obj with their capacity cut at their end. It stops when yield
// returns false.
func Members(obj []byte, yield func(key, value []byte) bool) {
	i := SkipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return
	}
	i = SkipSpace(obj, i+1)
	for i < len(obj) && obj[i] == '"' {
		ke, _ := StringEnd(obj, i)
		key := obj[i:ke:ke]
		vs := SkipSpace(obj, SkipSpace(obj, ke)+1) // past the ':'
		ve := ValueEnd(obj, vs)
		if !yield(key, obj[vs:ve:ve]) {
			return
		}
		i = SkipSpace(obj, ve)
		if i < len(obj) && obj[i] == ',' {
			i = SkipSpace(obj, i+1)
		}
	}
}

// Count returns the number of members of the object obj (valid JSON).
func Count(obj []byte) int {
	n := 0
	Members(obj, func(_, _ []byte) bool { n++; return true })
	return n
}

// Plain reports whether the string literal lit (quotes included) decodes to its own
// content: no escapes and valid UTF-8.
func Plain(lit []byte) bool {
	if len(lit) < 2 {
		return false
	}
	c := lit[1 : len(lit)-1]
	ascii := true
	for _, ch := range c {
		if ch == '\\' {
			return false
		}
		ascii = ascii && ch < utf8.RuneSelf
	}
	return ascii || utf8.Valid(c)
}

// Unquote decodes the string literal lit (valid JSON, quotes included) as json.Unmarshal
// into a string does.
func Unquote(lit []byte) string {
	if Plain(lit) {
		return string(lit[1 : len(lit)-1])
	}
	return string(AppendUnquoted(nil, lit))
}

// AppendUnquoted appends the decoded content of the string literal lit (valid JSON,
// quotes included) to dst: escapes resolved, surrogate pairs joined, and each invalid
// UTF-8 byte or lone surrogate replaced by U+FFFD, as encoding/json does.
func AppendUnquoted(dst, lit []byte) []byte {
	s := lit[1 : len(lit)-1]
	dst = slices.Grow(dst, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			dst, i = appendEscape(dst, s, i)
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			dst = utf8.AppendRune(dst, r)
			i += size
		}
	}
	return dst
}

// appendEscape appends the escape at s[i] (a backslash), decoded, to dst and returns the
// index after it.
func appendEscape(dst, s []byte, i int) ([]byte, int) {
	if i+1 >= len(s) {
		return dst, len(s)
	}
	switch c := s[i+1]; c {
	case 'b':
		dst = append(dst, '\b')
	case 'f':
		dst = append(dst, '\f')
	case 'n':
		dst = append(dst, '\n')
	case 'r':
		dst = append(dst, '\r')
	case 't':
		dst = append(dst, '\t')
	case 'u':
		r, n := unicodeEscape(s, i)
		return utf8.AppendRune(dst, r), i + n
	default: // '"', '\\', '/'
		dst = append(dst, c)
	}
	return dst, i + 2
}

// unicodeEscape decodes \uXXXX at s[i], joined with a following \uXXXX when the two make
// a surrogate pair; a lone surrogate is U+FFFD. n is the number of bytes read.
func unicodeEscape(s []byte, i int) (r rune, n int) {
	r = hex4(s, i+2)
	if r < 0 {
		return utf8.RuneError, len(s) - i
	}
	if !utf16.IsSurrogate(r) {
		return r, 6
	}
	if i+12 <= len(s) && s[i+6] == '\\' && s[i+7] == 'u' {
		if r2 := hex4(s, i+8); r2 >= 0 {
			if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
				return dec, 12
			}
		}
	}
	return utf8.RuneError, 6
}

func hex4(s []byte, i int) rune {
	if i+4 > len(s) {
		return -1
	}
	var r rune
	for _, c := range s[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// IsNumber reports whether b is exactly one JSON number literal.
func IsNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i)
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		if j := digits(b, i+1); j > i+1 {
			i = j
		} else {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(b)
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string literal exactly as json.Marshal writes it:
// HTML-safe (<, > and & escaped), U+2028 and U+2029 escaped, and each invalid UTF-8
// byte written as \ufffd.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
