package ui

import (
	"bytes"
	"encoding/json"
	"regexp"

	"github.com/nightshift-jobs/nightshift"
)

// secretKey matches JSON keys whose values the dashboard never shows, whatever the kind:
// the kind's own sensitive fields are redacted where the args are recorded (dead letters,
// nightshift.Secret and `nightshift:"sensitive"`), and Options.RedactArgs adds more.
var secretKey = regexp.MustCompile(`(?i)(password|passwd|secret|token|api[_-]?key|access[_-]?key|account[_-]?key|private[_-]?key|connection[_-]?string|credential|authorization|cookie|sas)`)

// showArgs returns args fit to show: Options.RedactArgs applied, then every value under a
// key named like a secret replaced with nightshift.Redacted. Args that are not JSON are
// not shown at all.
func (s *server) showArgs(kind string, args json.RawMessage) string {
	if len(args) == 0 {
		return ""
	}
	if s.opts.RedactArgs != nil {
		args = s.opts.RedactArgs(kind, args)
	}
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return `"` + nightshift.Redacted + `" (not JSON)`
	}
	v = redactKeys(v)
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nightshift.Redacted
	}
	return string(out)
}

func redactKeys(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if secretKey.MatchString(k) && e != nil {
				x[k] = nightshift.Redacted
				continue
			}
			x[k] = redactKeys(e)
		}
	case []any:
		for i, e := range x {
			x[i] = redactKeys(e)
		}
	}
	return v
}
