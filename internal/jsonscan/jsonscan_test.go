package jsonscan

import (
	"bytes"
	"encoding/json"
	"maps"
	"testing"
)

var seeds = []string{
	`"abc"`, `"a\"b\\c\/d\b\f\n\r\t"`, `"\u00e9\u20ac\ud83d\ude00"`, `"\ud83d"`, `"\ude00x"`, `"\ud83d\u0041"`,
	"\"\xff\xfeok\"", `"<&>` + "\u2028\u2029" + `"`, `{"a":1,"b":[1,{"c":"}"}],"d":"x\"y"}`,
	`{"Data":{"m":"\"{\\\"k\\\":1}\""},"Metadata":{"Id":"\"x\""}}`, `{}`, ` { "a" : null , "b" : true } `,
	`-0.5e+10`, `0`, `12`, `01`, `1.`, `1e`, `-`, `"`, `[1,2]`, `{"a":{"a":{}}}`,
}

// FuzzUnquote: Unquote agrees with json.Unmarshal into a string on every valid literal.
func FuzzUnquote(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, lit []byte) {
		lit = bytes.TrimSpace(lit)
		var want string
		if len(lit) == 0 || lit[0] != '"' || json.Unmarshal(lit, &want) != nil {
			return
		}
		if got := Unquote(lit); got != want {
			t.Fatalf("Unquote(%q) = %q, encoding/json %q", lit, got, want)
		}
		if end, _ := StringEnd(lit, 0); end != len(lit) {
			t.Fatalf("StringEnd(%q) = %d", lit, end)
		}
	})
}

// FuzzAppendString: AppendString writes what json.Marshal writes for every string.
func FuzzAppendString(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("AppendString(%q) = %s, json.Marshal %s", s, got, want)
		}
	})
}

// FuzzMembers: on a valid object, Members yields what json.Unmarshal into a map of raw
// messages holds (the last of equal keys winning), and on a valid number IsNumber is true.
func FuzzMembers(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			if IsNumber(b) {
				t.Fatalf("IsNumber(%q) on invalid JSON", b)
			}
			return
		}
		numeric := len(b) > 0 && (b[0] == '-' || '0' <= b[0] && b[0] <= '9') && len(bytes.TrimSpace(b)) == len(b)
		if IsNumber(b) != numeric {
			t.Fatalf("IsNumber(%q) = %v", b, !numeric)
		}
		var want map[string]json.RawMessage
		if json.Unmarshal(b, &want) != nil || want == nil {
			return
		}
		got := map[string]json.RawMessage{}
		Members(b, func(k, v []byte) bool {
			got[Unquote(k)] = v
			return true
		})
		if !maps.EqualFunc(got, want, func(a, b json.RawMessage) bool { return bytes.Equal(a, b) }) {
			t.Fatalf("Members(%q) = %q, encoding/json %q", b, got, want)
		}
		if e := ValueEnd(b, SkipSpace(b, 0)); SkipSpace(b, e) != len(b) {
			t.Fatalf("ValueEnd(%q) = %d", b, e)
		}
	})
}
