package hostproto

import (
	"bytes"
	"os"
	"testing"
)

// FuzzDecodeRequest: no request body panics the decoders. Seed corpus:
// testdata/fuzz/FuzzDecodeRequest plus the contract examples.
func FuzzDecodeRequest(f *testing.F) {
	for _, name := range []string{"testdata/queue-request.json", "testdata/timer-request.json"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"Data":{"message":"aGVsbG8="},"Metadata":{"DequeueCount":"x"}}`))
	f.Add([]byte(`{"Data":{"message":{"a":1}},"Metadata":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeRequest(bytes.NewReader(body))
		if err != nil {
			return
		}
		for k := range req.Data {
			_, _ = req.QueueMessage(k)
			_, _ = req.Timer(k)
		}
		_, _ = req.QueueMetadata()
		for k := range req.Metadata {
			_ = req.MetaString(k)
		}
	})
}
