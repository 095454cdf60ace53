package funchost

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift/ncrontab"
	"github.com/nightshift-jobs/nightshift/storage"
)

// ConfigError reports an invalid host.json or function.json: which file, which field, and
// what was expected.
type ConfigError struct {
	// File is the path of the offending file.
	File string
	// Field is the JSON path of the offending field ("" for the whole file).
	Field string
	// Problem says what is wrong and what was expected.
	Problem string
}

func (e *ConfigError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.File, e.Problem)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Field, e.Problem)
}

// hostJSON is the part of host.json the local host reads. encoding/json matches keys
// case-insensitively, like the host's IConfiguration binding (§1.1).
type hostJSON struct {
	Version         string          `json:"version"`
	FunctionTimeout *string         `json:"functionTimeout"`
	CustomHandler   *customHandler  `json:"customHandler"`
	HTTPWorker      *customHandler  `json:"httpWorker"`
	Extensions      *hostExtensions `json:"extensions"`
}

type customHandler struct {
	Description *struct {
		DefaultExecutablePath string   `json:"defaultExecutablePath"`
		WorkingDirectory      string   `json:"workingDirectory"`
		WorkerDirectory       string   `json:"workerDirectory"`
		Arguments             []string `json:"arguments"`
		DefaultWorkerPath     string   `json:"defaultWorkerPath"`
		WorkerArguments       []string `json:"workerArguments"`
	} `json:"description"`
	EnableForwardingHTTPRequest bool `json:"enableForwardingHttpRequest"`
}

type hostExtensions struct {
	Queues *struct {
		BatchSize          *int    `json:"batchSize"`
		NewBatchThreshold  *int    `json:"newBatchThreshold"`
		MaxPollingInterval *string `json:"maxPollingInterval"`
		VisibilityTimeout  *string `json:"visibilityTimeout"`
		MaxDequeueCount    *int    `json:"maxDequeueCount"`
		MessageEncoding    *string `json:"messageEncoding"`
	} `json:"queues"`
	HTTP *struct {
		RoutePrefix *string `json:"routePrefix"`
	} `json:"http"`
}

// QueueOptions are the effective extensions.queues settings (§2.1).
type QueueOptions struct {
	BatchSize          int
	NewBatchThreshold  int
	MaxPollingInterval time.Duration
	VisibilityTimeout  time.Duration
	MaxDequeueCount    int
	// Base64 is true for messageEncoding "base64" (the default), false for "none".
	Base64 bool
}

// HandlerConfig is the resolved customHandler.description (§1.1).
type HandlerConfig struct {
	// Path is the executable: absolute when <workerDirectory>/<path> exists, else as given
	// (looked up on PATH).
	Path string
	// Args are the arguments after the executable, %VAR% expanded, unresolved ones removed.
	Args []string
	// Dir is the working directory.
	Dir string
	// ForwardHTTP is customHandler.enableForwardingHttpRequest.
	ForwardHTTP bool
}

// HostConfig is the effective host.json.
type HostConfig struct {
	// File is the host.json path.
	File string
	// Handler is the custom handler to start.
	Handler HandlerConfig
	// FunctionTimeout bounds one invocation; 0 means unbounded ("-1").
	FunctionTimeout time.Duration
	// Queues holds the queue trigger settings.
	Queues QueueOptions
	// RoutePrefix is extensions.http.routePrefix (default "api").
	RoutePrefix string
}

// Binding is one entry of function.json "bindings".
type Binding struct {
	Name         string   `json:"name"`
	Type         string   `json:"type"`
	Direction    string   `json:"direction"`
	DataType     string   `json:"dataType"`
	QueueName    string   `json:"queueName"`
	Connection   string   `json:"connection"`
	Path         string   `json:"path"`
	Schedule     string   `json:"schedule"`
	RunOnStartup bool     `json:"runOnStartup"`
	UseMonitor   *bool    `json:"useMonitor"`
	AuthLevel    string   `json:"authLevel"`
	Methods      []string `json:"methods"`
	Route        string   `json:"route"`
}

