package funchost

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// routeSegment is one segment of an HTTP route template: a literal, or a {parameter}
// (optional with "?", catch-all with "*"; a ":constraint" is accepted and ignored).
type routeSegment struct {
	literal  string
	param    string
	optional bool
	catchAll bool
}

func (fn *Function) setupHTTP(cfg *HostConfig) error {
	tr := fn.Trigger
	route := strings.Trim(tr.Route, "/")
	if route == "" {
		route = fn.Name
	}
	for _, s := range strings.Split(route, "/") {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			p := s[1 : len(s)-1]
			seg := routeSegment{}
			if strings.HasPrefix(p, "*") {
				seg.catchAll = true
				p = p[1:]
			}
			if strings.HasSuffix(p, "?") {
				seg.optional = true
				p = strings.TrimSuffix(p, "?")
			}
			p, _, _ = strings.Cut(p, ":")
			if p == "" {
				return fmt.Errorf("route %q: empty parameter name", tr.Route)
			}
			seg.param = p
			fn.route = append(fn.route, seg)
			continue
		}
		if strings.ContainsAny(s, "{}") {
			return fmt.Errorf("route %q: a segment must be a literal or a whole {parameter}", tr.Route)
		}
		fn.route = append(fn.route, routeSegment{literal: s})
	}
	if len(tr.Methods) > 0 {
		fn.methods = map[string]bool{}
		for _, m := range tr.Methods {
			fn.methods[strings.ToUpper(m)] = true
		}
	}
	switch lvl := strings.ToLower(tr.AuthLevel); lvl {
	case "":
		fn.authLevel = "function" // the host's default
	case "anonymous", "function", "admin":
		fn.authLevel = lvl
	default:
		return fmt.Errorf("authLevel %q: expected anonymous, function or admin", tr.AuthLevel)
	}
	// §1.1: forwarding applies only to functions whose bindings are exactly one
	// httpTrigger in and one http out.
	if cfg.Handler.ForwardHTTP && len(fn.Bindings) == 2 {
		n := 0
		for _, b := range fn.Bindings {
			if strings.EqualFold(b.Type, "http") {
				n++
			}
		}
		fn.forwarded = n == 1
	}
	return nil
}

// match matches a request path (below the route prefix) against the route.
func (fn *Function) match(segs []string) (map[string]string, bool) {
	params := map[string]string{}
	i := 0
	for _, rs := range fn.route {
		switch {
		case rs.catchAll:
			params[rs.param] = strings.Join(segs[min(i, len(segs)):], "/")
			return params, true
		case i >= len(segs):
			if rs.param != "" && rs.optional {
				continue
			}
			return nil, false
		case rs.literal != "":
			if !strings.EqualFold(rs.literal, segs[i]) {
				return nil, false
			}
		default:
			params[rs.param] = segs[i]
		}
		i++
	}
	return params, i == len(segs)
}

func (h *Host) startHTTP(ctx, invCtx context.Context, fns []*Function) (*http.Server, error) {
	// Literal-heavy routes first, so "items/new" wins over "items/{id}".
	sort.SliceStable(fns, func(i, j int) bool { return literals(fns[i]) > literals(fns[j]) })
	ln, err := net.Listen("tcp", h.opts.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("HTTP triggers: listen on %s: %w", h.opts.HTTPAddr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.serveHTTP(invCtx, fns, w, r) }), ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()
	for _, fn := range fns {
		path := strings.Trim(h.cfg.RoutePrefix+"/"+strings.Trim(fn.Trigger.Route, "/"), "/")
		if fn.Trigger.Route == "" {
			path = strings.Trim(h.cfg.RoutePrefix+"/"+fn.Name, "/")
		}
		h.log.Info("HTTP function", "function", fn.Name, "url", base+"/"+path, "authLevel", fn.authLevel, "forwarded", fn.forwarded)
	}
	h.log.Info("HTTP functions with authLevel function or admin need the key (header x-functions-key or ?code=)", "setting", SettingFunctionKey, "key", h.key)
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), h.opts.DrainTimeout)
		_ = srv.Shutdown(sctx)
		c()
	}()
	return srv, nil
}

