package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/netguard"
)

// SettingFetchAllowPrivate lets http_fetch call private, loopback and link-local
// addresses ("true"). Off by default: job args come from whoever can enqueue, and an
// unguarded fetch would let them reach internal services (SSRF). Even when on, the cloud
// metadata and platform endpoints (169.254.169.254, 168.63.129.16, fd00:ec2::254 and
// their IPv4-mapped forms) and every other special-purpose range stay refused (package
// netguard).
const SettingFetchAllowPrivate = "NIGHTSHIFT_FETCH_ALLOW_PRIVATE"

// HTTPFetchArgs asks for one HTTP call whose response is kept as the job's result: the
// typical "call a slow or flaky API in the background" job. 5xx, 429 and network errors
// are retried with backoff; other 4xx answers are permanent failures.
type HTTPFetchArgs struct {
	URL     string            `json:"url"`
	Method  string            `json:"method,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	// Body is sent as the request body (with the given headers' Content-Type).
	Body string `json:"body,omitempty"`
	// TimeoutSeconds bounds the call; default 30.
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
}

// Kind implements nightshift.JobArgs.
func (HTTPFetchArgs) Kind() string { return "http_fetch" }

// FetchResult is the http_fetch result.
type FetchResult struct {
	Status      int               `json:"status"`
	ContentType string            `json:"content_type,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	// Body is the response body: JSON as JSON, text as a string, anything else in
	// BodyBase64.
	Body       json.RawMessage `json:"body,omitempty"`
	BodyBase64 []byte          `json:"body_base64,omitempty"`
	Size       int             `json:"size"`
	ElapsedMS  int64           `json:"elapsed_ms"`
}

const maxFetchBody = 8 << 20

type httpFetchWorker struct {
	client *http.Client
}

// MaxFetchTimeoutSeconds bounds HTTPFetchArgs.TimeoutSeconds (the job's own timeout
// bounds the call too).
const MaxFetchTimeoutSeconds = 3600

func newHTTPFetchWorker(allowPrivate bool) *httpFetchWorker {
	return &httpFetchWorker{client: netguard.Client(allowPrivate, 0)}
}

// Work makes the call.
func (w *httpFetchWorker) Work(ctx context.Context, job *nightshift.Job[HTTPFetchArgs]) (any, error) {
	a := job.Args
	u, err := url.Parse(a.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nightshift.Permanentf("http_fetch: url %q is not an absolute http(s) URL", a.URL)
	}
	method := strings.ToUpper(a.Method)
	if method == "" {
		method = http.MethodGet
	}
	timeout := 30 * time.Second
	if err := envelope.CheckSeconds("args.timeout_seconds", a.TimeoutSeconds, MaxFetchTimeoutSeconds, "1 hour"); err != nil {
		return nil, nightshift.Permanentf("http_fetch: %w", err)
	}
	if a.TimeoutSeconds > 0 {
		timeout = time.Duration(a.TimeoutSeconds * float64(time.Second))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	if a.Body != "" {
		body = strings.NewReader(a.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, nightshift.Permanentf("http_fetch: %w", err)
	}
	for k, v := range a.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("User-Agent", "nightshift-http-fetch/1")
	job.Logger.Info("calling", "method", method, "url", redactURL(u))
	start := time.Now()
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, callError(err, method, u)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxFetchBody+1))
	if err != nil {
		return nil, fmt.Errorf("http_fetch: reading response: %w", err)
	}
	if len(data) > maxFetchBody {
		return nil, nightshift.Permanentf("http_fetch: response body is over %d bytes", maxFetchBody)
	}
	elapsed := time.Since(start)
	job.Logger.Info("response", "status", resp.StatusCode, "bytes", len(data), "elapsed_ms", elapsed.Milliseconds())
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, fmt.Errorf("http_fetch: %s answered %s (will retry)%s", redactURL(u), resp.Status, snippet(data))
	case resp.StatusCode >= 400:
		return nil, nightshift.Permanentf("http_fetch: %s answered %s%s", redactURL(u), resp.Status, snippet(data))
	}
	return newFetchResult(resp, data, elapsed), nil
}

// callError is the job's error for a call that got no response: permanent when the SSRF
// guard refused the address (with the setting that opens it, when one does).
func callError(err error, method string, u *url.URL) error {
	var re *netguard.RefusedError
	if errors.As(err, &re) {
		if re.Always {
			return nightshift.Permanent(fmt.Errorf("http_fetch: %w", re))
		}
		return nightshift.Permanent(fmt.Errorf("http_fetch: %w (set %s=true to allow)", re, SettingFetchAllowPrivate))
	}
	return fmt.Errorf("http_fetch: %s %s: %w", method, redactURL(u), err)
}

// newFetchResult keeps a successful response: JSON as JSON, text as a string, anything
// else as bytes.
func newFetchResult(resp *http.Response, data []byte, elapsed time.Duration) *FetchResult {
	res := &FetchResult{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Size: len(data), ElapsedMS: elapsed.Milliseconds(), Headers: map[string]string{}}
	for _, h := range []string{"Content-Type", "ETag", "Last-Modified", "Location"} {
		if v := resp.Header.Get(h); v != "" {
			res.Headers[h] = v
		}
	}
	mt, _, _ := mime.ParseMediaType(res.ContentType)
	switch {
	case (mt == "application/json" || strings.HasSuffix(mt, "+json")) && json.Valid(data):
		res.Body = data
	case (strings.HasPrefix(mt, "text/") || mt == "") && utf8.Valid(data):
		res.Body, _ = json.Marshal(string(data))
	default:
		res.BodyBase64 = data
	}
	return res
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	return c.String()
}

// MaxErrorBodyBytes bounds how much of a remote error response's body http_fetch puts
// into the job's error (last_error, visible to API callers and kept in dead letters):
// the first 64 characters, printable ASCII only (any other character, including
// newlines, becomes '?'), followed by "..." when the body was longer. A remote service's
// error page can carry tokens, internal host names or stack traces; 64 characters are
// enough to recognise the error, not to carry much of that.
const MaxErrorBodyBytes = 64

// snippet returns ": " and the start of body for an error message, cut to
// MaxErrorBodyBytes printable ASCII characters; "" for an empty body.
func snippet(body []byte) string {
	var b strings.Builder
	n := 0
	for _, r := range strings.TrimSpace(string(body)) {
		if n == MaxErrorBodyBytes {
			b.WriteString("...")
			break
		}
		if r < 0x20 || r > 0x7e {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	if b.Len() == 0 {
		return ""
	}
	return ": " + b.String()
}
