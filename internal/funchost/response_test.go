package funchost

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

// responseCase enqueues one message whose command makes the handler answer badly, with
// maxDequeueCount 1, and expects it in the poison queue after a single invocation.
func responseFails(t *testing.T, do, wantLog string) *app {
	t.Helper()
	a := newApp(t, testHostJSON{MaxDequeueCount: 1}.render(), map[string]string{"Work": queueFn("{{p}}-resp")})
	q := a.createQueue("{{p}}-resp")
	a.run(Options{})
	msg := `{"key":"r","do":"` + do + `"}`
	a.enqueue(q, msg)
	poison := a.queue("{{p}}-resp-poison")
	testenv.WaitFor(t, 20*time.Second, "the failed message in the poison queue", func() bool { return len(peekAll(t, poison)) == 1 })
	if n := len(a.records_("r")); n != 1 {
		t.Errorf("handler invoked %d times, want 1", n)
	}
	if !a.logs.Contains(wantLog) {
		t.Errorf("log lacks %q", wantLog)
	}
	if !a.logs.Contains("(Failed, Id=") {
		t.Error("no failed end-of-invocation line")
	}
	return a
}

func TestResponse_1_8_Non2xxFailsAndLogsIgnored(t *testing.T) {
	t.Parallel()
	a := responseFails(t, "fail", "Response status code does not indicate success: 500")
	if a.logs.Contains("this log must be ignored") {
		t.Error("Logs of a non-2xx response were logged")
	}
}

func TestResponse_1_8_TextPlainFails(t *testing.T) {
	t.Parallel()
	responseFails(t, "text", "media type 'text/plain'")
}

func TestResponse_1_8_NoContentTypeFails(t *testing.T) {
	t.Parallel()
	responseFails(t, "nocontenttype", "media type 'application/octet-stream'")
}

func TestResponse_1_8_InvalidJSONFails(t *testing.T) {
	t.Parallel()
	responseFails(t, "badjson", "Invalid HttpResponseMessage: StatusCode: 200")
}

func TestResponse_1_8_EmptyBodyFailsFastWithWarning(t *testing.T) {
	t.Parallel()
	responseFails(t, "empty", "HANDLER BUG: POST /Work answered 200 with an empty body")
}

func TestResponse_1_8_LogsOn2xx(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), map[string]string{"Work": queueFn("{{p}}-logs")})
	q := a.createQueue("{{p}}-logs")
	a.run(Options{})
	a.enqueue(q, `{"key":"l","do":"ok","logs":["first user log","second user log"]}`)
	testenv.WaitFor(t, 20*time.Second, "the logs", func() bool { return a.logs.Contains("second user log") })
	testenv.WaitFor(t, 10*time.Second, "the message to be deleted", func() bool { return approxCount(t, q) == 0 })
	if !a.logs.Contains("first user log") || !a.logs.Contains("(Succeeded, Id=") || !a.logs.Contains("Executing 'Functions.Work' (Reason='New queue message detected on") {
		t.Errorf("log:\n%s", a.logs.String())
	}
}

