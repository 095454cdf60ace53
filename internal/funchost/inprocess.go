package funchost

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
)

// inProcessBase is the base URL of invocations served by Options.Handler.
const inProcessBase = "http://in-process"

// inProcessTransport hands each request to an http.Handler in this process, as if it had
// come over a connection: the same host-shaped request, headers and body. A request whose
// context ends first returns the context's error while the handler goes on (as a
// cancelled HTTP call to a child process does).
type inProcessTransport struct {
	h http.Handler
}

// RoundTrip implements http.RoundTripper.
func (t inProcessTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	type answer struct {
		resp *http.Response
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		rec := &bufferedResponse{header: http.Header{}}
		err := serveRecovered(t.h, rec, req)
		done <- answer{rec.response(req), err}
	}()
	select {
	case a := <-done:
		return a.resp, a.err
	case <-req.Context().Done():
		return nil, context.Cause(req.Context())
	}
}

// serveRecovered runs h, turning a panic into an error (a handler process would have
// crashed or answered 500; the invocation fails either way).
func serveRecovered(h http.Handler, w http.ResponseWriter, req *http.Request) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("the in-process handler panicked: %v", v)
		}
	}()
	sreq := req.Clone(req.Context())
	sreq.RequestURI = req.URL.RequestURI()
	sreq.RemoteAddr = "in-process"
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	h.ServeHTTP(w, sreq)
	return nil
}

// bufferedResponse is the http.ResponseWriter an in-process invocation writes to.
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}

func (b *bufferedResponse) response(req *http.Request) *http.Response {
	code := b.code
	if code == 0 {
		code = http.StatusOK
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", code, http.StatusText(code)), StatusCode: code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: b.header, Body: io.NopCloser(bytes.NewReader(b.body.Bytes())),
		ContentLength: int64(b.body.Len()), Request: req,
	}
}
