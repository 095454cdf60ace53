package envelope

import (
	"bytes"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const testParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestTraceDecodesAndRoundTrips(t *testing.T) {
	e, err := Decode([]byte(`{"kind":"k","trace":{"traceparent":"` + testParent + `","tracestate":"congo=t61rcWkgMzE"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if e.Trace == nil || e.Trace.Parent != testParent || e.Trace.State != "congo=t61rcWkgMzE" {
		t.Fatalf("trace = %+v", e.Trace)
	}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if *back.Trace != *e.Trace {
		t.Fatalf("round trip: %+v vs %+v", back.Trace, e.Trace)
	}
	plain, _ := (&Envelope{Kind: "k"}).Encode()
	if bytes.Contains(plain, []byte("trace")) {
		t.Fatalf("an envelope without a trace writes one: %s", plain)
	}
}

func TestTraceRefused(t *testing.T) {
	for body, field := range map[string]string{
		`{"kind":"k","trace":{}}`:                                                    "trace.traceparent",
		`{"kind":"k","trace":{"traceparent":"00-abc-def-01"}}`:                       "trace.traceparent",
		`{"kind":"k","trace":{"traceparent":"` + strings.ToUpper(testParent) + `"}}`: "trace.traceparent",
		`{"kind":"k","trace":{"traceparent":"` + testParent + `","x":1}}`:            "trace",
		`{"kind":"k","trace":"` + testParent + `"}`:                                  "trace",
		`{"kind":"k","trace":{"traceparent":"` + testParent + `","tracestate":"` + strings.Repeat("a", MaxTraceStateBytes+1) + `"}}`: "trace.tracestate",
		`{"kind":"k","trace":{"traceparent":"` + testParent + `","tracestate":"a=\n"}}`:                                              "trace.tracestate",
	} {
		_, err := Decode([]byte(body))
		fe, ok := err.(*FieldError)
		if !ok || fe.Field != field {
			t.Errorf("%.80s: err %v, want a FieldError on %s", body, err, field)
		}
	}
}

// The schema and the decoder agree on traces too.
func TestTraceSchemaAgreesWithDecoder(t *testing.T) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("envelope.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("envelope.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{
		`{"kind":"k","trace":{"traceparent":"` + testParent + `"}}`,
		`{"kind":"k","trace":{"traceparent":"` + testParent + `","tracestate":"a=b,c=d"}}`,
		`{"kind":"k","trace":{}}`,
		`{"kind":"k","trace":{"traceparent":"nope"}}`,
		`{"kind":"k","trace":{"traceparent":"` + testParent + `","other":"x"}}`,
		`{"kind":"k","trace":{"traceparent":"` + testParent + `","tracestate":"` + strings.Repeat("a", MaxTraceStateBytes+1) + `"}}`,
		`{"kind":"k","trace":{"traceparent":"` + testParent + `","tracestate":"a=\t"}}`,
	} {
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		schemaOK := sch.Validate(inst) == nil
		_, decErr := Decode([]byte(body))
		if schemaOK != (decErr == nil) {
			t.Errorf("%.90s: schema valid=%v, decoder err=%v", body, schemaOK, decErr)
		}
	}
}
