package funchost

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"
)

// backoff is RandomizedExponentialBackoffStrategy with randomisation factor 0.2 (§2.2).
type backoff struct {
	min, max time.Duration
	k        int
	capped   bool
}

func (b *backoff) next(found bool) time.Duration {
	if found {
		// After a poll that found messages, the next empty poll waits the minimum and the
		// exponent is reset.
		b.k = 1
		b.capped = false
		return b.min
	}
	if b.k < 1 {
		b.k = 1
	}
	if b.capped {
		return b.max
	}
	f := 0.8 + 0.4*rand.Float64()
	d := b.min + time.Duration(f*float64(int64(1)<<(b.k-1))*float64(b.min))
	b.k++
	if d >= b.max || b.k > 40 {
		b.capped = true
		return b.max
	}
	return d
}

// queueListener is one queueTrigger function's polling loop (§2.2).
type queueListener struct {
	h      *Host
	fn     *Function
	q      *azqueue.QueueClient
	poison *azqueue.QueueClient // nil: the queue has no poison queue (§2.4)
	opts   QueueOptions

	poisonMu     sync.Mutex
	poisonExists bool
}

func (h *Host) runQueueListener(ctx, invCtx context.Context, inflight *sync.WaitGroup, fn *Function, fatal func(error)) {
	c, err := h.storageFor(fn.Trigger.Connection)
	if err != nil {
		fatal(err)
		return
	}
	l := &queueListener{h: h, fn: fn, q: c.Queue.NewQueueClient(fn.queueName), opts: h.cfg.Queues}
	if fn.poisonName != "" {
		l.poison = c.Queue.NewQueueClient(fn.poisonName)
	}
	log := h.log.With("function", fn.Name, "queue", fn.queueName)
	log.Info("Queue listener started", "batchSize", l.opts.BatchSize, "newBatchThreshold", l.opts.NewBatchThreshold,
		"maxPollingInterval", l.opts.MaxPollingInterval, "visibilityTimeout", l.opts.VisibilityTimeout,
		"maxDequeueCount", l.opts.MaxDequeueCount, "base64", l.opts.Base64, "poisonQueue", fn.poisonName)
	bo := &backoff{min: 100 * time.Millisecond, max: l.opts.MaxPollingInterval}
	found := false
	wait := func() bool {
		d := bo.next(found)
		found = false
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	// At most newBatchThreshold + batchSize messages are in flight, so finishing never blocks.
	done := make(chan struct{}, l.opts.NewBatchThreshold+l.opts.BatchSize+1)
	processing := 0
	reap := func(block bool) {
		for {
			if block {
				<-done
				processing--
				block = false
				continue
			}
			select {
			case <-done:
				processing--
			default:
				return
			}
		}
	}
	exists := 0 // 0 unknown, 1 yes, -1 no
	for ctx.Err() == nil {
		reap(false)
		if exists == 0 {
			_, err := l.q.GetProperties(ctx, nil)
			switch {
			case err == nil:
				exists = 1
			case isStatus(err, http.StatusNotFound):
				exists = -1
			case ctx.Err() != nil:
				return
			case transientStorageError(err):
				log.Warn("Checking the queue failed; will retry", "error", err)
			default:
				fatal(fmt.Errorf("queue %s: %w (an unhandled storage error stops the host, §2.2)", fn.queueName, err))
				return
			}
		}
		if exists != 1 {
			if exists == -1 {
				exists = 0 // re-check after the backoff
			}
			if !wait() {
				return
			}
			continue
		}
		// A receive is not cancelled half-way by a stop: Azurite or Azure may already have
		// hidden the messages, which would then stay invisible for the whole receive
		// visibility. What arrives is processed under invCtx, like any in-flight work.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		resp, err := l.q.DequeueMessages(rctx, &azqueue.DequeueMessagesOptions{
			NumberOfMessages:  to.Ptr(int32(l.opts.BatchSize)),
			VisibilityTimeout: to.Ptr(int32(h.opts.ReceiveVisibility / time.Second)),
		})
		rcancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			exists = 0
			// §2.2: 404, 409 and 5xx back off; anything else (e.g. 403) stops the host.
			if isStatus(err, http.StatusNotFound) || isStatus(err, http.StatusConflict) || transientStorageError(err) {
				log.Warn("Receiving messages failed; backing off", "error", err)
				if !wait() {
					return
				}
				continue
			}
			fatal(fmt.Errorf("queue %s: receive: %w (an unhandled storage error stops the host, §2.2)", fn.queueName, err))
			return
		}
		if len(resp.Messages) == 0 {
			if !wait() {
				return
			}
			continue
		}
		for _, m := range resp.Messages {
			processing++
			inflight.Add(1)
			go func() {
				defer func() { inflight.Done(); done <- struct{}{} }()
				l.process(invCtx, m)
			}()
		}
		found = true
		// Wait before the next poll while more than newBatchThreshold are in flight.
		for processing > l.opts.NewBatchThreshold {
			reap(true)
		}
	}
}

