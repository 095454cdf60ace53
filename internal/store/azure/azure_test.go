package azure_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/store/azure"
	"github.com/nightshift-jobs/nightshift/internal/store/storetest"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

// TestConformance runs the conformance suite against Azurite (failing, never skipping,
// under CI=true; see internal/testenv). The suite names its queues and containers with
// fresh random names and deletes them.
func TestConformance(t *testing.T) {
	c, err := storage.FromEnv(testenv.Env(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Store()
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		return storetest.Harness{Store: s, Sleep: time.Sleep}
	})
}

// TestReadURL fetches a blob through a signed read URL, without credentials.
func TestReadURL(t *testing.T) {
	c, err := storage.FromEnv(testenv.Env(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	q, b := c.Store().(*azure.Store).Services()
	unsigned := azure.New(q, b, nil)
	if _, err := unsigned.ReadURL(ctx, "abc", "x", time.Now(), time.Now().Add(time.Minute)); err == nil {
		t.Fatal("ReadURL without a shared key or user delegation signed a link")
	}
	s := c.Store().(*azure.Store) // signs with the account key of the connection string
	if s.SignsWith() != "shared-key" {
		t.Fatalf("clients from a connection string with a key sign with %q", s.SignsWith())
	}
	cont := testenv.Prefix(t) + "-links"
	if err := s.CreateContainer(ctx, cont); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.DeleteContainer(context.Background(), cont) })
	if _, err := s.Put(ctx, cont, "r/1", []byte("result"), store.PutOptions{ContentType: "text/plain"}); err != nil {
		t.Fatal(err)
	}
	u, err := s.ReadURL(ctx, cont, "r/1", time.Now().Add(-time.Minute), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "result" {
		t.Fatalf("GET signed URL: %s %q", resp.Status, body)
	}
	expired, err := s.ReadURL(ctx, cont, "r/1", time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	resp2, err := http.Get(expired)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusForbidden {
		t.Fatalf("GET expired URL: %s, want 403", resp2.Status)
	}
}

func TestEmulatorDetection(t *testing.T) {
	for u, want := range map[string]bool{
		"http://127.0.0.1:10000/devstoreaccount1/":             true,
		"http://localhost:10000/myaccount/":                    true,
		"http://[::1]:10000/acct/":                             true,
		"https://myaccount.blob.core.windows.net/":             false,
		"https://myaccount.privatelink.blob.core.windows.net/": false,
		"http://azurite:10000/devstoreaccount1/":               true,
	} {
		if got := azure.IsEmulator(u); got != want {
			t.Errorf("IsEmulator(%s) = %v, want %v", u, got, want)
		}
	}
}