// Function is one function folder: its name (the folder name, case preserved) and bindings.
type Function struct {
	// Name is the folder name; invocations go to POST /{Name} (§1.4).
	Name string
	// File is the function.json path.
	File string
	// Bindings are all bindings in file order.
	Bindings []Binding
	// Trigger is the one trigger binding.
	Trigger *Binding
	// Disabled is set by the AzureWebJobs.<Name>.Disabled app setting.
	Disabled bool

	// queue trigger
	queueName  string // resolved, lower-cased
	poisonName string // "" when the queue has no poison queue (§2.4)
	// timer trigger
	schedule timerSchedule
	monitor  bool
	// http trigger
	route     []routeSegment
	methods   map[string]bool
	authLevel string
	forwarded bool
}

var timeSpanRE = regexp.MustCompile(`^(-)?(?:(\d+)\.)?(\d+):(\d+)(?::(\d+)(?:\.(\d{1,7}))?)?$`)

// parseTimeSpan parses .NET TimeSpan text as host.json uses it: "hh:mm", "hh:mm:ss",
// "d.hh:mm:ss" and "hh:mm:ss.fffffff", or a plain number of days.
func parseTimeSpan(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * 24 * time.Hour, nil
	}
	m := timeSpanRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a TimeSpan (expected hh:mm:ss or d.hh:mm:ss)", s)
	}
	num := func(x string) int { n, _ := strconv.Atoi(x); return n }
	h, mi, sec := num(m[3]), num(m[4]), num(m[5])
	if h > 23 || mi > 59 || sec > 59 {
		return 0, fmt.Errorf("%q is not a TimeSpan: hours must be 0–23 and minutes and seconds 0–59 (use d.hh:mm:ss for a day or more)", s)
	}
	d := time.Duration(num(m[2]))*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(mi)*time.Minute + time.Duration(sec)*time.Second
	if m[6] != "" {
		frac := m[6] + strings.Repeat("0", 7-len(m[6]))
		d += time.Duration(num(frac)) * 100
	}
	if m[1] == "-" {
		d = -d
	}
	return d, nil
}

// expandEnv replaces %NAME% with the setting's value; names without a value are left as
// they are (Environment.ExpandEnvironmentVariables, §1.1). It reports whether any %X%
// stayed unresolved.
func expandEnv(s string, getenv func(string) string) (string, bool) {
	var b strings.Builder
	unresolved := false
	for {
		i := strings.IndexByte(s, '%')
		if i < 0 {
			b.WriteString(s)
			break
		}
		j := strings.IndexByte(s[i+1:], '%')
		if j < 0 {
			b.WriteString(s)
			break
		}
		name := s[i+1 : i+1+j]
		if v := getenv(name); name != "" && v != "" {
			b.WriteString(s[:i])
			b.WriteString(v)
			s = s[i+2+j:]
			continue
		}
		unresolved = unresolved || name != ""
		b.WriteString(s[:i+1])
		s = s[i+1:]
	}
	return b.String(), unresolved
}

var unresolvedRE = regexp.MustCompile(`%[^%]+%`)

