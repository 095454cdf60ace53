package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
)

// fields maps the names of a request object's fields to where they decode: a pointer
// (json.Unmarshal), or a func(json.RawMessage) []FieldProblem for a field that needs more.
type fields map[string]any

// decodeObject decodes a JSON object field by field, so that every problem names its
// field, prefixed with path ("children[3].kind"). Fields named in refused are refused with
// their reason; other unknown fields are refused too, listing the known ones. null values
// are skipped. It returns the names present and the problems.
func decodeObject(path string, v json.RawMessage, want string, fs fields, refused map[string]string) (map[string]bool, []FieldProblem) {
	if path == "" {
		// The whole body, once: duplicate keys (where the last would silently win) and
		// deep nesting are refused, named by their path (envelope.CheckJSON).
		var fe *envelope.FieldError
		if err := envelope.CheckJSON(v); errors.As(err, &fe) && fe.Field != "" {
			return nil, []FieldProblem{{Field: fe.Field, Problem: fe.Problem}}
		}
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil || raw == nil {
		p := "expected an object " + want
		if path == "" {
			p = "body is not a JSON object " + want
			if err != nil {
				p += ": " + err.Error()
			}
		}
		return nil, []FieldProblem{{Field: path, Problem: p}}
	}
	var errs []FieldProblem
	present := map[string]bool{}
	for _, name := range sortedKeys(raw) {
		fv := raw[name]
		present[name] = true
		if string(fv) == "null" {
			continue
		}
		switch target := fs[name].(type) {
		case nil:
			p, ok := refused[name]
			if !ok {
				p = "unknown field (fields: " + strings.Join(sortedKeys(fs), ", ") + ")"
			}
			errs = append(errs, FieldProblem{Field: fieldPath(path, name), Problem: p})
		case func(json.RawMessage) []FieldProblem:
			errs = append(errs, target(fv)...)
		default:
			if err := json.Unmarshal(fv, target); err != nil {
				errs = append(errs, FieldProblem{Field: fieldPath(path, name), Problem: describe(err, fv)})
			}
		}
	}
	return present, errs
}

func fieldPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkQueueChoice checks the priority field against the queue field of a request.
func checkQueueChoice(priority, queue string) []FieldProblem {
	if priority == "" {
		return nil
	}
	if queue != "" {
		return []FieldProblem{{Field: "priority", Problem: "give queue or priority, not both"}}
	}
	if _, err := nightshift.ParsePriority(priority); err != nil {
		return []FieldProblem{{Field: "priority", Problem: fmt.Sprintf("%q is not high, normal or low", priority)}}
	}
	return nil
}

// seconds decodes a number of seconds from 0 to hi (what names hi) into dst; a negative
// number is refused with neg. Numbers too large for a duration (1e300) are refused.
func seconds(field string, dst *float64, hi float64, what, neg string) func(json.RawMessage) []FieldProblem {
	return func(v json.RawMessage) []FieldProblem {
		f, err := envelope.DecodeSeconds(field, v, hi, what)
		switch {
		case err != nil && f < 0:
			return []FieldProblem{{Field: field, Problem: neg}}
		case err != nil:
			return fieldProblems(err)
		}
		*dst = f
		return nil
	}
}

// count decodes a whole number from lo to hi (what names hi) into dst; 0 stands for the
// default and is accepted too.
func count(field string, dst *int, lo, hi int64, what string) func(json.RawMessage) []FieldProblem {
	return func(v json.RawMessage) []FieldProblem {
		if strings.TrimSpace(string(v)) == "0" {
			*dst = 0
			return nil
		}
		i, err := envelope.DecodeInt(field, v, lo, hi, what)
		if err != nil {
			return fieldProblems(err)
		}
		*dst = int(i)
		return nil
	}
}

// meta decodes a meta object into dst and checks it against the envelope's limits.
func meta(field string, dst *map[string]string) func(json.RawMessage) []FieldProblem {
	return func(v json.RawMessage) []FieldProblem {
		if err := json.Unmarshal(v, dst); err != nil {
			return []FieldProblem{{Field: field, Problem: describe(err, v)}}
		}
		return fieldProblems(envelope.CheckMeta(field, *dst))
	}
}

// fieldProblems turns an *envelope.FieldError into the problem list (nil for nil).
func fieldProblems(err error) []FieldProblem {
	var fe *envelope.FieldError
	if errors.As(err, &fe) {
		return []FieldProblem{{Field: fe.Field, Problem: fe.Problem}}
	}
	if err != nil {
		return []FieldProblem{{Problem: err.Error()}}
	}
	return nil
}
