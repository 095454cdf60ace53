package ui

import (
	"bytes"
	"context"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// keyCtx is the context key of a request's checked key (Options.KeyParam).
type keyCtx struct{}

// keyOf returns the key a request came with, or "".
func keyOf(r *http.Request) string {
	k, _ := r.Context().Value(keyCtx{}).(string)
	return k
}

// takeKey moves the key out of the request's query into its context, so that no page
// sees it (nor copies it into a link of its own) and only carryKey puts it back. A
// request without the key is refused.
func (s *server) takeKey(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	q := r.URL.Query()
	key := q.Get(s.opts.KeyParam)
	if key == "" {
		http.Error(w, "this dashboard opens with its key in the "+s.opts.KeyParam+" query parameter", http.StatusUnauthorized)
		return r, false
	}
	q.Del(s.opts.KeyParam)
	u := *r.URL
	u.RawQuery = q.Encode()
	r2 := r.WithContext(context.WithValue(r.Context(), keyCtx{}, key))
	r2.URL = &u
	r2.RequestURI = u.RequestURI()
	w.Header().Set("Referrer-Policy", "no-referrer") // the key is in every URL: never send it elsewhere
	return r2, true
}

// withKey appends the request's key to a URL of the dashboard's own.
func (s *server) withKey(r *http.Request, target string) string {
	key := keyOf(r)
	if key == "" {
		return target
	}
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
	}
	return target + sep + url.QueryEscape(s.opts.KeyParam) + "=" + url.QueryEscape(key)
}

// redirect redirects to one of the dashboard's own URLs, with the key when there is one.
func (s *server) redirect(w http.ResponseWriter, r *http.Request, target string, status int) {
	http.Redirect(w, r, s.withKey(r, target), status)
}

// getForm is the start tag of a form sent with GET: the browser replaces the action's
// query with the form's fields, so the key goes in a hidden field.
var getForm = regexp.MustCompile(`<form method="get"[^>]*>`)

// carryKey puts the request's key into every link, asset, form action and GET form of a
// rendered page that points into the dashboard (a URL starting with the prefix and "/";
// every template builds its URLs so).
func (s *server) carryKey(r *http.Request, page []byte) []byte {
	key := keyOf(r)
	if key == "" {
		return page
	}
	esc := template.HTMLEscapeString(url.QueryEscape(s.opts.KeyParam) + "=" + url.QueryEscape(key))
	own := regexp.MustCompile(`((?:href|src|action)=")(` + regexp.QuoteMeta(template.HTMLEscapeString(s.opts.Prefix)) + `/[^"#]*)`)
	page = own.ReplaceAllFunc(page, func(m []byte) []byte {
		sep := []byte("?")
		if bytes.Contains(m, []byte("?")) {
			sep = []byte("&amp;")
		}
		return append(append(append([]byte{}, m...), sep...), esc...)
	})
	hidden := []byte(`<input type="hidden" name="` + template.HTMLEscapeString(s.opts.KeyParam) + `" value="` + template.HTMLEscapeString(key) + `">`)
	return getForm.ReplaceAllFunc(page, func(m []byte) []byte { return append(append([]byte{}, m...), hidden...) })
}
