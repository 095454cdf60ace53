package funchost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

// invocation is one function execution.
type invocation struct {
	id     string
	fn     *Function
	reason string
	data   map[string]json.RawMessage
	bd     *bindingData
	sys    sysData
}

func (h *Host) newInvocation(fn *Function, reason string) *invocation {
	inv := &invocation{id: uuid.NewString(), fn: fn, reason: reason, data: map[string]json.RawMessage{}, bd: newBindingData()}
	inv.sys = newSys(fn.Name, h.now())
	return inv
}

// InvocationError is a failed invocation: which function, which invocation, and why.
type InvocationError struct {
	Function     string
	InvocationID string
	Err          error
}

func (e *InvocationError) Error() string {
	return fmt.Sprintf("Functions.%s (Id=%s): %v", e.Function, e.InvocationID, e.Err)
}

func (e *InvocationError) Unwrap() error { return e.Err }

// errFunctionTimeout marks a function timeout (§1.10).
var errFunctionTimeout = errors.New("function timeout")

// invoke calls the handler and binds the outputs; a nil error means the invocation
// succeeded (§2.3: a 2xx response with a parseable body and all outputs written). It logs
// one line when the invocation starts and one when it ends, like the host.
func (h *Host) invoke(ctx context.Context, inv *invocation) (*invokeResult, error) {
	start := time.Now()
	log := h.log.With("function", inv.fn.Name, "invocationId", inv.id)
	log.Info(fmt.Sprintf("Executing 'Functions.%s' (Reason='%s', Id=%s)", inv.fn.Name, inv.reason, inv.id))
	res, err := h.invokeCore(ctx, inv, log)
	d := time.Since(start)
	if err != nil {
		log.Error(fmt.Sprintf("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)", inv.fn.Name, inv.id, d.Milliseconds()),
			"outcome", "Failed", "duration", d, "error", err.Error())
		return res, &InvocationError{Function: inv.fn.Name, InvocationID: inv.id, Err: err}
	}
	log.Info(fmt.Sprintf("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", inv.fn.Name, inv.id, d.Milliseconds()),
		"outcome", "Succeeded", "duration", d)
	return res, nil
}