func loadHostConfig(appRoot string, getenv func(string) string, development bool, log func(string, ...any)) (*HostConfig, error) {
	file := filepath.Join(appRoot, "host.json")
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, &ConfigError{File: file, Problem: fmt.Sprintf("cannot read the host configuration: %v (expected host.json at the app root, next to the function folders)", err)}
	}
	var h hostJSON
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, &ConfigError{File: file, Problem: "not valid JSON for host.json: " + err.Error()}
	}
	if h.Version != "2.0" {
		return nil, &ConfigError{File: file, Field: "version", Problem: fmt.Sprintf("%q; the Functions v4 host needs \"2.0\"", h.Version)}
	}
	ch := h.CustomHandler
	if ch == nil {
		ch = h.HTTPWorker // legacy name; customHandler wins when both are present (§1.1)
	} else if h.HTTPWorker != nil {
		log("host.json has both customHandler and httpWorker sections; using customHandler")
	}
	if ch == nil || ch.Description == nil {
		return nil, &ConfigError{File: file, Field: "customHandler.description", Problem: "missing; the local host only runs custom handler apps"}
	}
	d := ch.Description
	if strings.TrimSpace(d.DefaultExecutablePath) == "" {
		return nil, &ConfigError{File: file, Field: "customHandler.description.defaultExecutablePath", Problem: "WorkerDescription DefaultExecutablePath cannot be empty"}
	}
	cfg := &HostConfig{File: file, RoutePrefix: "api"}
	// §1.1: workerDirectory and workingDirectory default to the app root; relative ones are
	// resolved against it. The executable resolves against workerDirectory, NOT
	// workingDirectory, and only when <workerDirectory>/<path> exists.
	abs := func(p string) string {
		if p == "" {
			return appRoot
		}
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(appRoot, p)
	}
	workerDir := abs(d.WorkerDirectory)
	cfg.Handler.Dir = abs(d.WorkingDirectory)
	exe, _ := expandEnv(d.DefaultExecutablePath, getenv)
	if !filepath.IsAbs(exe) {
		cand := filepath.Join(workerDir, exe)
		if runtime.GOOS == "windows" && filepath.Ext(cand) == "" {
			if _, err := os.Stat(cand + ".exe"); err == nil {
				cand += ".exe"
			}
		}
		if _, err := os.Stat(cand); err == nil {
			exe = cand
		}
	}
	cfg.Handler.Path = exe
	// §1.1: arguments are expanded and any %X% still unresolved is removed.
	expandArgs := func(args []string) []string {
		var out []string
		for _, a := range args {
			v, _ := expandEnv(a, getenv)
			v = unresolvedRE.ReplaceAllString(v, "")
			out = append(out, v)
		}
		return out
	}
	cfg.Handler.Args = expandArgs(d.Arguments)
	if d.DefaultWorkerPath != "" {
		p, _ := expandEnv(d.DefaultWorkerPath, getenv)
		cfg.Handler.Args = append(cfg.Handler.Args, p)
	}
	cfg.Handler.Args = append(cfg.Handler.Args, expandArgs(d.WorkerArguments)...)
	// Under the legacy httpWorker section http-in/out functions are always forwarded (§1.1).
	cfg.Handler.ForwardHTTP = ch.EnableForwardingHTTPRequest || h.CustomHandler == nil

	// §1.10: the default for Flex/Premium/Dedicated is 30 min; "-1" means unbounded.
	cfg.FunctionTimeout = 30 * time.Minute
	if h.FunctionTimeout != nil {
		switch v := strings.TrimSpace(*h.FunctionTimeout); v {
		case "-1", "-00:00:01":
			cfg.FunctionTimeout = 0
		default:
			t, err := parseTimeSpan(v)
			if err != nil || t < time.Second {
				return nil, &ConfigError{File: file, Field: "functionTimeout", Problem: fmt.Sprintf("%q: expected a TimeSpan of at least 00:00:01, or -1 for unbounded", v)}
			}
			cfg.FunctionTimeout = t
		}
	}

	// §2.1 defaults.
	q := QueueOptions{BatchSize: 16, MaxPollingInterval: time.Minute, MaxDequeueCount: 5, Base64: true}
	newBatchSet := false
	maxPollSet := false
	if h.Extensions != nil && h.Extensions.Queues != nil {
		qs := h.Extensions.Queues
		if qs.BatchSize != nil {
			if *qs.BatchSize < 1 || *qs.BatchSize > 32 {
				return nil, &ConfigError{File: file, Field: "extensions.queues.batchSize", Problem: fmt.Sprintf("%d: expected 1–32", *qs.BatchSize)}
			}
			q.BatchSize = *qs.BatchSize
		}
		if qs.NewBatchThreshold != nil {
			if *qs.NewBatchThreshold < 0 {
				return nil, &ConfigError{File: file, Field: "extensions.queues.newBatchThreshold", Problem: fmt.Sprintf("%d: expected >= 0", *qs.NewBatchThreshold)}
			}
			q.NewBatchThreshold = *qs.NewBatchThreshold
			newBatchSet = true
		}
		if qs.MaxPollingInterval != nil {
			d, err := parseTimeSpan(*qs.MaxPollingInterval)
			if err != nil || d < 100*time.Millisecond {
				return nil, &ConfigError{File: file, Field: "extensions.queues.maxPollingInterval", Problem: fmt.Sprintf("%q: expected a TimeSpan of at least 00:00:00.1", *qs.MaxPollingInterval)}
			}
			q.MaxPollingInterval = d
			maxPollSet = true
		}
		if qs.VisibilityTimeout != nil {
			d, err := parseTimeSpan(*qs.VisibilityTimeout)
			if err != nil || d < 0 || d > 7*24*time.Hour {
				return nil, &ConfigError{File: file, Field: "extensions.queues.visibilityTimeout", Problem: fmt.Sprintf("%q: expected a TimeSpan between 00:00:00 and 7.00:00:00", *qs.VisibilityTimeout)}
			}
			q.VisibilityTimeout = d
		}
		if qs.MaxDequeueCount != nil {
			if *qs.MaxDequeueCount < 1 {
				return nil, &ConfigError{File: file, Field: "extensions.queues.maxDequeueCount", Problem: fmt.Sprintf("%d: expected >= 1", *qs.MaxDequeueCount)}
			}
			q.MaxDequeueCount = *qs.MaxDequeueCount
		}
		if qs.MessageEncoding != nil {
			switch strings.ToLower(*qs.MessageEncoding) {
			case "base64":
				q.Base64 = true
			case "none":
				q.Base64 = false
			default:
				return nil, &ConfigError{File: file, Field: "extensions.queues.messageEncoding", Problem: fmt.Sprintf("%q: expected \"base64\" or \"none\"", *qs.MessageEncoding)}
			}
		}
	}
	if !newBatchSet {
		// §2.1: (batchSize / 2) * processorCount; 1 processor on Consumption (WEBSITE_SKU=Dynamic).
		procs := runtime.NumCPU()
		if getenv("WEBSITE_SKU") == "Dynamic" {
			procs = 1
		}
		q.NewBatchThreshold = (q.BatchSize / 2) * procs
	}
	if !maxPollSet && development {
		q.MaxPollingInterval = 2 * time.Second // §2.1: Development replaces the 1-min default
	}
	cfg.Queues = q
	if h.Extensions != nil && h.Extensions.HTTP != nil && h.Extensions.HTTP.RoutePrefix != nil {
		cfg.RoutePrefix = strings.Trim(*h.Extensions.HTTP.RoutePrefix, "/")
	}
	return cfg, nil
}