func literals(fn *Function) int {
	n := 0
	for _, s := range fn.route {
		if s.literal != "" {
			n++
		}
	}
	return n
}

func (h *Host) serveHTTP(ctx context.Context, fns []*Function, w http.ResponseWriter, r *http.Request) {
	p := strings.Trim(r.URL.Path, "/")
	if h.cfg.RoutePrefix != "" {
		if !strings.EqualFold(p, h.cfg.RoutePrefix) && !strings.HasPrefix(strings.ToLower(p), strings.ToLower(h.cfg.RoutePrefix)+"/") {
			http.NotFound(w, r)
			return
		}
		p = strings.Trim(p[len(h.cfg.RoutePrefix):], "/")
	}
	var segs []string
	if p != "" {
		segs = strings.Split(p, "/")
	}
	for _, fn := range fns {
		params, ok := fn.match(segs)
		if !ok || (fn.methods != nil && !fn.methods[r.Method]) {
			continue
		}
		if fn.authLevel != "anonymous" && !h.authorized(r) {
			http.Error(w, "Unauthorized: this function needs the key in the x-functions-key header or the code query parameter", http.StatusUnauthorized)
			return
		}
		if fn.forwarded {
			h.forward(ctx, fn, w, r)
		} else {
			h.invokeHTTP(ctx, fn, params, w, r)
		}
		return
	}
	http.NotFound(w, r)
}

func (h *Host) authorized(r *http.Request) bool {
	key := r.Header.Get("x-functions-key")
	if key == "" {
		key = r.URL.Query().Get("code")
	}
	return key != "" && subtle.ConstantTimeCompare([]byte(key), []byte(h.key)) == 1
}

// forward proxies the raw request to the handler at its original path (§1.1, §1.7): the
// handler's response, whatever its status, goes back unchanged.
func (h *Host) forward(ctx context.Context, fn *Function, w http.ResponseWriter, r *http.Request) {
	inv := h.newInvocation(fn, "This function was programmatically called via the host APIs.")
	start := time.Now()
	log := h.log.With("function", fn.Name, "invocationId", inv.id)
	log.Info(fmt.Sprintf("Executing 'Functions.%s' (Reason='%s', Id=%s)", fn.Name, inv.reason, inv.id))
	callCtx, cancel := ctx, context.CancelFunc(func() {})
	if t := h.cfg.FunctionTimeout; t > 0 {
		callCtx, cancel = context.WithTimeoutCause(ctx, t, errFunctionTimeout)
	}
	defer cancel()
	wk, err := h.workers.acquire(callCtx)
	var proxyErr error
	if err == nil {
		target, _ := url.Parse(wk.base)
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.URL.Path = r.URL.Path
				pr.Out.URL.RawPath = r.URL.RawPath
				pr.Out.Header.Set("X-Azure-Functions-InvocationId", inv.id)
				pr.Out.Header.Set("X-Azure-Functions-HostVersion", HostVersion)
			},
			Transport: h.workers.client.Transport,
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				proxyErr = err
				w.WriteHeader(http.StatusInternalServerError)
			},
		}
		rp.ServeHTTP(w, r.WithContext(callCtx))
		if proxyErr != nil {
			err = h.timeoutOr(callCtx, inv, wk, proxyErr)
		}
	} else {
		http.Error(w, "the handler is not available", http.StatusServiceUnavailable)
	}
	d := time.Since(start)
	if err != nil {
		log.Error(fmt.Sprintf("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)", fn.Name, inv.id, d.Milliseconds()), "outcome", "Failed", "duration", d, "error", err.Error())
		return
	}
	log.Info(fmt.Sprintf("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", fn.Name, inv.id, d.Milliseconds()), "outcome", "Succeeded", "duration", d)
}

