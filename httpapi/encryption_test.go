package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/seal"
	"github.com/nightshift-jobs/nightshift/storage"
)

// With an encryption key configured, the API seals the plain args a producer in any
// language posts, and answers the status with the result and logs opened; the raw queue
// message and blobs hide them (docs/encryption.md).
func TestAPISealsArgsAndReturnsPlainResults(t *testing.T) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	e := newEnv(t, seal.SettingLocalKeys, "k1:"+base64.StdEncoding.EncodeToString(key))
	const marker = "MARKER-api-5d1e-SENSITIVE"
	ctx := context.Background()
	for _, body := range []string{
		`{"kind":"test.echo","job_id":"api-inline","args":{"text":"` + marker + `"}}`,
		`{"kind":"test.echo","job_id":"api-blob","args":{"text":"` + marker + `","repeat":2000}}`,
	} {
		if r := e.enqueue(body); r.status != http.StatusAccepted {
			t.Fatalf("enqueue: %d %s", r.status, r.body)
		}
	}
	peek, err := testenv.QueueService(e.store).NewQueueClient(e.store.Layout.JobsQueue()).PeekMessages(ctx, &azqueue.PeekMessagesOptions{NumberOfMessages: to.Ptr(int32(8))})
	if err != nil {
		t.Fatal(err)
	}
	if len(peek.Messages) != 2 {
		t.Fatalf("%d messages, want 2", len(peek.Messages))
	}
	for _, m := range peek.Messages {
		if strings.Contains(*m.MessageText, marker) || !strings.Contains(*m.MessageText, `"args_sealed"`) {
			t.Fatalf("queue message does not hide the args: %.300s", *m.MessageText)
		}
	}
	e.runJobs()
	raw := func(container, name string) []byte {
		t.Helper()
		resp, err := testenv.BlobService(e.store).DownloadStream(ctx, container, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	l := e.store.Layout
	for _, b := range [][]byte{
		raw(l.StatusContainer(), storage.StatusBlob("api-inline")),
		raw(l.StatusContainer(), storage.StatusBlob("api-blob")),
		raw(l.ResultsContainer(), storage.ResultBlob("api-blob")),
	} {
		if bytes.Contains(b, []byte(marker)) || !seal.IsSealed(b) {
			t.Fatalf("blob readable without the key: %.200q", b)
		}
	}
	var inline struct {
		State  string `json:"state"`
		Result struct {
			JSON map[string]string `json:"json"`
		} `json:"result"`
	}
	r := e.status("api-inline", "")
	if err := json.Unmarshal(r.body, &inline); err != nil || inline.State != "succeeded" || inline.Result.JSON["echo"] != marker {
		t.Fatalf("status api-inline: %d %s", r.status, r.body)
	}
	// A blob result is answered inline: a link would hand out ciphertext.
	var blob struct {
		Result struct {
			Bytes []byte `json:"bytes"`
			URL   string `json:"url"`
		} `json:"result"`
	}
	r = e.status("api-blob", "")
	if err := json.Unmarshal(r.body, &blob); err != nil || blob.Result.URL != "" || !bytes.HasPrefix(blob.Result.Bytes, []byte(marker+marker)) || len(blob.Result.Bytes) != 2000*len(marker) {
		t.Fatalf("status api-blob: %d %.300s", r.status, r.body)
	}
}