// knownBindings are the binding types the local host implements.
var knownBindings = map[string]bool{"queuetrigger": true, "timertrigger": true, "httptrigger": true, "http": true, "blob": true}

func loadFunctions(appRoot string, cfg *HostConfig, getenv func(string) string) ([]*Function, error) {
	entries, err := os.ReadDir(appRoot)
	if err != nil {
		return nil, fmt.Errorf("read app root %s: %w", appRoot, err)
	}
	var fns []*Function
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		file := filepath.Join(appRoot, e.Name(), "function.json")
		raw, err := os.ReadFile(file)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, &ConfigError{File: file, Problem: err.Error()})
			continue
		}
		fn, err := parseFunction(e.Name(), file, raw, cfg, getenv)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fns = append(fns, fn)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(fns) == 0 {
		return nil, fmt.Errorf("%s: no function folders (<Name>/function.json next to host.json)", appRoot)
	}
	sort.Slice(fns, func(i, j int) bool { return fns[i].Name < fns[j].Name })
	return fns, nil
}

var functionNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_\-]{0,127}$`)

func parseFunction(name, file string, raw []byte, cfg *HostConfig, getenv func(string) string) (*Function, error) {
	if !functionNameRE.MatchString(name) {
		return nil, &ConfigError{File: file, Problem: fmt.Sprintf("function name %q is invalid: it must start with a letter and contain only letters, digits, _ and -", name)}
	}
	var doc struct {
		Bindings []Binding `json:"bindings"`
		Disabled bool      `json:"disabled"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, &ConfigError{File: file, Problem: "not valid JSON for function.json: " + err.Error()}
	}
	fn := &Function{Name: name, File: file, Bindings: doc.Bindings, Disabled: doc.Disabled}
	if v := getenv("AzureWebJobs." + name + ".Disabled"); strings.EqualFold(v, "true") || v == "1" {
		fn.Disabled = true
	}
	seen := map[string]bool{}
	var unknown []string
	for i := range fn.Bindings {
		b := &fn.Bindings[i]
		field := fmt.Sprintf("bindings[%d]", i)
		if b.Name == "" {
			return nil, &ConfigError{File: file, Field: field + ".name", Problem: "missing"}
		}
		if seen[strings.ToLower(b.Name)] {
			// §5: binding names are unique, compared case-insensitively.
			return nil, &ConfigError{File: file, Field: field + ".name", Problem: fmt.Sprintf("%q is used twice (binding names are compared case-insensitively)", b.Name)}
		}
		seen[strings.ToLower(b.Name)] = true
		t := strings.ToLower(b.Type)
		if !knownBindings[t] {
			unknown = append(unknown, b.Type)
			continue
		}
		dir := strings.ToLower(b.Direction)
		isTrigger := strings.HasSuffix(t, "trigger")
		switch {
		case isTrigger && dir != "in":
			return nil, &ConfigError{File: file, Field: field + ".direction", Problem: fmt.Sprintf("%q: a %s binding must have direction \"in\"", b.Direction, b.Type)}
		case !isTrigger && dir != "out":
			return nil, &ConfigError{File: file, Field: field + ".direction", Problem: fmt.Sprintf("%q: the local host supports %s bindings only as outputs (direction \"out\")", b.Direction, b.Type)}
		}
		if isTrigger {
			if fn.Trigger != nil {
				return nil, &ConfigError{File: file, Field: field, Problem: fmt.Sprintf("a second trigger (%s %q after %s %q); a function has exactly one trigger", b.Type, b.Name, fn.Trigger.Type, fn.Trigger.Name)}
			}
			fn.Trigger = b
		}
		if dt := strings.ToLower(b.DataType); dt != "" && dt != "string" && dt != "binary" && dt != "stream" {
			return nil, &ConfigError{File: file, Field: field + ".dataType", Problem: fmt.Sprintf("%q: expected \"string\", \"binary\" or \"stream\"", b.DataType)}
		}
		if t == "blob" {
			if b.Path == "" {
				return nil, &ConfigError{File: file, Field: field + ".path", Problem: "missing: a blob output needs \"container/blob-name\""}
			}
			p, err := resolveAppSettings(b.Path, getenv)
			if err != nil {
				return nil, &ConfigError{File: file, Field: field + ".path", Problem: err.Error()}
			}
			if c, _, ok := strings.Cut(p, "/"); !ok || c == "" {
				return nil, &ConfigError{File: file, Field: field + ".path", Problem: fmt.Sprintf("%q: expected \"container/blob-name\"", b.Path)}
			}
			b.Path = p
		}
	}
	if len(unknown) > 0 {
		// §5: the host's message for binding types it cannot find.
		return nil, &ConfigError{File: file, Field: "bindings", Problem: fmt.Sprintf("The binding type(s) '%s' were not found in the configured extension bundle (the local host supports queueTrigger, timerTrigger, httpTrigger, http and blob outputs)", strings.Join(unknown, ", "))}
	}
	if fn.Trigger == nil {
		return nil, &ConfigError{File: file, Field: "bindings", Problem: "no trigger binding; a function has exactly one trigger"}
	}
	idx := 0
	for i := range fn.Bindings {
		if &fn.Bindings[i] == fn.Trigger {
			idx = i
		}
	}
	field := fmt.Sprintf("bindings[%d]", idx)
	tr := fn.Trigger
	switch strings.ToLower(tr.Type) {
	case "queuetrigger":
		// §2.1: %AppSetting% resolved, lower-cased, then validated.
		qn, err := resolveAppSettings(tr.QueueName, getenv)
		if err != nil {
			return nil, &ConfigError{File: file, Field: field + ".queueName", Problem: err.Error()}
		}
		qn = strings.ToLower(qn)
		if why := storage.ValidQueueName(qn); why != "" {
			return nil, &ConfigError{File: file, Field: field + ".queueName", Problem: fmt.Sprintf("%q is not a valid queue name: %s", qn, why)}
		}
		fn.queueName = qn
		// §2.4: no poison queue for a queue already ending in -poison, or when the
		// -poison name would be invalid (source longer than 56 characters).
		if !strings.HasSuffix(qn, storage.PoisonSuffix) && storage.ValidQueueName(qn+storage.PoisonSuffix) == "" {
			fn.poisonName = qn + storage.PoisonSuffix
		}
	case "timertrigger":
		expr, err := resolveAppSettings(tr.Schedule, getenv)
		if err != nil {
			return nil, &ConfigError{File: file, Field: field + ".schedule", Problem: err.Error()}
		}
		sched, err := parseSchedule(expr)
		if err != nil {
			return nil, &ConfigError{File: file, Field: field + ".schedule", Problem: err.Error()}
		}
		fn.schedule = sched
		fn.monitor = tr.UseMonitor == nil || *tr.UseMonitor
		if fn.monitor && sched.disablesMonitor() {
			fn.monitor = false // §3.3 ShouldDisableScheduleMonitor
		}
	case "httptrigger":
		if err := fn.setupHTTP(cfg); err != nil {
			return nil, &ConfigError{File: file, Field: field, Problem: err.Error()}
		}
	}
	return fn, nil
}