// transientStorageError reports 5xx responses and transport failures (no response).
func transientStorageError(err error) bool {
	var code int
	if isStatusFn(err, func(c int) bool { code = c; return true }) {
		return code >= 500
	}
	return true // no HTTP response: connection refused, timeout, …
}

// completionCtx bounds the storage calls that finish a message, which must run even
// while the host shuts down.
func completionCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// process handles one message (§2.3, §2.6).
func (l *queueListener) process(ctx context.Context, m *azqueue.DequeuedMessage) {
	h, fn := l.h, l.fn
	id, text := *m.MessageID, *m.MessageText
	dequeueCount := *m.DequeueCount
	log := h.log.With("function", fn.Name, "queue", fn.queueName, "messageId", id)
	var popMu sync.Mutex
	pop := *m.PopReceipt
	currentPop := func() string { popMu.Lock(); defer popMu.Unlock(); return pop }

	// BeginProcessing: DequeueCount strictly greater than the maximum → poison without
	// invoking the handler; without a poison queue the message is left invisible.
	if dequeueCount > int64(l.opts.MaxDequeueCount) {
		if l.poison != nil {
			l.moveToPoison(ctx, log, id, currentPop(), text)
		}
		return
	}
	body := []byte(text)
	if l.opts.Base64 {
		b, ok := dotnetBase64(text)
		if !ok {
			// §2.6: undecodable base64 goes to poison at once, raw text unchanged; the
			// handler is never invoked.
			log.Warn(fmt.Sprintf("Message decoding has failed! Check MessageEncoding settings. MessageId=%s.", id))
			if l.poison != nil {
				l.moveToPoison(ctx, log, id, currentPop(), text)
			}
			return
		}
		body = b
	}

	// Renew the receive visibility at half of it while the function runs (§2.3).
	stopRenew := make(chan struct{})
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		every := h.opts.ReceiveVisibility / 2
		for {
			t := time.NewTimer(every)
			select {
			case <-stopRenew:
				t.Stop()
				return
			case <-t.C:
			}
			rctx, cancel := completionCtx(ctx)
			resp, err := l.q.UpdateMessage(rctx, id, currentPop(), text, &azqueue.UpdateMessageOptions{VisibilityTimeout: to.Ptr(int32(h.opts.ReceiveVisibility / time.Second))})
			cancel()
			if err != nil {
				if isStatus(err, 400) || isStatus(err, 404) || isStatus(err, 409) {
					log.Warn("Renewing the message visibility failed; stopped renewing", "error", err)
					return
				}
				log.Warn("Renewing the message visibility failed; will retry", "error", err)
				continue
			}
			popMu.Lock()
			pop = *resp.PopReceipt
			popMu.Unlock()
		}
	}()

	inv := l.payload(m, body)
	var err error
	if !strings.EqualFold(fn.Trigger.DataType, "binary") && !utf8.Valid(body) {
		// §1.5: the string binding decodes strict UTF-8; the binding fails before the
		// handler is called, and the failure counts like any other.
		err = &InvocationError{Function: fn.Name, InvocationID: inv.id, Err: errors.New("the message is not valid UTF-8 and cannot be bound to a string (use dataType binary)")}
		log.Error(err.Error())
	} else {
		_, err = h.invoke(ctx, inv)
	}
	close(stopRenew)
	<-renewDone

	cctx, cancel := completionCtx(ctx)
	defer cancel()
	if err == nil {
		// §2.5: delete with the current pop receipt; 400/404/409 are ignored.
		if _, derr := l.q.DeleteMessage(cctx, id, currentPop(), nil); derr != nil && !isStatus(derr, 400) && !isStatus(derr, 404) && !isStatus(derr, 409) {
			log.Error("Deleting the completed message failed", "error", derr)
		}
		return
	}
	if l.poison == nil {
		return // §2.3: no poison queue: the message reappears when its visibility expires
	}
	if dequeueCount >= int64(l.opts.MaxDequeueCount) {
		l.moveToPoison(ctx, log, id, currentPop(), text)
		return
	}
	_, uerr := l.q.UpdateMessage(cctx, id, currentPop(), text, &azqueue.UpdateMessageOptions{VisibilityTimeout: to.Ptr(int32(l.opts.VisibilityTimeout / time.Second))})
	if uerr != nil && !isStatus(uerr, 400) && !isStatus(uerr, 404) && !isStatus(uerr, 409) {
		log.Error("Releasing the failed message failed", "error", uerr)
	}
}

