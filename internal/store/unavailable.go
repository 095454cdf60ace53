package store

import "errors"

// ErrUnavailable: the service could not be reached (no answer: connection refused, a
// timeout) or answered with a server error (5xx). The failure may pass; callers that
// poll, like the local host's queue listener, wait and retry on it and stop on the other
// errors. The memory driver never returns it.
var ErrUnavailable = errors.New("service unavailable")
