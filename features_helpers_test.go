package nightshift

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// featEnv is a handler with the given registry on a fresh Azurite prefix, and a pump that
// plays the host: it receives from every job and poison queue and invokes the matching
// function, deleting the message on success (docs/host-contract.md §2.3).
type featEnv struct {
	t      *testing.T
	store  *storage.Clients
	client *Client
	h      *Handler
	srv    *httptest.Server
}

func newFeatEnv(t *testing.T, reg *Registry, opts *HandlerOptions) *featEnv {
	t.Helper()
	fe := &featEnv{t: t, store: testenv.Clients(t)}
	if opts == nil {
		opts = &HandlerOptions{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	fe.h = NewHandler(reg, fe.store, opts)
	fe.srv = httptest.NewServer(fe.h)
	t.Cleanup(fe.srv.Close)
	fe.client = NewClient(fe.store, nil)
	return fe
}

func (fe *featEnv) functions() map[string]string {
	l := fe.store.Layout
	return map[string]string{
		l.HighQueue(): FunctionRunJobHigh, l.JobsQueue(): FunctionRunJob, l.LowQueue(): FunctionRunJobLow,
		l.PoisonQueue(l.HighQueue()): FunctionRunDeadLetterHigh, l.PoisonQueue(l.JobsQueue()): FunctionRunDeadLetter,
		l.PoisonQueue(l.LowQueue()): FunctionRunDeadLetterLow,
	}
}

// invokeMessage delivers one received message to function and deletes it on a 2xx.
func (fe *featEnv) invokeMessage(ctx context.Context, queue, function string, m *azqueue.DequeuedMessage) int {
	body := hostRequest(fe.t, function, []byte(*m.MessageText), hostMeta{ID: *m.MessageID, DequeueCount: int(*m.DequeueCount), Inserted: *m.InsertionTime})
	// In-flight invocations finish even when the pump stops (the host drains too).
	req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, fe.srv.URL+"/"+function, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fe.t.Logf("invoke %s: %v", function, err)
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	q := testenv.QueueService(fe.store).NewQueueClient(queue)
	if resp.StatusCode/100 == 2 {
		_, _ = q.DeleteMessage(context.Background(), *m.MessageID, *m.PopReceipt, nil)
	} else {
		_, _ = q.UpdateMessage(context.Background(), *m.MessageID, *m.PopReceipt, *m.MessageText, &azqueue.UpdateMessageOptions{VisibilityTimeout: to.Ptr(int32(1))})
	}
	return resp.StatusCode
}

// pump delivers messages from every queue, at most conc at once, until ctx ends.
func (fe *featEnv) pump(ctx context.Context, conc int) {
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	defer wg.Wait()
	fns := fe.functions()
	for ctx.Err() == nil {
		found := false
		for queue, fn := range fns {
			if ctx.Err() != nil {
				break
			}
			// The receive is never cancelled half-way: a cancelled request that Azurite
			// has already served would hide its messages for the whole visibility timeout.
			resp, err := testenv.QueueService(fe.store).NewQueueClient(queue).DequeueMessages(context.WithoutCancel(ctx), &azqueue.DequeueMessagesOptions{
				NumberOfMessages: to.Ptr(int32(conc)), VisibilityTimeout: to.Ptr(int32(60))})
			if err != nil {
				continue
			}
			for _, m := range resp.Messages {
				found = true
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					fe.invokeMessage(ctx, queue, fn, m)
				}()
			}
		}
		if !found {
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// runUntil pumps until cond holds, failing the test after timeout.
func (fe *featEnv) runUntil(timeout time.Duration, what string, cond func() bool) {
	fe.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { fe.pump(ctx, 8); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			fe.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (fe *featEnv) statusOf(id string) *record.Status {
	st, _, err := fe.store.GetStatus(context.Background(), id)
	if err != nil {
		return nil
	}
	return st
}

func (fe *featEnv) ended(id string) bool {
	st := fe.statusOf(id)
	return st != nil && st.State.Terminal()
}
