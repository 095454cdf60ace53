package funchost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nightshift-jobs/nightshift/internal/store"
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
	s      store.Queues
	queue  string
	poison string // "": the queue has no poison queue (§2.4)
	opts   QueueOptions
	log    *slog.Logger
}

// poller is the state of one listener's loop: the backoff, whether the last poll found
// messages, how many messages are in flight, and whether the queue exists.
type poller struct {
	ctx        context.Context
	bo         *backoff
	found      bool
	done       chan struct{} // one value per finished message
	processing int
	exists     int // 0 unknown, 1 yes, -1 no
}

// wait sleeps one backoff step; false when ctx ends first.
func (p *poller) wait() bool {
	d := p.bo.next(p.found)
	p.found = false
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// reap counts finished messages; with block it first waits for one.
func (p *poller) reap(block bool) {
	if block {
		<-p.done
		p.processing--
	}
	for {
		select {
		case <-p.done:
			p.processing--
		default:
			return
		}
	}
}

func (h *Host) runQueueListener(ctx, invCtx context.Context, inflight *sync.WaitGroup, fn *Function, fatal func(error)) {
	s, err := h.storageFor(fn.Trigger.Connection)
	if err != nil {
		fatal(err)
		return
	}
	l := &queueListener{h: h, fn: fn, s: s, queue: fn.queueName, poison: fn.poisonName, opts: h.cfg.Queues,
		log: h.log.With("function", fn.Name, "queue", fn.queueName)}
	l.log.Info("Queue listener started", "batchSize", l.opts.BatchSize, "newBatchThreshold", l.opts.NewBatchThreshold,
		"maxPollingInterval", l.opts.MaxPollingInterval, "visibilityTimeout", l.opts.VisibilityTimeout,
		"maxDequeueCount", l.opts.MaxDequeueCount, "base64", l.opts.Base64, "poisonQueue", fn.poisonName)
	p := &poller{
		ctx: ctx,
		bo:  &backoff{min: 100 * time.Millisecond, max: l.opts.MaxPollingInterval},
		// At most newBatchThreshold + batchSize messages are in flight, so finishing never blocks.
		done: make(chan struct{}, l.opts.NewBatchThreshold+l.opts.BatchSize+1),
	}
	for ctx.Err() == nil && l.poll(p, invCtx, inflight, fatal) {
	}
}

// poll is one turn of the loop (§2.2); false stops the listener.
func (l *queueListener) poll(p *poller, invCtx context.Context, inflight *sync.WaitGroup, fatal func(error)) bool {
	p.reap(false)
	ready, ok := l.checkExists(p, fatal)
	if !ok {
		return false
	}
	if !ready {
		return p.wait()
	}
	msgs, err := l.receive(p.ctx)
	if err != nil {
		return l.receiveFailed(p, err, fatal)
	}
	if len(msgs) == 0 {
		return p.wait()
	}
	for _, m := range msgs {
		p.processing++
		inflight.Add(1)
		go func() {
			defer func() { inflight.Done(); p.done <- struct{}{} }()
			l.process(invCtx, m)
		}()
	}
	p.found = true
	// Wait before the next poll while more than newBatchThreshold are in flight.
	for p.processing > l.opts.NewBatchThreshold {
		p.reap(true)
	}
	return true
}

// checkExists learns whether the queue exists when that is unknown. ready: receive now;
// ok false: stop the listener.
func (l *queueListener) checkExists(p *poller, fatal func(error)) (ready, ok bool) {
	if p.exists == 0 {
		_, err := l.s.Count(p.ctx, l.queue)
		switch {
		case err == nil:
			p.exists = 1
		case errors.Is(err, store.ErrNotFound):
			p.exists = -1
		case p.ctx.Err() != nil:
			return false, false
		case transientStorageError(err):
			l.log.Warn("Checking the queue failed; will retry", "error", err)
		default:
			fatal(fmt.Errorf("queue %s: %w (an unhandled storage error stops the host, §2.2)", l.fn.queueName, err))
			return false, false
		}
	}
	if p.exists != 1 {
		if p.exists == -1 {
			p.exists = 0 // re-check after the backoff
		}
		return false, true
	}
	return true, true
}

// receive takes up to batchSize messages with the receive visibility. A receive is not
// cancelled half-way by a stop: Azurite or Azure may already have hidden the messages,
// which would then stay invisible for the whole receive visibility. What arrives is
// processed under invCtx, like any in-flight work.
func (l *queueListener) receive(ctx context.Context) ([]store.Message, error) {
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer rcancel()
	return l.s.Receive(rctx, l.queue, l.opts.BatchSize, l.h.opts.ReceiveVisibility)
}

// receiveFailed handles a failed receive (§2.2): 404, 409 and 5xx back off; anything else
// (e.g. 403) stops the host. false stops the listener.
func (l *queueListener) receiveFailed(p *poller, err error, fatal func(error)) bool {
	if p.ctx.Err() != nil {
		return false
	}
	p.exists = 0
	if backsOff(err) {
		l.log.Warn("Receiving messages failed; backing off", "error", err)
		return p.wait()
	}
	fatal(fmt.Errorf("queue %s: receive: %w (an unhandled storage error stops the host, §2.2)", l.fn.queueName, err))
	return false
}

// backsOff reports the receive errors the listener waits out (§2.2): not found, the
// queue being deleted or disabled (conflict), and server errors or no answer.
func backsOff(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) || transientStorageError(err)
}

