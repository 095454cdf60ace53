package nightshift

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
)

// Redacted is what a sensitive value shows instead of itself in logs, dead-letter records
// and views.
const Redacted = "[redacted]"

// Secret is a string that does not show itself: logged with slog, formatted with fmt
// (%v, %s, %q, %#v) or written into a job's captured logs it reads [redacted]. It encodes
// to JSON as the plain string, so a Secret field of job args reaches the worker; like a
// field tagged `nightshift:"sensitive"` it is redacted in dead-letter records. Use Reveal
// where the value is needed.
type Secret string

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String returns Redacted.
func (Secret) String() string { return Redacted }

// GoString returns Redacted (for %#v).
func (Secret) GoString() string { return Redacted }

// LogValue returns Redacted.
func (Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// Sensitive wraps any value for a log attribute that must not show it:
// logger.Info("charging", "card", nightshift.Sensitive(card)) logs card=[redacted].
func Sensitive(v any) slog.LogValuer { return sensitive{} }

type sensitive struct{}

func (sensitive) LogValue() slog.Value { return slog.StringValue(Redacted) }

// TagSensitive is the struct tag that marks a field sensitive: `nightshift:"sensitive"`.
const TagSensitive = "sensitive"

var secretType = reflect.TypeFor[Secret]()

// sensitivePaths caches the JSON paths of the sensitive fields of a type.
var sensitivePaths sync.Map // reflect.Type → [][]string

// pathsOf returns the JSON paths (field names; "*" for any element or map value) of the
// fields of t marked sensitive or of type Secret, nil when there are none.
func pathsOf(t reflect.Type) [][]string {
	if t == nil {
		return nil
	}
	if p, ok := sensitivePaths.Load(t); ok {
		return p.([][]string)
	}
	p := walkPaths(t, nil, map[reflect.Type]bool{})
	sensitivePaths.Store(t, p)
	return p
}

func walkPaths(t reflect.Type, prefix []string, seen map[reflect.Type]bool) [][]string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == secretType {
		return [][]string{prefix}
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map:
		return walkPaths(t.Elem(), append(prefix[:len(prefix):len(prefix)], "*"), seen)
	case reflect.Struct:
	default:
		return nil
	}
	if seen[t] {
		return nil
	}
	seen[t] = true
	defer delete(seen, t)
	var out [][]string
	for i := range t.NumField() {
		f := t.Field(i)
		name, ok := jsonName(f)
		if !ok {
			continue
		}
		path := append(prefix[:len(prefix):len(prefix)], name)
		if name == "" { // an embedded struct: its fields are inlined
			path = prefix
		}
		if tagSensitive(f) {
			out = append(out, path)
			continue
		}
		out = append(out, walkPaths(f.Type, path, seen)...)
	}
	return out
}

// jsonName is the field's JSON key as encoding/json names it; "" for an embedded struct
// without a name of its own, false for a field JSON skips.
func jsonName(f reflect.StructField) (string, bool) {
	tag := f.Tag.Get("json")
	if tag == "-" {
		return "", false
	}
	name, _, _ := strings.Cut(tag, ",")
	if f.Anonymous && name == "" {
		t := f.Type
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() == reflect.Struct {
			return "", true
		}
	}
	if !f.IsExported() {
		return "", false
	}
	if name == "" {
		name = f.Name
	}
	return name, true
}

func tagSensitive(f reflect.StructField) bool {
	for _, v := range strings.Split(f.Tag.Get("nightshift"), ",") {
		if strings.TrimSpace(v) == TagSensitive {
			return true
		}
	}
	return false
}

// redactJSON replaces the values at paths with Redacted. It reports whether anything was
// replaced; data that is not JSON is returned unchanged. Keys match as encoding/json
// matches them when decoding (case-insensitively).
func redactJSON(data json.RawMessage, paths [][]string) (json.RawMessage, bool, error) {
	if len(paths) == 0 || len(data) == 0 {
		return data, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return data, false, fmt.Errorf("redact: %w", err)
	}
	changed := false
	for _, p := range paths {
		v = redactAt(v, p, &changed)
	}
	if !changed {
		return data, false, nil
	}
	out, err := json.Marshal(v)
	return out, true, err
}

func redactAt(v any, path []string, changed *bool) any {
	if len(path) == 0 {
		if v == nil {
			return nil
		}
		*changed = true
		return Redacted
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if path[0] == "*" || strings.EqualFold(k, path[0]) {
				x[k] = redactAt(e, path[1:], changed)
			}
		}
	case []any:
		if path[0] == "*" {
			for i, e := range x {
				x[i] = redactAt(e, path[1:], changed)
			}
		}
	}
	return v
}

// redactAttr returns the attribute with sensitive values replaced: LogValuers (Secret,
// Sensitive) are resolved, groups walked, and a struct (or pointer to one) with sensitive
// fields becomes its JSON form with those fields redacted.
func redactAttr(a slog.Attr) slog.Attr {
	a.Value = a.Value.Resolve()
	switch a.Value.Kind() {
	case slog.KindGroup:
		g := a.Value.Group()
		out := make([]slog.Attr, len(g))
		for i, e := range g {
			out[i] = redactAttr(e)
		}
		a.Value = slog.GroupValue(out...)
	case slog.KindAny:
		a.Value = redactAny(a.Value)
	}
	return a
}

func redactAny(v slog.Value) slog.Value {
	x := v.Any()
	paths := pathsOf(reflect.TypeOf(x))
	if len(paths) == 0 {
		return v
	}
	raw, err := json.Marshal(x)
	if err != nil {
		return slog.StringValue(Redacted)
	}
	red, _, err := redactJSON(raw, paths)
	if err != nil {
		return slog.StringValue(Redacted)
	}
	var m any
	if err := json.Unmarshal(red, &m); err != nil {
		return slog.StringValue(Redacted)
	}
	return slog.AnyValue(m)
}
