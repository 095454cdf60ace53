package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/httpapi"
	"github.com/nightshift-jobs/nightshift/schedule"
	"github.com/nightshift-jobs/nightshift/storage"
)

// The dashboard mounted in a Functions app (Feature): one HTTP-trigger function with
// authLevel function, so the host checks a function key on every request.
const (
	// FunctionName is the function's name (functions/Dashboard).
	FunctionName = "Dashboard"
	// FunctionRoute is its route below the host's route prefix: /api/ui and everything
	// under it.
	FunctionRoute = "ui/{*path}"
	// DefaultFunctionPrefix is where the function's pages are with the host's default
	// route prefix ("api").
	DefaultFunctionPrefix = "/api/ui"
	// FunctionKeyParam is the query parameter the host reads a function key from.
	FunctionKeyParam = "code"
)

// maxFunctionBody bounds a form posted to the mounted dashboard.
const maxFunctionBody = 1 << 20

// Feature returns the app feature that mounts the dashboard as the Dashboard function
// (GET and POST on /api/ui/…, authLevel function). The host sends each request
// JSON-wrapped (enableForwardingHttpRequest false, docs/host-contract.md §1.7); the
// function unwraps it into an http.Request for Handler and wraps the answer back. The
// host has checked the function key already, so the dashboard runs with KeyParam "code":
// it is opened with ?code=<function key>, carries the key through every link, form,
// asset and redirect, and asks for no token (docs/dashboard.md).
//
// Unset options default to the app's: Kinds and Limits its registry's, Logger its logger, Getenv
// its settings, Recurring schedule.Builtin(), Secrets the key and SAS of its storage
// connection string, Prefix DefaultFunctionPrefix (set it when host.json changes the
// route prefix), SecureCookie true. Token and KeyParam are ignored.
func Feature(opts *Options) nightshift.Feature {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	return nightshift.FeatureFunc(func(app *nightshift.App) error {
		if o.Kinds == nil {
			o.Kinds = app.Registry().Kinds
		}
		if o.Limits == nil {
			o.Limits = app.Registry().Limits
		}
		if o.Logger == nil {
			o.Logger = app.Logger()
		}
		if o.Getenv == nil {
			o.Getenv = app.Getenv
		}
		if o.Recurring == nil {
			o.Recurring = schedule.Builtin()
		}
		if o.Secrets == nil {
			o.Secrets = ConnectionSecrets(app.Getenv(storage.SettingStorage))
		}
		if o.Prefix == "" {
			o.Prefix = DefaultFunctionPrefix
		}
		o.Token, o.KeyParam, o.SecureCookie = "", FunctionKeyParam, true
		return app.AddFunction(nightshift.FunctionSpec{Name: FunctionName, Trigger: nightshift.TriggerHTTP,
			Route: FunctionRoute, Methods: []string{"get", "post"}, Serve: Function(Handler(app.Client(), o))})
	})
}

// ConnectionSecrets returns the account key and SAS of a connection string (none when it
// does not parse), for Options.Secrets.
func ConnectionSecrets(conn string) []string {
	kv, err := storage.ParseConnectionString(conn)
	if err != nil {
		return nil
	}
	var out []string
	for k, v := range kv {
		if strings.EqualFold(k, "AccountKey") || strings.EqualFold(k, "SharedAccessSignature") {
			out = append(out, v)
		}
	}
	return out
}

// Function serves an http.Handler as a JSON-wrapped HTTP-trigger function: Data.req (the
// request object of §1.7) becomes an http.Request, and the handler's answer goes back in
// Outputs.res. A body that is not UTF-8 cannot travel in the host's text output and is
// answered 502 instead. The invocation's log line names the method, the path (never the
// query, which carries the key) and the status.
func Function(h http.Handler) nightshift.FunctionFunc {
	return func(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
		req, err := unwrapRequest(ctx, inv)
		if err != nil {
			return nil, err
		}
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, req)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		body := rec.body.String()
		if !utf8.ValidString(body) {
			status, body = http.StatusBadGateway, "this answer is binary, which the Functions host's HTTP output cannot carry; download it with the CLI (nightshift result <job id>)"
			rec.header = http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "Cache-Control": {"no-store"}}
		}
		headers := map[string]string{}
		for k, v := range rec.header {
			headers[k] = strings.Join(v, ", ")
		}
		return &hostproto.InvokeResponse{
			Outputs: map[string]any{httpapi.ResponseBinding: httpapi.Response{StatusCode: strconv.Itoa(status), Headers: headers, Body: body}},
			Logs:    []string{fmt.Sprintf("%s %s: %d", req.Method, req.URL.Path, status)},
		}, nil
	}
}

// unwrapRequest builds the http.Request of a JSON-wrapped invocation.
func unwrapRequest(ctx context.Context, inv *nightshift.Invocation) (*http.Request, error) {
	raw, ok := inv.Request.Data[httpapi.RequestBinding]
	if !ok {
		return nil, &hostproto.RequestError{Problem: fmt.Sprintf("Data has no %q binding", httpapi.RequestBinding)}
	}
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '"' {
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return nil, &hostproto.RequestError{Problem: "Data.req is not a request object: " + err.Error()}
		}
		raw = json.RawMessage(s)
	}
	var wr httpapi.Request
	if err := json.Unmarshal(raw, &wr); err != nil {
		return nil, &hostproto.RequestError{Problem: "Data.req is not a request object {Url, Method, Headers, Body}: " + err.Error()}
	}
	u, err := url.Parse(wr.URL)
	if err != nil || u.Host == "" {
		return nil, &hostproto.RequestError{Problem: "Data.req.Url is not an absolute URL"}
	}
	body := wr.BodyBytes()
	if len(body) > maxFunctionBody {
		return nil, &hostproto.RequestError{Problem: fmt.Sprintf("the request body is %d bytes; at most %d", len(body), maxFunctionBody)}
	}
	req, err := http.NewRequestWithContext(ctx, strings.ToUpper(wr.Method), u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, &hostproto.RequestError{Problem: "Data.req: " + err.Error()}
	}
	for k, v := range wr.Headers {
		var one string
		var many []string
		switch {
		case json.Unmarshal(v, &one) == nil:
			req.Header.Add(k, one)
		case json.Unmarshal(v, &many) == nil:
			for _, s := range many {
				req.Header.Add(k, s)
			}
		}
	}
	req.Host = u.Host
	req.RequestURI = u.RequestURI()
	return req, nil
}

// recorder collects a handler's answer.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
