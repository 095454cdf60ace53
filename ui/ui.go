// Package ui is nightshift's web dashboard: server-rendered HTML pages (html/template,
// SVG charts, a few lines of JavaScript, every asset embedded) over a nightshift.Client —
// queue depths and throughput, jobs and their details, dead letters and their replay,
// batches, workflows and recurring schedules. `nightshift ui` and `nightshift dev` serve it; any Go
// server can mount Handler (docs/dashboard.md).
//
// Opening it takes a token: GET /login?token=… or the login form exchanges it (compared in
// constant time) for an HttpOnly, SameSite=Strict session cookie. Mutating actions (cancel,
// replay) are POST only and carry a per-session CSRF token. Pages never show storage keys
// or connection strings: the rendered output is scrubbed of them.
package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/schedule"
)

// CookieName is the session cookie's name.
const CookieName = "nightshift_ui"

// DefaultSessionTTL is how long a session lasts when Options.SessionTTL is 0.
const DefaultSessionTTL = 12 * time.Hour

// DefaultMaxReplay bounds the records one group replay request takes when
// Options.MaxReplay is 0.
const DefaultMaxReplay = 100

// Options configure the dashboard.
type Options struct {
	// Token opens the dashboard; required (a handler without one refuses every request),
	// unless KeyParam is set.
	Token string
	// KeyParam, when set, names the query parameter of a key that something in front of
	// the dashboard has already checked on every request: the Functions host's function
	// key ("code"; Function mounts the dashboard so). The dashboard then asks for no token
	// and sets no cookie: a request without the parameter is refused (401), the CSRF
	// token of its forms is derived from the key, every link, form, asset and redirect
	// carries the key on, and pages are sent with Referrer-Policy no-referrer. The key is
	// never logged, and no other key is rendered. Set it only behind something that
	// refuses a wrong key (the Functions host with authLevel function): the dashboard
	// itself accepts any value.
	KeyParam string
	// Prefix is the path the handler is mounted at ("/ui"); default "" (the root). The
	// handler strips it itself.
	Prefix string
	// Recurring are the app's recurring jobs, for the schedules page (schedule.Builtin and
	// the app's own); Getenv reads their schedule settings (default: none set).
	Recurring []schedule.Recurring
	Getenv    func(string) string
	// Kinds lists the app's job kinds (the registry's), for the states-per-kind table;
	// default the kinds met in recent jobs.
	Kinds func() []string
	// Limits returns the app's flow-control limits by kind (the registry's Limits), for
	// the flow page; default none shown.
	Limits func() map[string]nightshift.Limits
	// RedactArgs, when set, redacts a kind's args before they are shown (in addition to
	// the dashboard's own rule for fields named like secrets).
	RedactArgs func(kind string, args json.RawMessage) json.RawMessage
	// Secrets are strings never to show (an account key, a SAS): the rendered pages are
	// scrubbed of them as well as of anything shaped like a key or a SAS signature.
	Secrets []string
	// ReplayRate caps group replays (replays per second); default
	// nightshift.DefaultReplayRate. MaxReplay bounds the records one request takes.
	ReplayRate float64
	MaxReplay  int
	// SecureCookie marks the session cookie Secure (set it when served over HTTPS).
	SecureCookie bool
	// SessionTTL is how long a session lasts; default DefaultSessionTTL.
	SessionTTL time.Duration
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Logger receives request errors; default slog.Default().
	Logger *slog.Logger
}

// server is the dashboard.
type server struct {
	c    *nightshift.Client
	opts Options
	// key signs session cookies and CSRF tokens; it is derived from the token, so every
	// instance of a scaled-out app accepts the sessions of the others.
	key []byte
	// tokenSum is the token's SHA-256, compared in constant time.
	tokenSum [32]byte
	mux      *http.ServeMux
	tmpl     *templates
}