// invokeHTTP is the JSON-wrapped mode (§1.7): Data.<req> is the request as an object,
// the response comes from the http output binding.
func (h *Host) invokeHTTP(ctx context.Context, fn *Function, params map[string]string, w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	inv := h.newInvocation(fn, "This function was programmatically called via the host APIs.")
	query := map[string]string{}
	for k, v := range r.URL.Query() {
		query[k] = strings.Join(v, ",")
	}
	headers := map[string][]string{}
	for k, v := range r.Header {
		headers[k] = v
	}
	scheme := "http"
	bodyText := string(body)
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/octet-stream" || strings.HasPrefix(mt, "multipart/") {
		bodyText = base64.StdEncoding.EncodeToString(body)
	}
	req := map[string]any{
		"Url":        scheme + "://" + r.Host + r.URL.RequestURI(),
		"Method":     r.Method,
		"Query":      query,
		"Headers":    headers,
		"Params":     params,
		"Identities": []any{},
		"Body":       bodyText,
	}
	inv.data[fn.Trigger.Name] = marshalJSON(req)
	for k, v := range query {
		inv.bd.set(k, v)
	}
	for k, v := range params {
		inv.bd.set(k, v)
	}
	inv.bd.set("Query", json.RawMessage(marshalJSON(query)))
	inv.bd.set("Headers", json.RawMessage(marshalJSON(flatten(headers))))
	inv.bd.set("sys", inv.sys)
	res, err := h.invoke(ctx, inv)
	if err != nil {
		http.Error(w, "function failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	var resName string
	for _, b := range fn.Bindings {
		if strings.EqualFold(b.Type, "http") {
			resName = b.Name
		}
	}
	raw, ok := outputValues(fn, res)[resName]
	if !ok || isNull(raw) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := writeHTTPOutput(w, raw); err != nil {
		h.log.Error("The http output could not be read", "function", fn.Name, "invocationId", inv.id, "error", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func flatten(hs map[string][]string) map[string]string {
	out := map[string]string{}
	for k, v := range hs {
		out[k] = strings.Join(v, ",")
	}
	return out
}

// writeHTTPOutput parses Outputs.<res> like HttpOutputBindingResponse: StatusCode (string
// or number), Status, Body, Headers, matched case-insensitively (§1.7).
func writeHTTPOutput(w http.ResponseWriter, raw json.RawMessage) error {
	if !isJSONObject(raw) {
		// The host re-parses value.ToString(); a JSON string holding an object works too.
		var s string
		if json.Unmarshal(raw, &s) != nil || !isJSONObject(json.RawMessage(s)) {
			return errors.New("the http output is not a JSON object {statusCode, body, headers}")
		}
		raw = json.RawMessage(s)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("the http output is not a JSON object: %w", err)
	}
	get := func(name string) json.RawMessage {
		for k, v := range m {
			if strings.EqualFold(k, name) {
				return v
			}
		}
		return nil
	}
	status := http.StatusOK
	for _, key := range []string{"StatusCode", "Status"} {
		v := get(key)
		if isNull(v) {
			continue
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			s = string(v)
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 100 || n > 999 {
			return fmt.Errorf("the http output %s %s is not an HTTP status code", key, v)
		}
		status = n
		break
	}
	if hv := get("Headers"); !isNull(hv) {
		var hs map[string]any
		if err := json.Unmarshal(hv, &hs); err != nil {
			return fmt.Errorf("the http output headers are not an object: %w", err)
		}
		for k, v := range hs {
			w.Header().Set(k, fmt.Sprint(v))
		}
	}
	var out []byte
	if bv := get("Body"); !isNull(bv) {
		var s string
		if json.Unmarshal(bv, &s) == nil {
			out = []byte(s)
		} else {
			out = compactJSON(bv)
		}
	}
	w.WriteHeader(status)
	_, err := w.Write(out)
	return err
}