// completionCtx bounds the storage calls that finish a message, which must run even
// while the host shuts down.
func completionCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// popReceipt is a message's current pop receipt, replaced by each visibility renewal.
type popReceipt struct {
	mu sync.Mutex
	v  string
}

func (p *popReceipt) get() string { p.mu.Lock(); defer p.mu.Unlock(); return p.v }

func (p *popReceipt) set(v string) { p.mu.Lock(); p.v = v; p.mu.Unlock() }

// process handles one message (§2.3, §2.6).
func (l *queueListener) process(ctx context.Context, m store.Message) {
	id, text := m.ID, m.Text
	dequeueCount := m.DequeueCount
	log := l.log.With("messageId", id)
	pop := &popReceipt{v: m.PopReceipt}
	body, ok := l.begin(ctx, log, id, pop, text, dequeueCount)
	if !ok {
		return
	}
	stop := l.renew(ctx, log, id, pop, text)
	held := l.h.inflight.add(l, log, id, pop, text, stop)
	err := l.run(ctx, log, m, body)
	if !held.finish() {
		return // released at the drain deadline: the message is another consumer's now
	}
	stop()
	l.complete(ctx, log, id, pop.get(), text, dequeueCount, err)
}

// inflightSet is the queue messages a host is processing, so that Run can release them
// when they outlast the drain timeout (Options.ReleaseOnDrainTimeout).
type inflightSet struct {
	mu sync.Mutex
	m  map[*inflightMsg]struct{}
}

// inflightMsg is one message being processed: running until its invocation ends
// (finished) or the drain deadline releases it (released).
type inflightMsg struct {
	set       *inflightSet
	l         *queueListener
	log       *slog.Logger
	id, text  string
	pop       *popReceipt
	stopRenew func()

	mu    sync.Mutex
	state int // 0 running, 1 finished, 2 released
}

func (s *inflightSet) add(l *queueListener, log *slog.Logger, id string, pop *popReceipt, text string, stopRenew func()) *inflightMsg {
	m := &inflightMsg{set: s, l: l, log: log, id: id, text: text, pop: pop, stopRenew: stopRenew}
	s.mu.Lock()
	if s.m == nil {
		s.m = map[*inflightMsg]struct{}{}
	}
	s.m[m] = struct{}{}
	s.mu.Unlock()
	return m
}

func (s *inflightSet) remove(m *inflightMsg) {
	s.mu.Lock()
	delete(s.m, m)
	s.mu.Unlock()
}

