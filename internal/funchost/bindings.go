package funchost

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

// dotnetBase64 decodes like Convert.FromBase64String: whitespace (space, tab, CR, LF) is
// dropped, the rest must be a multiple of 4 characters of the standard alphabet with up to
// two '=' of padding at the end. Unused trailing bits are ignored.
func dotnetBase64(s string) ([]byte, bool) {
	clean := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
	if len(clean)%4 != 0 {
		return nil, false
	}
	pad := len(clean) - len(strings.TrimRight(clean, "="))
	if pad > 2 {
		return nil, false
	}
	for _, c := range clean[:len(clean)-pad] {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/') {
			return nil, false
		}
	}
	b, err := base64.StdEncoding.DecodeString(clean)
	if err != nil {
		return nil, false
	}
	return b, true
}

// blobBytes converts one Outputs value to blob content (§1.9 steps A and B).
func blobBytes(v json.RawMessage, binaryType bool) ([]byte, error) {
	t := bytes.TrimSpace(v)
	switch t[0] {
	case '"':
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return nil, err
		}
		if _, isDate := parseNewtonsoftDate(s); isDate {
			// Newtonsoft reads ISO-looking strings as DateTime, which cannot be turned
			// into a stream [DERIVED]. Send base64 of the text instead.
			return nil, fmt.Errorf("value %q looks like an ISO-8601 date, which the host reads as a DateTime and cannot write to a blob (send base64 of the text instead)", s)
		}
		if !binaryType {
			// §1.9: without dataType binary, a string that is valid base64 is decoded.
			if b, ok := dotnetBase64(s); ok {
				return b, nil
			}
		}
		return []byte(s), nil
	case '{', '[':
		return compactJSON(t), nil // JToken → compact JSON, UTF-8
	case 't':
		return []byte{1}, nil
	case 'f':
		return []byte{0}, nil
	default:
		raw := string(t)
		if !strings.ContainsAny(raw, ".eE") {
			n, err := strconv.ParseInt(raw, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("number %s does not fit a 64-bit integer and cannot be written to a blob", raw)
			}
			// §1.9: a JSON integer becomes 4 bytes, (int)value, little-endian.
			return binary.LittleEndian.AppendUint32(nil, uint32(int32(n))), nil
		}
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return nil, fmt.Errorf("number %s: %w", raw, err)
		}
		return binary.LittleEndian.AppendUint64(nil, math.Float64bits(f)), nil
	}
}

// resolveExpressions resolves {…} binding expressions in a blob path against the
// invocation's binding data (§5). %AppSetting% was resolved when the function was loaded.
func resolveExpressions(tmpl string, inv *invocation) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(tmpl, '{')
		if i < 0 {
			b.WriteString(tmpl)
			return b.String(), nil
		}
		j := strings.IndexByte(tmpl[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("binding expression in %q has no closing '}'", tmpl)
		}
		b.WriteString(tmpl[:i])
		expr := tmpl[i+1 : i+j]
		v, err := resolveOne(expr, inv)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
		tmpl = tmpl[i+j+1:]
	}
}