// Handler returns the dashboard on client c.
func Handler(c *nightshift.Client, opts Options) http.Handler {
	o := opts
	o.Prefix = strings.TrimSuffix(o.Prefix, "/")
	if o.Getenv == nil {
		o.Getenv = func(string) string { return "" }
	}
	if o.ReplayRate == 0 {
		o.ReplayRate = nightshift.DefaultReplayRate
	}
	if o.MaxReplay <= 0 {
		o.MaxReplay = DefaultMaxReplay
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	mac := hmac.New(sha256.New, []byte(o.Token))
	mac.Write([]byte("nightshift-ui-session-key"))
	s := &server{c: c, opts: o, key: mac.Sum(nil), tokenSum: sha256.Sum256([]byte(o.Token)), tmpl: loadTemplates()}
	s.routes()
	return s
}

// NewToken returns a random token fit for Options.Token (32 bytes, base64url).
func NewToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /login", s.loginPage)
	m.HandleFunc("POST /login", s.loginPost)
	m.Handle("GET /static/", staticHandler())
	page := func(pattern string, h func(w http.ResponseWriter, r *http.Request, sess *session)) {
		m.HandleFunc(pattern, s.authed(h))
	}
	page("POST /logout", s.logout)
	page("GET /{$}", s.overview)
	page("GET /jobs", s.jobs)
	page("GET /jobs/{id}", s.job)
	page("GET /jobs/{id}/result", s.result)
	page("POST /jobs/{id}/cancel", s.cancel)
	page("GET /dead", s.deadList)
	page("GET /dead/{id}", s.deadOne)
	page("POST /dead/{id}/replay", s.replayOne)
	page("POST /dead/replay", s.replayGroup)
	page("GET /batches", s.batches)
	page("GET /batches/{id}", s.batch)
	page("GET /workflows", s.workflows)
	page("GET /workflows/{id}", s.workflow)
	page("POST /workflows/{id}/cancel", s.cancelWorkflow)
	page("GET /schedules", s.schedules)
	page("GET /flow", s.flow)
	page("POST /flow/pause", s.pause)
	page("POST /flow/resume", s.resume)
	s.mux = m
}

// ServeHTTP strips the prefix, sets the security headers and serves the page.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin") // no-referrer would make a browser send "Origin: null" with our own forms
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if s.opts.KeyParam != "" {
		var ok bool
		if r, ok = s.takeKey(w, r); !ok {
			return
		}
	} else if s.opts.Token == "" {
		http.Error(w, "the dashboard has no token configured, so it opens for nobody", http.StatusForbidden)
		return
	}
	path := r.URL.Path
	if s.opts.Prefix != "" {
		rest, ok := strings.CutPrefix(path, s.opts.Prefix)
		if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
			http.NotFound(w, r)
			return
		}
		if rest == "" {
			s.redirect(w, r, s.opts.Prefix+"/", http.StatusFound)
			return
		}
		r2 := *r
		u := *r.URL
		u.Path, u.RawPath = rest, ""
		r2.URL = &u
		r = &r2
	}
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	s.mux.ServeHTTP(w, r)
}

// session is a logged-in browser.
type session struct {
	id   string
	csrf string
}

// keyed is the session of a request that came with a checked key (Options.KeyParam).
func (s *server) keyed(r *http.Request) *session {
	key := keyOf(r)
	if key == "" {
		return nil
	}
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte("nightshift-ui-csrf"))
	return &session{csrf: base64.RawURLEncoding.EncodeToString(mac.Sum(nil))}
}

// checkToken compares a presented token with the configured one in constant time.
func (s *server) checkToken(tok string) bool {
	sum := sha256.Sum256([]byte(tok))
	return tok != "" && subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1
}

func (s *server) sign(parts ...string) string {
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// newSession returns the cookie value of a new session: id.expiry.mac.
func (s *server) newSession() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	id := base64.RawURLEncoding.EncodeToString(b)
	exp := strconv.FormatInt(s.opts.Now().Add(s.opts.SessionTTL).Unix(), 10)
	return id + "." + exp + "." + s.sign("session", id, exp)
}