// finish marks the message's invocation ended; false when the message was released
// first (then it must be neither deleted nor released again).
func (m *inflightMsg) finish() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == 2 {
		return false
	}
	m.state = 1
	m.set.remove(m)
	return true
}

// releaseAll makes every message still running visible again at once and reports how
// many it released. Their invocations keep running; whatever they do later leaves the
// messages alone.
func (s *inflightSet) releaseAll(ctx context.Context) int {
	s.mu.Lock()
	msgs := make([]*inflightMsg, 0, len(s.m))
	for m := range s.m {
		msgs = append(msgs, m)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for _, m := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if m.release(ctx) {
				mu.Lock()
				n++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return n
}

// release stops the visibility renewals and makes the message visible now, keeping its
// dequeue count; false when its invocation had already ended.
func (m *inflightMsg) release(ctx context.Context) bool {
	m.mu.Lock()
	if m.state != 0 {
		m.mu.Unlock()
		return false
	}
	m.state = 2
	m.set.remove(m)
	m.mu.Unlock()
	m.stopRenew()
	cctx, cancel := completionCtx(ctx)
	defer cancel()
	if _, err := m.l.s.Update(cctx, m.l.queue, m.id, m.pop.get(), m.text, 0); err != nil && !isGone(err) {
		m.log.Error("Releasing the message at the drain deadline failed; it reappears when its visibility expires", "error", err)
		return false
	}
	m.log.Warn("Released the message at the drain deadline; another consumer will take it")
	return true
}

// begin is BeginProcessing: a DequeueCount strictly greater than the maximum goes to
// poison without invoking the handler (without a poison queue the message is left
// invisible), and so does undecodable base64 (§2.6). It returns the message body.
func (l *queueListener) begin(ctx context.Context, log *slog.Logger, id string, pop *popReceipt, text string, dequeueCount int64) ([]byte, bool) {
	if dequeueCount > int64(l.opts.MaxDequeueCount) {
		if l.poison != "" {
			l.moveToPoison(ctx, log, id, pop.get(), text)
		}
		return nil, false
	}
	if !l.opts.Base64 {
		return []byte(text), true
	}
	b, ok := dotnetBase64(text)
	if !ok {
		// §2.6: undecodable base64 goes to poison at once, raw text unchanged; the
		// handler is never invoked.
		log.Warn(fmt.Sprintf("Message decoding has failed! Check MessageEncoding settings. MessageId=%s.", id))
		if l.poison != "" {
			l.moveToPoison(ctx, log, id, pop.get(), text)
		}
		return nil, false
	}
	return b, true
}

// renew renews the receive visibility at half of it while the function runs (§2.3). The
// returned function stops the renewals and waits for them to end.
func (l *queueListener) renew(ctx context.Context, log *slog.Logger, id string, pop *popReceipt, text string) func() {
	vis := l.h.opts.ReceiveVisibility
	stopRenew := make(chan struct{})
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		for {
			t := time.NewTimer(vis / 2)
			select {
			case <-stopRenew:
				t.Stop()
				return
			case <-t.C:
			}
			rctx, cancel := completionCtx(ctx)
			receipt, err := l.s.Update(rctx, l.queue, id, pop.get(), text, vis)
			cancel()
			if err != nil {
				if isGone(err) {
					log.Warn("Renewing the message visibility failed; stopped renewing", "error", err)
					return
				}
				log.Warn("Renewing the message visibility failed; will retry", "error", err)
				continue
			}
			pop.set(receipt)
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(stopRenew) })
		<-renewDone
	}
}

