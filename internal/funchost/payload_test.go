package funchost

import (
	"encoding/json"
	"testing"
	"time"
)

func TestPayload_1_4_1_Encoding(t *testing.T) {
	cases := []struct {
		in   any
		want string
	}{
		{"hello", `"\"hello\""`},
		{int64(1), `"1"`},
		{"a<b>&c", `"\"a<b>&c\""`},
		{dateTimeOffset(time.Date(2019, 10, 9, 17, 58, 31, 999, time.UTC)), `"2019-10-09T17:58:31+00:00"`},
		{json.RawMessage(`{"a":1}`), `{"a":1}`},
		{[]byte("hi"), `"aGk="`},
	}
	for _, c := range cases {
		got, ok := encodeValue(c.in)
		if !ok || string(got) != c.want {
			t.Errorf("encodeValue(%#v) = %s, want %s", c.in, got, c.want)
		}
	}
	if _, ok := encodeValue(nil); ok {
		t.Error("null values must be left out")
	}
	if got := formatUtcNow(time.Date(2024, 5, 1, 10, 0, 5, 123456789, time.UTC)); got != "2024-05-01T10:00:05.1234567Z" {
		t.Errorf("UtcNow %s", got)
	}
	if got := formatNewtonsoftDate(time.Date(2024, 5, 1, 10, 10, 0, 12345600, time.UTC)); got != "2024-05-01T10:10:00.0123456+00:00" {
		t.Errorf("status date %s", got)
	}
	if got := formatNewtonsoftDate(time.Date(2024, 5, 1, 10, 15, 0, 0, time.UTC)); got != "2024-05-01T10:15:00+00:00" {
		t.Errorf("status date %s", got)
	}
}

func TestPayload_1_5_MessageProperties(t *testing.T) {
	d := newBindingData()
	d.set("Id", "real")
	d.set("DequeueCount", int64(1))
	messageProperties(d, ` {"ID":"mine","n":10,"big":12345678901234567890,"f":2.50,"e":1e21,"b":false,"s":"x","o":{"k":[1]},"a":[1],"z":null} `)
	md := d.metadata()
	want := map[string]string{"Id": `"\"mine\""`, "n": `"\"10\""`, "big": `"\"12345678901234567890\""`, "f": `"\"2.5\""`, "e": `"\"1E+21\""`, "b": `"\"False\""`, "s": `"\"x\""`, "o": `{"k":[1]}`, "DequeueCount": `"1"`}
	for k, v := range want {
		if string(md[k]) != v {
			t.Errorf("Metadata.%s = %s, want %s", k, md[k], v)
		}
	}
	for _, k := range []string{"ID", "a", "z"} {
		if _, ok := md[k]; ok {
			t.Errorf("Metadata.%s present", k)
		}
	}
	// Not an object, or not valid JSON: nothing added.
	for _, text := range []string{`[1,2]`, `{"a":1`, `{"a":1} {"b":2}`, `plain`} {
		d := newBindingData()
		messageProperties(d, text)
		if len(d.keys) != 0 {
			t.Errorf("%q added %v", text, d.keys)
		}
	}
}

func TestPayload_DotnetBase64(t *testing.T) {
	for in, ok := range map[string]bool{"": true, "aGk=": true, "aGk": false, "a===": false, "aG k=": true, "aGk=\n": true, "a-b_": false, "QR==": true, "test": true} {
		if _, got := dotnetBase64(in); got != ok {
			t.Errorf("dotnetBase64(%q) ok=%v, want %v", in, got, ok)
		}
	}
}