func (h *Host) invokeCore(ctx context.Context, inv *invocation, log interface {
	Info(string, ...any)
	Warn(string, ...any)
	Error(string, ...any)
}) (*invokeResult, error) {
	body := marshalJSON(invokeRequest{Data: inv.data, Metadata: inv.bd.metadata()})
	callCtx := ctx
	cancel := func() {}
	if t := h.cfg.FunctionTimeout; t > 0 {
		callCtx, cancel = context.WithTimeoutCause(ctx, t, errFunctionTimeout)
	}
	defer cancel()
	w, err := h.workers.acquire(callCtx)
	if err != nil {
		return nil, h.timeoutOr(callCtx, inv, nil, err)
	}
	req, err := http.NewRequestWithContext(callCtx, http.MethodPost, w.base+"/"+inv.fn.Name, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	// §1.4 headers.
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("X-Azure-Functions-InvocationId", inv.id)
	req.Header.Set("X-Azure-Functions-HostVersion", HostVersion)
	req.Header.Set("User-Agent", "Azure-Functions-Host/"+HostVersion)
	resp, err := h.workers.client.Do(req)
	if err != nil {
		return nil, h.timeoutOr(callCtx, inv, w, fmt.Errorf("POST /%s to the handler: %w", inv.fn.Name, err))
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, h.timeoutOr(callCtx, inv, w, fmt.Errorf("read the handler's response: %w", err))
	}
	// §1.8 step 1: any non-2xx fails the invocation; the body (and its Logs) is ignored.
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		//lint:ignore ST1005 the message the Functions host logs (§1.8 step 1); tests compare it
		return nil, fmt.Errorf("Response status code does not indicate success: %d (%s); the response body and its Logs are ignored", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	// §1.8 step 4. Deviation: the real host never completes an invocation whose 2xx
	// response has an empty body; it hangs until functionTimeout and then restarts the
	// handler [DERIVED]. The local host fails it at once, with a loud warning, so the bug
	// shows up in seconds instead of after the timeout.
	if len(bytes.TrimSpace(raw)) == 0 {
		log.Warn(fmt.Sprintf("HANDLER BUG: POST /%s answered %d with an empty body. The real Functions host would hang this invocation until functionTimeout (%s) and then restart the handler; answer {} with Content-Type: application/json instead. The local host fails the invocation now.", inv.fn.Name, resp.StatusCode, h.cfg.FunctionTimeout))
		return nil, fmt.Errorf("the handler answered %d with an empty body (the real host would hang until functionTimeout)", resp.StatusCode)
	}
	// §1.8 step 2: a body needs a JSON media type; no Content-Type counts as
	// application/octet-stream.
	ct := resp.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	if ct == "" {
		mt = "application/octet-stream"
	}
	if mt != "application/json" && mt != "text/json" {
		//lint:ignore ST1005 the message the Functions host logs (§1.8 step 2); tests compare it
		return nil, fmt.Errorf("Invalid HttpResponseMessage: No MediaTypeFormatter is available to read an object of type 'HttpScriptInvocationResult' from content with media type '%s' (set Content-Type: application/json)", mt)
	}
	var res invokeResult
	if err := json.Unmarshal(raw, &res); err != nil {
		// §1.8 step 3.
		//lint:ignore ST1005 the message the Functions host logs (§1.8 step 3); tests compare it
		return nil, fmt.Errorf("Invalid HttpResponseMessage: StatusCode: %d, body is not a valid invocation result: %v: %s", resp.StatusCode, err, truncate(raw, 512))
	}
	// §1.8 step 5: Logs only on 2xx, each at Information.
	for _, l := range res.logLines() {
		log.Info(l, "category", "Function."+inv.fn.Name+".User")
	}
	if err := h.bindOutputs(ctx, inv, &res); err != nil {
		return &res, err
	}
	return &res, nil
}

// timeoutOr turns a failure caused by the function timeout into the host's timeout error
// and restarts the handler (§1.10); other errors pass through.
func (h *Host) timeoutOr(callCtx context.Context, inv *invocation, w *worker, err error) error {
	if !errors.Is(context.Cause(callCtx), errFunctionTimeout) {
		return err
	}
	h.log.Error(fmt.Sprintf("A function timeout has occurred. Restarting worker process executing invocationId '%s'.", inv.id), "function", inv.fn.Name, "invocationId", inv.id)
	if w != nil {
		h.workers.restart(w)
	}
	//lint:ignore ST1005 the Functions host's own timeout message (§1.10), kept word for word
	return fmt.Errorf("Timeout value of %s exceeded by function 'Functions.%s' (Id: '%s'). Initiating cancellation: %w", h.cfg.FunctionTimeout, inv.fn.Name, inv.id, errFunctionTimeout)
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}

// outputValues returns the output values by binding name: Outputs matched
// case-sensitively (§1.8 step 6), then ReturnValue (§1.8 step 7): to a "$return" binding if
// declared, else, when it is a JSON object, each property copied into the outputs by name
// (overriding Outputs [DERIVED]).
func outputValues(fn *Function, res *invokeResult) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for k, v := range res.Outputs {
		out[k] = v
	}
	hasReturn := false
	for _, b := range fn.Bindings {
		if b.Name == "$return" {
			hasReturn = true
		}
	}
	if isNull(res.ReturnValue) {
		return out
	}
	if hasReturn {
		out["$return"] = res.ReturnValue
	} else if isJSONObject(res.ReturnValue) {
		var props map[string]json.RawMessage
		if json.Unmarshal(res.ReturnValue, &props) == nil {
			for k, v := range props {
				out[k] = v
			}
		}
	}
	return out
}

// bindOutputs writes every blob output binding (§1.8 step 8, §1.9). A failure fails the
// invocation; what was written before stays written.
func (h *Host) bindOutputs(ctx context.Context, inv *invocation, res *invokeResult) error {
	vals := outputValues(inv.fn, res)
	for _, b := range inv.fn.Bindings {
		if !strings.EqualFold(b.Type, "blob") || !strings.EqualFold(b.Direction, "out") {
			continue
		}
		v, ok := vals[b.Name]
		if !ok || isNull(v) {
			continue // §1.8 step 6: missing or null writes nothing
		}
		data, err := blobBytes(v, strings.EqualFold(b.DataType, "binary"))
		if err != nil {
			return fmt.Errorf("output binding %q: %w", b.Name, err)
		}
		path, err := resolveExpressions(b.Path, inv)
		if err != nil {
			return fmt.Errorf("output binding %q: %w", b.Name, err)
		}
		if err := h.writeBlob(ctx, b.Connection, path, data, inv.id); err != nil {
			return fmt.Errorf("output binding %q: write blob %s: %w", b.Name, path, err)
		}
	}
	return nil
}