// sessionOf returns the request's valid session, or nil.
func (s *server) sessionOf(r *http.Request) *session {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return nil
	}
	parts := strings.Split(ck.Value, ".")
	if len(parts) != 3 {
		return nil
	}
	if !hmac.Equal([]byte(parts[2]), []byte(s.sign("session", parts[0], parts[1]))) {
		return nil
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || s.opts.Now().Unix() >= exp {
		return nil
	}
	return &session{id: parts[0], csrf: s.sign("csrf", parts[0])}
}

func (s *server) setCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: value, Path: s.opts.Prefix + "/", MaxAge: maxAge,
		HttpOnly: true, Secure: s.opts.SecureCookie, SameSite: http.SameSiteStrictMode,
	})
}

// authed wraps a page: no session sends a GET to the login page and refuses anything
// else; a POST must carry the session's CSRF token and come from this origin.
func (s *server) authed(h func(w http.ResponseWriter, r *http.Request, sess *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := s.sessionOf(r)
		if s.opts.KeyParam != "" {
			sess = s.keyed(r)
		}
		if sess == nil {
			if r.Method == http.MethodGet {
				s.redirect(w, r, s.opts.Prefix+"/login?next="+url.QueryEscape(s.opts.Prefix+r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost && !s.csrfOK(r, sess) {
			http.Error(w, "missing or wrong CSRF token (reload the page and try again)", http.StatusForbidden)
			return
		}
		h(w, r, sess)
	}
}

// csrfOK checks a POST's CSRF token (constant time) and, when the browser says, its origin.
func (s *server) csrfOK(r *http.Request, sess *session) bool {
	r.Body = http.MaxBytesReader(nil, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && !(o == "null" && s.opts.KeyParam != "") {
		// (With a key, pages are sent with Referrer-Policy no-referrer, so the browser
		// sends "Origin: null" with their forms; the CSRF token still decides.)
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(sess.csrf))
}

func (s *server) loginPage(w http.ResponseWriter, r *http.Request) {
	if s.opts.KeyParam != "" {
		s.redirect(w, r, s.opts.Prefix+"/", http.StatusSeeOther)
		return
	}
	if tok := r.URL.Query().Get("token"); tok != "" {
		s.login(w, r, tok, r.URL.Query().Get("next"))
		return
	}
	s.render(w, r, http.StatusOK, "login", nil, map[string]any{"Next": safeNext(s.opts.Prefix, r.URL.Query().Get("next"))})
}

func (s *server) loginPost(w http.ResponseWriter, r *http.Request) {
	if s.opts.KeyParam != "" {
		s.redirect(w, r, s.opts.Prefix+"/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64*1024)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	s.login(w, r, r.PostForm.Get("token"), r.PostForm.Get("next"))
}

func (s *server) login(w http.ResponseWriter, r *http.Request, tok, next string) {
	if !s.checkToken(tok) {
		s.render(w, r, http.StatusUnauthorized, "login", nil, map[string]any{"Failed": true, "Next": safeNext(s.opts.Prefix, next)})
		return
	}
	s.setCookie(w, s.newSession(), int(s.opts.SessionTTL/time.Second))
	http.Redirect(w, r, safeNext(s.opts.Prefix, next), http.StatusSeeOther)
}

func (s *server) logout(w http.ResponseWriter, r *http.Request, _ *session) {
	s.setCookie(w, "", -1)
	s.redirect(w, r, s.opts.Prefix+"/login", http.StatusSeeOther)
}

// safeNext keeps a post-login redirect on the dashboard (a path under prefix, no scheme
// or host), else the overview.
func safeNext(prefix, next string) string {
	if next == "" || !strings.HasPrefix(next, prefix+"/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return prefix + "/"
	}
	return next
}
