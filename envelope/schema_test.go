package envelope

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The schema and the Go decoder must agree on what is a valid envelope.
func TestSchemaAgreesWithDecoder(t *testing.T) {
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
		`{"kind":"k"}`,
		`{"kind":"k","args":[1,2],"job_id":"0192-abc","attempt":3,"max_attempts":5,"timeout_seconds":1.5}`,
		`{"kind":"k","enqueued_at":"2026-01-02T03:04:05Z","run_at":"2026-01-02T03:04:05.5+01:00"}`,
		`{"kind":"k","callback":{"url":"https://example.test/hook"},"meta":{"a":"b"}}`,
		`{"kind":"k","args_ref":{"container":"c","blob":"b","size":10}}`,
		`{"kind":"k","errors":[{"attempt":1,"at":"2026-01-01T00:00:00Z","error":"boom","class":"panic"}]}`,
		`{}`,
		`{"kind":"bad kind"}`,
		`{"kind":"k","attempt":0}`,
		`{"kind":"k","unknown":1}`,
		`{"kind":"k","version":2}`,
		`{"kind":"k","callback":{}}`,
		`{"kind":"k","job_id":"a/b"}`,
		`{"kind":"k","args_ref":{"container":"c"}}`,
	} {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		schemaOK := sch.Validate(inst) == nil
		_, decErr := Decode([]byte(body))
		// attempt 0 is accepted by the decoder as "absent" but the schema asks for >= 1;
		// that is the one deliberate leniency.
		if body == `{"kind":"k","attempt":0}` {
			if schemaOK || decErr != nil {
				t.Errorf("%s: schema ok=%v decoder err=%v", body, schemaOK, decErr)
			}
			continue
		}
		if schemaOK != (decErr == nil) {
			t.Errorf("%s: schema valid=%v, decoder err=%v", body, schemaOK, decErr)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(Schema, &m); err != nil {
		t.Fatal(err)
	}
}