// run invokes the function for the message; nil means it succeeded.
func (l *queueListener) run(ctx context.Context, log *slog.Logger, m store.Message, body []byte) error {
	inv := l.payload(m, body)
	if !strings.EqualFold(l.fn.Trigger.DataType, "binary") && !utf8.Valid(body) {
		// §1.5: the string binding decodes strict UTF-8; the binding fails before the
		// handler is called, and the failure counts like any other.
		err := &InvocationError{Function: l.fn.Name, InvocationID: inv.id, Err: errors.New("the message is not valid UTF-8 and cannot be bound to a string (use dataType binary)")}
		log.Error(err.Error())
		return err
	}
	_, err := l.h.invoke(ctx, inv)
	return err
}

// complete is CompleteProcessing (§2.3, §2.5): delete on success; on failure poison when
// DequeueCount >= the maximum, else release the message with visibilityTimeout. Without a
// poison queue a failed message reappears when its visibility expires.
func (l *queueListener) complete(ctx context.Context, log *slog.Logger, id, pop, text string, dequeueCount int64, err error) {
	cctx, cancel := completionCtx(ctx)
	defer cancel()
	if err == nil {
		if derr := l.s.DeleteMessage(cctx, l.queue, id, pop); derr != nil && !isGone(derr) {
			log.Error("Deleting the completed message failed", "error", derr)
		}
		return
	}
	if l.poison == "" {
		return
	}
	if dequeueCount >= int64(l.opts.MaxDequeueCount) {
		l.moveToPoison(ctx, log, id, pop, text)
		return
	}
	_, uerr := l.s.Update(cctx, l.queue, id, pop, text, l.opts.VisibilityTimeout)
	if uerr != nil && !isGone(uerr) {
		log.Error("Releasing the failed message failed", "error", uerr)
	}
}

// moveToPoison copies the body verbatim to <queue>-poison as a new message (creating the
// queue on first use) and deletes the original (§2.4).
func (l *queueListener) moveToPoison(ctx context.Context, log interface{ Warn(string, ...any) }, id, pop, text string) {
	log.Warn(fmt.Sprintf("Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.", l.opts.MaxDequeueCount, l.fn.poisonName))
	cctx, cancel := completionCtx(ctx)
	defer cancel()
	_, err := l.s.Enqueue(cctx, l.poison, text, 0, 0)
	if errors.Is(err, store.ErrNotFound) {
		if cerr := l.s.CreateQueue(cctx, l.poison); cerr != nil {
			l.h.log.Error("Creating the poison queue failed", "queue", l.fn.poisonName, "error", cerr)
			return
		}
		_, err = l.s.Enqueue(cctx, l.poison, text, 0, 0)
	}
	if err != nil {
		l.h.log.Error("Copying the message to the poison queue failed; it will be retried when it reappears", "queue", l.fn.poisonName, "error", err)
		return
	}
	if err := l.s.DeleteMessage(cctx, l.queue, id, pop); err != nil && !isGone(err) {
		l.h.log.Error("Deleting the poisoned message failed", "error", err)
	}
}

// payload builds the invocation for a queue message (§1.4, §1.5).
func (l *queueListener) payload(m store.Message, body []byte) *invocation {
	fn := l.fn
	inv := l.h.newInvocation(fn, fmt.Sprintf("New queue message detected on '%s'.", fn.queueName))
	binaryType := strings.EqualFold(fn.Trigger.DataType, "binary")
	text := string(body)
	valid := utf8.Valid(body)
	bd := inv.bd
	if valid {
		bd.set("QueueTrigger", text)
	}
	bd.set("DequeueCount", m.DequeueCount)
	// A zero time is one the service did not report.
	exp := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	if !m.ExpirationTime.IsZero() {
		exp = m.ExpirationTime
	}
	bd.set("ExpirationTime", dateTimeOffset(exp.UTC()))
	bd.set("Id", m.ID)
	ins := l.h.now()
	if !m.InsertionTime.IsZero() {
		ins = m.InsertionTime
	}
	bd.set("InsertionTime", dateTimeOffset(ins.UTC()))
	if !m.NextVisible.IsZero() {
		bd.set("NextVisibleTime", dateTimeOffset(m.NextVisible.UTC()))
	}
	bd.set("PopReceipt", m.PopReceipt)
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