// resolveAppSettings replaces every %Name% with the app setting's value; a missing setting
// is an error, as in the host's name resolver.
func resolveAppSettings(s string, getenv func(string) string) (string, error) {
	var err error
	out := unresolvedRE.ReplaceAllStringFunc(s, func(m string) string {
		name := m[1 : len(m)-1]
		v := getenv(name)
		if v == "" && err == nil {
			err = fmt.Errorf("'%s' does not resolve to a value (app setting %s is not set)", m, name)
		}
		return v
	})
	return out, err
}

// timerSchedule is a cron or TimeSpan schedule (§3.1).
type timerSchedule struct {
	cron     *ncrontab.Schedule
	interval time.Duration
	expr     string
}

func parseSchedule(expr string) (timerSchedule, error) {
	if c, err := ncrontab.Parse(expr); err == nil {
		return timerSchedule{cron: c, expr: expr}, nil
	}
	if d, err := parseTimeSpan(expr); err == nil && d > 0 && strings.Contains(expr, ":") {
		return timerSchedule{interval: d, expr: expr}, nil
	}
	return timerSchedule{}, fmt.Errorf("The schedule expression '%s' was not recognized as a valid cron expression or timespan string.", expr)
}

// next returns the next occurrence after t (in t's location).
func (s timerSchedule) next(t time.Time) time.Time {
	if s.cron != nil {
		return s.cron.Next(t)
	}
	return t.Add(s.interval)
}

// disablesMonitor implements ShouldDisableScheduleMonitor (§3.3): a TimeSpan under 1 min,
// or a cron whose minute..day-of-week fields are all "*" and that fires more than once in
// the next minute.
func (s timerSchedule) disablesMonitor() bool {
	if s.cron == nil {
		return s.interval < time.Minute
	}
	f := strings.Fields(s.expr)
	if len(f) == 6 {
		f = f[1:]
	}
	for _, x := range f {
		if x != "*" {
			return false
		}
	}
	now := time.Now()
	first := s.cron.Next(now)
	second := s.cron.Next(first)
	return !second.IsZero() && second.Sub(now) <= time.Minute
}
