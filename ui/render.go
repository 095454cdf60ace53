package ui

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// templates holds one template set per page (the layout plus the page).
type templates struct {
	pages map[string]*template.Template
}

var funcs = template.FuncMap{
	"ts":       fmtTime,
	"ago":      ago,
	"pct":      func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
	"json":     prettyJSON,
	"add":      func(a, b int) int { return a + b },
	"dur":      func(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() },
	"truncate": truncate,
}

func loadTemplates() *templates {
	t := &templates{pages: map[string]*template.Template{}}
	entries, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		name := strings.TrimSuffix(strings.TrimPrefix(e, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t.pages[name] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", e))
	}
	return t
}

func staticHandler() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	fsrv := http.StripPrefix("/static/", http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fsrv.ServeHTTP(w, r)
	})
}

// view is what every page template gets.
type view struct {
	Base    string
	Page    string
	CSRF    string
	Now     time.Time
	Notice  string
	Problem string
	// Refresh, when set, reloads the page after that many seconds (a running job's
	// progress; no script needed).
	Refresh int
	// Keyed is set when a checked key opens the dashboard (Options.KeyParam): no login,
	// no logout, and no referrer sent anywhere.
	Keyed bool
	Data  any
}

// refresher is page data that asks for a periodic reload.
type refresher interface{ refresh() int }

// notices are the messages a redirect after an action may ask for (?done=…), fixed text
// so that no request reflects its own words into the page.
var notices = map[string]string{
	"cancelled":    "The job is cancelled.",
	"replayed":     "The dead letter is replayed: its job is queued again.",
	"not-dead":     "The job is no longer dead (already replayed or cancelled); nothing was done.",
	"already-done": "The job already ended; it cannot be cancelled.",
	"wf-cancelled": "The workflow is cancelled: its pending steps never run, and its enqueued ones are cancelled.",
	"wf-ended":     "The workflow already ended; it cannot be cancelled.",
	"paused":       "Paused: handlers hold its jobs within 5 seconds.",
	"resumed":      "Resumed: its jobs run again within 5 seconds.",
}

// render executes a page into a buffer, scrubs it of secrets and writes it.
func (s *server) render(w http.ResponseWriter, r *http.Request, status int, page string, sess *session, data any) {
	v := view{Base: s.opts.Prefix, Page: page, Now: s.opts.Now().UTC(), Data: data, Notice: notices[r.URL.Query().Get("done")]}
	if sess != nil {
		v.CSRF = sess.csrf
	}
	v.Keyed = keyOf(r) != ""
	if rf, ok := data.(refresher); ok {
		v.Refresh = rf.refresh()
	}
	var buf bytes.Buffer
	if err := s.tmpl.pages[page].Execute(&buf, v); err != nil {
		s.opts.Logger.Error("ui: render", "page", page, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(s.carryKey(r, s.scrub(buf.Bytes())))
}

// fail renders the error page: the error's text, scrubbed like every page.
func (s *server) fail(w http.ResponseWriter, r *http.Request, sess *session, status int, err error) {
	s.opts.Logger.Warn("ui: request failed", "path", r.URL.Path, "status", status, "err", err)
	s.render(w, r, status, "error", sess, map[string]any{"Status": status, "Error": err.Error()})
}

// secretShapes are what a storage key, a SAS or a connection string look like in text.
var secretShapes = regexp.MustCompile(`(?i)(AccountKey|SharedAccessSignature|SharedAccessKey|sig|AccessKey|client_secret|password)(=|%3D)[^;&"'<>\s]+`)

// scrub replaces the configured secrets, and anything shaped like a key or signature
// assignment, with nightshift.Redacted.
func (s *server) scrub(b []byte) []byte {
	b = secretShapes.ReplaceAll(b, []byte("${1}${2}"+nightshift.Redacted))
	for _, sec := range s.opts.Secrets {
		if len(sec) >= 8 {
			b = bytes.ReplaceAll(b, []byte(sec), []byte(nightshift.Redacted))
			if esc := template.HTMLEscapeString(sec); esc != sec {
				b = bytes.ReplaceAll(b, []byte(esc), []byte(nightshift.Redacted))
			}
		}
	}
	return b
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		return "in " + (-d).String()
	}
	return d.String() + " ago"
}

func prettyJSON(v any) string {
	var raw []byte
	switch x := v.(type) {
	case json.RawMessage:
		raw = x
	case []byte:
		raw = x
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Sprint(v)
		}
		raw = b
	}
	var out bytes.Buffer
	if json.Indent(&out, raw, "", "  ") != nil {
		return string(raw)
	}
	return out.String()
}

func truncate(n int, s string) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
