package funchost

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// bindingData is the trigger's binding data: a case-insensitive dictionary that keeps the
// spelling of the first key inserted (the host's Binder uses OrdinalIgnoreCase, §1.5).
type bindingData struct {
	keys []string
	vals map[string]any // lower-cased key -> value
}

func newBindingData() *bindingData { return &bindingData{vals: map[string]any{}} }

// set inserts or overwrites (case-insensitively; the original spelling stays).
func (d *bindingData) set(k string, v any) {
	lk := strings.ToLower(k)
	if _, ok := d.vals[lk]; !ok {
		d.keys = append(d.keys, k)
	}
	d.vals[lk] = v
}

func (d *bindingData) get(k string) (any, bool) {
	v, ok := d.vals[strings.ToLower(k)]
	return v, ok
}

// Value kinds in binding data.
type (
	// dateTimeOffset is a .NET DateTimeOffset: ISO with offset, no fraction (§1.4.1 step 3).
	dateTimeOffset time.Time
	// sysData is SystemBindingData (§1.5).
	sysData struct {
		MethodName string
		UtcNow     time.Time
		RandGuid   string
	}
)

func newSys(fn string, now time.Time) sysData {
	return sysData{MethodName: fn, UtcNow: now.UTC(), RandGuid: uuid.NewString()}
}

// marshalJSON encodes like Newtonsoft's defaults as far as it matters here: no HTML
// escaping.
func marshalJSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only called with encodable values
	}
	return bytes.TrimRight(b.Bytes(), "\n")
}

// doubleEncode is §1.4.1 step 5: JsonConvert.SerializeObject(value) gives a .NET string
// holding JSON text, which is JSON-encoded again in the body.
func doubleEncode(v any) json.RawMessage {
	return marshalJSON(string(marshalJSON(v)))
}

// formatOffset writes a DateTimeOffset the way the host does after the culture round trip:
// no fractional seconds, numeric offset (§1.4.1 step 3).
func formatOffset(t time.Time) string { return t.Format("2006-01-02T15:04:05-07:00") }

// formatUtcNow writes sys.UtcNow: UTC with 7 fractional digits and Z (§1.5).
func formatUtcNow(t time.Time) string {
	t = t.UTC()
	return t.Format("2006-01-02T15:04:05") + fmt.Sprintf(".%07dZ", t.Nanosecond()/100)
}

// formatNewtonsoftDate writes a DateTime (Kind=Local) as Newtonsoft does in a JObject:
// ISO, up to 7 fractional digits with trailing zeros trimmed, local offset (§1.6).
func formatNewtonsoftDate(t time.Time) string {
	s := t.Format("2006-01-02T15:04:05")
	if ns := t.Nanosecond() / 100; ns != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%07d", ns), "0")
	}
	return s + t.Format("-07:00")
}

func (s sysData) object() json.RawMessage {
	return marshalJSON(struct {
		MethodName string
		UtcNow     string
		RandGuid   string
	}{s.MethodName, formatUtcNow(s.UtcNow), s.RandGuid})
}

// metadata builds the Metadata object (§1.4): every binding-data entry except nulls and
// keys ending in "trigger" (case-insensitive), each value encoded per §1.4.1.
func (d *bindingData) metadata() map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(d.keys))
	for _, k := range d.keys {
		if strings.HasSuffix(strings.ToLower(k), "trigger") {
			continue
		}
		v := d.vals[strings.ToLower(k)]
		if enc, ok := encodeValue(v); ok {
			out[k] = enc
		}
	}
	return out
}

// encodeValue applies §1.4.1 to one value. ok is false for values left out (null).
func encodeValue(v any) (json.RawMessage, bool) {
	switch x := v.(type) {
	case nil:
		return nil, false
	case []byte:
		return marshalJSON(x), true // base64 JSON string (step 1)
	case dateTimeOffset:
		return marshalJSON(formatOffset(time.Time(x))), true // step 3
	case sysData:
		return x.object(), true // step 4
	case json.RawMessage: // a JSON object (nested message property, TimerInfo)
		return x, true
	case string, int64, bool:
		return doubleEncode(x), true // step 5
	default:
		return doubleEncode(x), true
	}
}