func resolveOne(expr string, inv *invocation) (string, error) {
	name, format, _ := strings.Cut(expr, ":")
	name = strings.TrimSpace(name)
	//lint:ignore ST1005 the Functions host's own message (§5), which users search for; tests compare it
	unresolved := fmt.Errorf("Unable to resolve binding parameter '%s'. Binding expressions must map to either a value provided by the trigger or a property of the value the trigger binds to, or must be a system binding expression (e.g. sys.randguid, sys.utcnow, etc.).", name)
	switch strings.ToLower(name) {
	case "rand-guid":
		return formatGUID(uuid.NewString(), format)
	case "datetime", "sys.utcnow":
		return formatDotnetDate(inv.sys.UtcNow, format, true), nil
	case "sys.randguid":
		return formatGUID(inv.sys.RandGuid, format)
	case "sys.methodname":
		return inv.sys.MethodName, nil
	}
	path := strings.Split(name, ".")
	v, ok := inv.bd.get(path[0])
	if !ok {
		return "", unresolved
	}
	for _, p := range path[1:] {
		obj, isObj := v.(json.RawMessage)
		if !isObj {
			return "", unresolved
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(obj, &m) != nil {
			return "", unresolved
		}
		var found json.RawMessage
		for k, x := range m {
			if strings.EqualFold(k, p) {
				found = x
			}
		}
		if found == nil {
			return "", unresolved
		}
		var s string
		switch {
		case json.Unmarshal(found, &s) == nil:
			v = s
		case isJSONObject(found):
			v = found
		default:
			v = dotnetNumberOrBool(string(bytes.TrimSpace(found)))
		}
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case dateTimeOffset:
		return formatDotnetDate(time.Time(x), format, false), nil
	default:
		return "", fmt.Errorf("binding parameter '%s' is an object and cannot be used in a path", name)
	}
}

func dotnetNumberOrBool(raw string) string {
	switch raw {
	case "true":
		return "True"
	case "false":
		return "False"
	}
	return dotnetNumber(raw)
}

func formatGUID(g, format string) (string, error) {
	switch format {
	case "", "D", "d":
		return g, nil
	case "N", "n":
		return strings.ReplaceAll(g, "-", ""), nil
	case "B", "b":
		return "{" + g + "}", nil
	case "P", "p":
		return "(" + g + ")", nil
	}
	return "", fmt.Errorf("GUID format %q is not supported (use N, D, B or P)", format)
}

// formatDotnetDate formats with a .NET custom date format; the default for binding
// expressions is yyyy-MM-ddTHH-mm-ssK (§5).
func formatDotnetDate(t time.Time, format string, utc bool) string {
	if format == "" {
		format = "yyyy-MM-ddTHH-mm-ssK"
	}
	if utc {
		t = t.UTC()
	}
	var b strings.Builder
	for i := 0; i < len(format); {
		c := format[i]
		n := 1
		for i+n < len(format) && format[i+n] == c {
			n++
		}
		if c == 'f' {
			n = min(n, 7) // at most 7 fractional digits; the rest starts a new run
		}
		if field, ok := dateFields[c]; ok {
			b.WriteString(field(t, n))
			i += n
			continue
		}
		lit, used, rest := dateLiteral(format[i:], n, t, utc)
		b.WriteString(lit)
		if rest {
			break
		}
		i += used
	}
	return b.String()
}

// dateNum writes v without padding for a one-letter specifier, else with two digits.
func dateNum(v, n int) string {
	if n == 1 {
		return strconv.Itoa(v)
	}
	return fmt.Sprintf("%02d", v)
}

// dateName writes a number for one or two letters, an abbreviation for three, the full
// name for more.
func dateName(v, n int, name string) string {
	switch n {
	case 1, 2:
		return dateNum(v, n)
	case 3:
		return name[:3]
	}
	return name
}

// dateFields are the .NET custom date specifiers, each given the length of its run.
var dateFields = map[byte]func(t time.Time, n int) string{
	'y': func(t time.Time, n int) string {
		if n <= 2 {
			return fmt.Sprintf("%02d", t.Year()%100)
		}
		return fmt.Sprintf("%0*d", n, t.Year())
	},
	'M': func(t time.Time, n int) string { return dateName(int(t.Month()), n, t.Month().String()) },
	'd': func(t time.Time, n int) string {
		if n <= 2 {
			return dateNum(t.Day(), n)
		}
		return dateName(0, n, t.Weekday().String())
	},
	'H': func(t time.Time, n int) string { return dateNum(t.Hour(), n) },
	'h': func(t time.Time, n int) string {
		h := t.Hour() % 12
		if h == 0 {
			h = 12
		}
		return dateNum(h, n)
	},
	'm': func(t time.Time, n int) string { return dateNum(t.Minute(), n) },
	's': func(t time.Time, n int) string { return dateNum(t.Second(), n) },
	'f': func(t time.Time, n int) string { return fmt.Sprintf("%09d", t.Nanosecond())[:n] },
}

// dateLiteral handles what is not a date field at the start of format (a run of n equal
// characters): K (the offset, one character), a quoted literal, a backslash escape, or
// other characters written as they are. It returns the text, how many characters it
// used, and whether it used all the rest of format (an unterminated quote).
func dateLiteral(format string, n int, t time.Time, utc bool) (string, int, bool) {
	switch c := format[0]; c {
	case 'K':
		if utc {
			return "Z", 1, false
		}
		return t.Format("-07:00"), 1, false
	case '\'', '"':
		end := strings.IndexByte(format[1:], c)
		if end < 0 {
			return format[1:], len(format), true
		}
		return format[1 : 1+end], end + 2, false
	case '\\':
		if len(format) > 1 {
			return format[1:2], 2, false
		}
		return "", 2, false
	default:
		return strings.Repeat(string(c), n), n, false
	}
}

// writeBlob writes a blob output (§1.9): the container is created if missing, the blob is
// overwritten as a block blob, existing metadata is kept and AzureWebJobsParentId added.
func (h *Host) writeBlob(ctx context.Context, connection, path string, data []byte, invocationID string) error {
	s, err := h.storageFor(connection)
	if err != nil {
		return err
	}
	container, name, _ := strings.Cut(path, "/")
	if name == "" {
		return fmt.Errorf("blob path %q has no blob name after the container", path)
	}
	if err := h.ensureContainer(ctx, s, container); err != nil {
		return err
	}
	meta := map[string]string{}
	if props, err := s.Properties(ctx, container, name); err == nil {
		maps.Copy(meta, props.Metadata)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	// Metadata keys are case-insensitive; the boundary stores them lower-cased.
	meta["azurewebjobsparentid"] = invocationID
	// Content-Type is not set by the host; the SDK default is assumed [UNCONFIRMED, §1.9].
	_, err = s.Put(ctx, container, name, data, store.PutOptions{Metadata: meta, ContentType: "application/octet-stream"})
	return err
}

// containerKey names a container of one connection's store.
type containerKey struct {
	s    store.Store
	name string
}

// ensureContainer creates a container on first use (once per store and name).
func (h *Host) ensureContainer(ctx context.Context, s store.Store, name string) error {
	key := containerKey{s, name}
	h.containersMu.Lock()
	ok := h.containers[key]
	h.containersMu.Unlock()
	if ok {
		return nil
	}
	if err := s.CreateContainer(ctx, name); err != nil {
		return fmt.Errorf("create container %s: %w", name, err)
	}
	h.containersMu.Lock()
	h.containers[key] = true
	h.containersMu.Unlock()
	return nil
}