func TestBlob_1_9_OutputConversionsAndWrite(t *testing.T) {
	t.Parallel()
	outs := []string{
		`{"name":"b64","type":"blob","direction":"out","path":"{{p}}-out/{key}/b64"}`,
		`{"name":"word","type":"blob","direction":"out","path":"{{p}}-out/{key}/word"}`,
		`{"name":"hello","type":"blob","direction":"out","path":"{{p}}-out/{key}/hello"}`,
		`{"name":"num","type":"blob","direction":"out","path":"{{p}}-out/{key}/num-{DequeueCount}"}`,
		`{"name":"obj","type":"blob","direction":"out","path":"{{p}}-out/{key}/obj"}`,
		`{"name":"bin","type":"blob","direction":"out","dataType":"binary","path":"{{p}}-out/{key}/bin"}`,
		`{"name":"$return","type":"blob","direction":"out","path":"{{p}}-out/{key}/ret-{rand-guid}"}`,
		`{"name":"Lower","type":"blob","direction":"out","path":"{{p}}-out/{key}/lower"}`,
	}
	a := newApp(t, testHostJSON{}.render(), map[string]string{"Out": queueFn("{{p}}-out", outs...)})
	q := a.createQueue("{{p}}-out")
	a.run(Options{})
	a.enqueue(q, `{"key":"k1","do":"ok","outputs":{"b64":"aGVsbG8=","word":"test","hello":"Hello World","num":42,`+
		`"obj":{ "a" : [1, 2] },"bin":"aGVsbG8=","lower":"not written: names are case-sensitive","unknown":"ignored"},"returnValue":"cmV0"}`)
	testenv.WaitFor(t, 20*time.Second, "the message to be deleted", func() bool { return approxCount(t, q) == 0 && len(a.records_("k1")) == 1 })
	cc := testenv.BlobService(a.clients).ServiceClient().NewContainerClient(a.prefix + "-out")
	get := func(name string) ([]byte, map[string]*string) {
		t.Helper()
		bc := cc.NewBlobClient(name)
		resp, err := bc.DownloadStream(context.Background(), nil)
		if err != nil {
			t.Fatalf("blob %s: %v", name, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b, resp.Metadata
	}
	invID := a.records_("k1")[0].Headers["X-Azure-Functions-Invocationid"][0]
	cases := map[string][]byte{
		"k1/b64":   []byte("hello"),
		"k1/word":  {0xb5, 0xeb, 0x2d}, // "test" is valid base64 and is decoded (§1.9)
		"k1/hello": []byte("Hello World"),
		"k1/num-1": binary.LittleEndian.AppendUint32(nil, 42),
		"k1/obj":   []byte(`{"a":[1,2]}`),
		"k1/bin":   []byte("aGVsbG8="),
	}
	for name, want := range cases {
		got, meta := get(name)
		if string(got) != string(want) {
			t.Errorf("blob %s = %q, want %q", name, got, want)
		}
		var parent string
		for k, v := range meta {
			if strings.EqualFold(k, "AzureWebJobsParentId") {
				parent = *v
			}
		}
		if parent != invID {
			t.Errorf("blob %s AzureWebJobsParentId %q, want the invocation id %q", name, parent, invID)
		}
	}
	pager := cc.NewListBlobsFlatPager(nil)
	var names []string
	for pager.More() {
		p, err := pager.NextPage(context.Background())
		must(t, err)
		for _, b := range p.Segment.BlobItems {
			names = append(names, *b.Name)
		}
	}
	var ret string
	for _, n := range names {
		if n == "k1/lower" {
			t.Error("Outputs are matched case-sensitively; 'lower' must not write binding 'Lower'")
		}
		if strings.HasPrefix(n, "k1/ret-") {
			ret = n
		}
	}
	if ret == "" || !guidRE.MatchString(strings.TrimPrefix(ret, "k1/ret-")) {
		t.Fatalf("no $return blob with a rand-guid name in %v", names)
	}
	if got, _ := get(ret); string(got) != "ret" {
		t.Errorf("$return blob = %q", got)
	}
}

func TestBlob_5_UnresolvableExpressionFails(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{MaxDequeueCount: 1}.render(), map[string]string{
		"Out": queueFn("{{p}}-unres", `{"name":"out","type":"blob","direction":"out","path":"{{p}}-unres/{missing}"}`)})
	q := a.createQueue("{{p}}-unres")
	a.run(Options{})
	a.enqueue(q, `{"key":"u","do":"ok","outputs":{"out":"eA=="}}`)
	testenv.WaitFor(t, 20*time.Second, "the poison message", func() bool { return len(peekAll(t, a.queue("{{p}}-unres-poison"))) == 1 })
	if !a.logs.Contains("Unable to resolve binding parameter 'missing'") {
		t.Error("missing the host's error")
	}
}

func TestBlobBytes_1_9(t *testing.T) {
	cases := []struct {
		in     string
		binary bool
		want   []byte
		err    bool
	}{
		{`"aGVsbG8="`, false, []byte("hello"), false},
		{`"aGVs bG8="`, false, []byte("hello"), false}, // whitespace dropped
		{`"aGVsbG8="`, true, []byte("aGVsbG8="), false},
		{`"abcd1234"`, false, []byte{0x69, 0xb7, 0x1d, 0xd7, 0x6d, 0xf8}, false},
		{`"Hello World"`, false, []byte("Hello World"), false},
		{`""`, false, []byte{}, false},
		{`-1`, false, []byte{0xff, 0xff, 0xff, 0xff}, false},
		{`4294967297`, false, []byte{1, 0, 0, 0}, false}, // truncated to 32 bits
		{`1.5`, false, binary.LittleEndian.AppendUint64(nil, 0x3ff8000000000000), false},
		{`true`, false, []byte{1}, false},
		{`[1, {"a": "b"}]`, false, []byte(`[1,{"a":"b"}]`), false},
		{`"2024-05-01T10:00:00Z"`, false, nil, true},
	}
	for _, c := range cases {
		got, err := blobBytes(json.RawMessage(c.in), c.binary)
		if (err != nil) != c.err || (!c.err && string(got) != string(c.want)) {
			t.Errorf("blobBytes(%s, binary=%v) = %v, %v; want %v", c.in, c.binary, got, err, c.want)
		}
	}
}

func TestExpressions_5(t *testing.T) {
	inv := &invocation{bd: newBindingData(), sys: sysData{MethodName: "Fn", UtcNow: time.Date(2024, 5, 1, 10, 15, 30, 123456700, time.UTC), RandGuid: "9c0f1e2d-1111-2222-3333-444455556666"}}
	inv.bd.set("Id", "abc")
	inv.bd.set("DequeueCount", int64(3))
	inv.bd.set("InsertionTime", dateTimeOffset(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)))
	inv.bd.set("customer", json.RawMessage(`{"name":"Ann"}`))
	cases := map[string]string{
		"c/{id}-{DequeueCount}":                "c/abc-3",
		"c/{DateTime}":                         "c/2024-05-01T10-15-30Z",
		"c/{sys.utcnow:yyyyMMdd}":              "c/20240501",
		"c/{DateTime:yyyy/MM/dd HH:mm:ss.fff}": "c/2024/05/01 10:15:30.123",
		"c/{sys.randguid:N}":                   "c/9c0f1e2d111122223333444455556666",
		"c/{sys.methodname}":                   "c/Fn",
		"c/{InsertionTime}":                    "c/2024-05-01T10-00-00+00:00",
		"c/{customer.name}":                    "c/Ann",
	}
	for tmpl, want := range cases {
		got, err := resolveExpressions(tmpl, inv)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", tmpl, got, err, want)
		}
	}
	for _, bad := range []string{"c/{nope}", "c/{customer}", "c/{unclosed"} {
		if _, err := resolveExpressions(bad, inv); err == nil {
			t.Errorf("%s resolved", bad)
		}
	}
	if got, _ := resolveExpressions("c/{rand-guid}", inv); !guidRE.MatchString(strings.TrimPrefix(got, "c/")) {
		t.Errorf("rand-guid: %s", got)
	}
}

func TestResponse_1_8_ReturnValueRules(t *testing.T) {
	plain := &Function{Bindings: []Binding{{Name: "msg", Type: "queueTrigger"}, {Name: "out", Type: "blob"}}}
	withReturn := &Function{Bindings: []Binding{{Name: "msg", Type: "queueTrigger"}, {Name: "$return", Type: "blob"}}}
	res := &invokeResult{Outputs: map[string]json.RawMessage{"out": json.RawMessage(`"a"`)}, ReturnValue: json.RawMessage(`{"out":"b","other":1}`)}
	if got := outputValues(plain, res); string(got["out"]) != `"b"` || string(got["other"]) != `1` {
		t.Errorf("object ReturnValue without $return: %v", got)
	}
	if got := outputValues(withReturn, res); string(got["$return"]) != `{"out":"b","other":1}` || string(got["out"]) != `"a"` {
		t.Errorf("ReturnValue with $return: %v", got)
	}
	res = &invokeResult{ReturnValue: json.RawMessage(`"just a string"`)}
	if got := outputValues(plain, res); len(got) != 0 {
		t.Errorf("a non-object ReturnValue without $return binds nothing: %v", got)
	}
}