// moveToPoison copies the body verbatim to <queue>-poison as a new message (creating the
// queue on first use) and deletes the original (§2.4).
func (l *queueListener) moveToPoison(ctx context.Context, log interface{ Warn(string, ...any) }, id, pop, text string) {
	log.Warn(fmt.Sprintf("Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.", l.opts.MaxDequeueCount, l.fn.poisonName))
	cctx, cancel := completionCtx(ctx)
	defer cancel()
	_, err := l.poison.EnqueueMessage(cctx, text, nil)
	if isStatus(err, http.StatusNotFound) {
		if _, cerr := l.poison.Create(cctx, nil); cerr != nil && !isStatus(cerr, http.StatusConflict) {
			l.h.log.Error("Creating the poison queue failed", "queue", l.fn.poisonName, "error", cerr)
			return
		}
		_, err = l.poison.EnqueueMessage(cctx, text, nil)
	}
	if err != nil {
		l.h.log.Error("Copying the message to the poison queue failed; it will be retried when it reappears", "queue", l.fn.poisonName, "error", err)
		return
	}
	if _, err := l.q.DeleteMessage(cctx, id, pop, nil); err != nil && !isStatus(err, 400) && !isStatus(err, 404) && !isStatus(err, 409) {
		l.h.log.Error("Deleting the poisoned message failed", "error", err)
	}
}

// payload builds the invocation for a queue message (§1.4, §1.5).
func (l *queueListener) payload(m *azqueue.DequeuedMessage, body []byte) *invocation {
	fn := l.fn
	inv := l.h.newInvocation(fn, fmt.Sprintf("New queue message detected on '%s'.", fn.queueName))
	binaryType := strings.EqualFold(fn.Trigger.DataType, "binary")
	text := string(body)
	valid := utf8.Valid(body)
	bd := inv.bd
	if valid {
		bd.set("QueueTrigger", text)
	}
	bd.set("DequeueCount", *m.DequeueCount)
	exp := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	if m.ExpirationTime != nil {
		exp = *m.ExpirationTime
	}
	bd.set("ExpirationTime", dateTimeOffset(exp.UTC()))
	bd.set("Id", *m.MessageID)
	ins := l.h.now()
	if m.InsertionTime != nil {
		ins = *m.InsertionTime
	}
	bd.set("InsertionTime", dateTimeOffset(ins.UTC()))
	if m.TimeNextVisible != nil {
		bd.set("NextVisibleTime", dateTimeOffset(m.TimeNextVisible.UTC()))
	}
	bd.set("PopReceipt", *m.PopReceipt)
	bd.set("sys", inv.sys)
	if binaryType {
		// dataType binary: the trigger value is byte[], a single base64 string, and JSON
		// properties are not added (§1.5).
		inv.data[fn.Trigger.Name] = marshalJSON(body)
	} else {
		inv.data[fn.Trigger.Name] = doubleEncode(text)
		messageProperties(bd, text)
	}
	return inv
}
