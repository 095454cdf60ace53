package funchost

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().String()
}

func TestHTTP_1_7_ForwardedAndJSONWrapped(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{Forward: true}.render(), map[string]string{
		// http in + http out only: forwarded raw (§1.1).
		"Hello": `{"bindings":[{"name":"req","type":"httpTrigger","direction":"in","authLevel":"anonymous","methods":["get","post"],"route":"hello/{id?}"},{"name":"res","type":"http","direction":"out"}]}`,
		// An extra binding: JSON-wrapped even with forwarding on.
		"Items": `{"bindings":[{"name":"req","type":"httpTrigger","direction":"in","authLevel":"function","methods":["post"],"route":"items/{id}"},{"name":"res","type":"http","direction":"out"},{"name":"out","type":"blob","direction":"out","path":"{{p}}-http/{id}"}]}`,
	})
	addr := freeAddr(t)
	h, _, _ := a.run(Options{HTTPAddr: addr})
	base := "http://" + addr + "/api/"
	var resp *http.Response
	testenv.WaitFor(t, 20*time.Second, "the HTTP listener and the handler", func() bool {
		var err error
		resp, err = http.Get(base + "hello/7?x=1")
		return err == nil
	})
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var fwd map[string]string
	must(t, json.Unmarshal(b, &fwd))
	if resp.StatusCode != http.StatusTeapot || fwd["path"] != "/api/hello/7" || fwd["query"] != "x=1" || !guidRE.MatchString(fwd["invocationId"]) {
		t.Errorf("forwarded: %d %v", resp.StatusCode, fwd)
	}
	// Optional parameter omitted; a method not in "methods" does not match.
	if r, err := http.Get(base + "hello"); err != nil || r.StatusCode != http.StatusTeapot {
		t.Errorf("GET /api/hello: %v %v", r, err)
	}
	if r, _ := http.NewRequest(http.MethodDelete, base+"hello/7", nil); r != nil {
		if resp, err := http.DefaultClient.Do(r); err != nil || resp.StatusCode != http.StatusNotFound {
			t.Errorf("DELETE matched: %v %v", resp, err)
		}
	}

	cmd := `{"key":"items","do":"ok","outputs":{"res":{"statusCode":"201","body":"made","headers":{"X-A":"b"}},"out":"eHl6"}}`
	// authLevel function: no key → 401.
	if r, err := http.Post(base+"items/42", "application/json", strings.NewReader(cmd)); err != nil || r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a key: %v %v", r, err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"items/42?q=v", strings.NewReader(cmd))
	req.Header.Set("x-functions-key", h.FunctionKey())
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || string(b) != "made" || resp.Header.Get("X-A") != "b" {
		t.Errorf("wrapped response: %d %q %v", resp.StatusCode, b, resp.Header)
	}
	if r, err := http.Post(base+"items/43?code="+h.FunctionKey(), "application/json", strings.NewReader(`{"key":"items2","do":"ok"}`)); err != nil || r.StatusCode != http.StatusNoContent {
		t.Errorf("code= key and no http output: %v %v", r, err)
	}
	recs := a.records_("items")
	if len(recs) != 1 || recs[0].Path != "/Items" {
		t.Fatalf("records %+v", recs)
	}
	var body struct {
		Data struct {
			Req struct {
				Method  string
				Url     string
				Params  map[string]string
				Query   map[string]string
				Headers map[string][]string
				Body    string
			} `json:"req"`
		}
		Metadata map[string]json.RawMessage
	}
	must(t, json.Unmarshal(recs[0].Body, &body))
	r := body.Data.Req
	if r.Method != "POST" || r.Params["id"] != "42" || r.Query["q"] != "v" || r.Body != cmd || !strings.HasSuffix(r.Url, "/api/items/42?q=v") {
		t.Errorf("Data.req = %+v", r)
	}
	if unmarshalString(t, body.Metadata["id"]) != `"42"` || unmarshalString(t, body.Metadata["q"]) != `"v"` {
		t.Errorf("Metadata %v", body.Metadata)
	}
	if _, ok := body.Metadata["req"]; ok {
		t.Error("the request object must not be in Metadata")
	}
}