// messageProperties adds the top-level properties of a JSON-object message to the binding
// data (§1.5, Utility.ApplyBindingData): arrays and nulls skipped, nested objects kept as
// objects, everything else turned into a .NET string ((string)JToken). A property whose name
// matches an existing key case-insensitively overwrites its value (so "id" overwrites Id).
func messageProperties(d *bindingData, text string) {
	t := strings.TrimSpace(text)
	if !(strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}")) {
		return
	}
	dec := json.NewDecoder(strings.NewReader(t))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return
	}
	type kv struct {
		k string
		v any
	}
	var props []kv
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return
		}
		key, _ := kt.(string)
		raw = bytes.TrimSpace(raw)
		switch raw[0] {
		case '[':
			continue
		case 'n':
			continue
		case '{':
			props = append(props, kv{key, json.RawMessage(compactJSON(raw))})
		case '"':
			var s string
			_ = json.Unmarshal(raw, &s)
			props = append(props, kv{key, newtonsoftString(s)})
		case 't':
			props = append(props, kv{key, "True"})
		case 'f':
			props = append(props, kv{key, "False"})
		default:
			props = append(props, kv{key, dotnetNumber(string(raw))})
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return
	}
	if _, err := dec.Token(); err != io.EOF { // nothing after it (JObject.Parse rejects more)
		return
	}
	for _, p := range props {
		d.set(p.k, p.v)
	}
}

func compactJSON(raw []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

// newtonsoftString mirrors Newtonsoft's default DateParseHandling.DateTime: a string that
// looks like an ISO-8601 date is read as a DateTime, and (string)JToken then formats it with
// the invariant culture ("MM/dd/yyyy HH:mm:ss") [DERIVED; the host's JObject parsing uses
// the defaults].
func newtonsoftString(s string) string {
	t, ok := parseNewtonsoftDate(s)
	if !ok {
		return s
	}
	return t.Format("01/02/2006 15:04:05")
}

// parseNewtonsoftDate recognises the ISO-8601 shapes Newtonsoft turns into DateTime:
// yyyy-MM-ddTHH:mm:ss[.fffffff][Z|±HH:mm].
func parseNewtonsoftDate(s string) (time.Time, bool) {
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	for _, layout := range []string{"2006-01-02T15:04:05.9999999Z07:00", "2006-01-02T15:04:05.9999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			if strings.HasSuffix(s, "Z") || layout == "2006-01-02T15:04:05.9999999" {
				return t, true
			}
			return t.UTC(), true // Local kind; on the host's machine (UTC on Azure)
		}
	}
	return time.Time{}, false
}

// dotnetNumber renders a JSON number the way (string)JToken does: integers as written,
// floats via double.ToString() (shortest round-trip, "E+" exponent).
func dotnetNumber(raw string) string {
	if !strings.ContainsAny(raw, ".eE") {
		return raw
	}
	f, err := strconv.ParseFloat(raw, 64)
	if err != nil || math.IsInf(f, 0) {
		return raw
	}
	s := strconv.FormatFloat(f, 'G', -1, 64)
	if i := strings.Index(s, "E"); i >= 0 {
		exp := s[i+1:]
		sign := "+"
		if exp[0] == '-' || exp[0] == '+' {
			sign = string(exp[0])
			exp = exp[1:]
		}
		exp = strings.TrimLeft(exp, "0")
		s = s[:i] + "E" + sign + exp
	}
	return s
}

// invokeRequest is the body of POST /{FunctionName} (§1.4).
type invokeRequest struct {
	Data     map[string]json.RawMessage `json:"Data"`
	Metadata map[string]json.RawMessage `json:"Metadata"`
}

// invokeResult is the parsed handler response (§1.8). encoding/json matches the top-level
// names case-insensitively, like Newtonsoft.
type invokeResult struct {
	Outputs     map[string]json.RawMessage `json:"Outputs"`
	Logs        []json.RawMessage          `json:"Logs"`
	ReturnValue json.RawMessage            `json:"ReturnValue"`
}

func (r *invokeResult) logLines() []string {
	var out []string
	for _, l := range r.Logs {
		var s string
		if json.Unmarshal(l, &s) == nil {
			out = append(out, s)
		} else {
			out = append(out, string(l))
		}
	}
	return out
}

// isJSONObject reports whether raw is a JSON object.
func isJSONObject(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '{'
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}
