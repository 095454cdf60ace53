package azure_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/store/azure"
)

// driverAt returns the driver over an account at url, with retries off.
func driverAt(t *testing.T, url string) *azure.Store {
	t.Helper()
	co := azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}
	q, err := azqueue.NewServiceClientWithNoCredential(url, &azqueue.ClientOptions{ClientOptions: co})
	if err != nil {
		t.Fatal(err)
	}
	b, err := azblob.NewClientWithNoCredential(url, &azblob.ClientOptions{ClientOptions: co})
	if err != nil {
		t.Fatal(err)
	}
	return azure.New(q, b, nil)
}

// TestUnavailable: server errors and no answer map onto store.ErrUnavailable (the local
// host's queue listener retries on it); a refusal such as 403 does not.
func TestUnavailable(t *testing.T) {
	status := func(code int) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("x-ms-error-code", http.StatusText(code))
			w.WriteHeader(code)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		name, url   string
		unavailable bool
	}{
		{"500", status(http.StatusInternalServerError), true},
		{"503", status(http.StatusServiceUnavailable), true},
		{"no answer", closed, true},
		{"403", status(http.StatusForbidden), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := driverAt(t, tc.url)
			ctx := context.Background()
			_, qerr := s.Count(ctx, "jobs")
			_, _, berr := s.Get(ctx, "results", "b", 0)
			for _, err := range []error{qerr, berr} {
				if err == nil {
					t.Fatal("want an error")
				}
				if got := errors.Is(err, store.ErrUnavailable); got != tc.unavailable {
					t.Errorf("errors.Is(%v, ErrUnavailable) = %v, want %v", err, got, tc.unavailable)
				}
			}
		})
	}
}
