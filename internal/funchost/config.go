package funchost

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/ncrontab"
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
	Queues *hostQueues `json:"queues"`
	HTTP   *struct {
		RoutePrefix *string `json:"routePrefix"`
	} `json:"http"`
}

// hostQueues is host.json extensions.queues as written (nil fields are unset).
type hostQueues struct {
	BatchSize          *int    `json:"batchSize"`
	NewBatchThreshold  *int    `json:"newBatchThreshold"`
	MaxPollingInterval *string `json:"maxPollingInterval"`
	VisibilityTimeout  *string `json:"visibilityTimeout"`
	MaxDequeueCount    *int    `json:"maxDequeueCount"`
	MessageEncoding    *string `json:"messageEncoding"`
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

// appSource is where an app's host.json and function folders are read from: a folder on
// disk (New) or any fs.FS (NewFS). root names the app in file names and is the app root
// the host reports; inProcess is set when Options.Handler serves the invocations, so no
// executable is started and host.json needs no customHandler section.
type appSource struct {
	fsys      fs.FS
	root      string
	inProcess bool
}

// file is the name of rel (slash-separated, inside fsys) in errors and logs.
func (src appSource) file(rel string) string { return filepath.Join(src.root, filepath.FromSlash(rel)) }

func loadHostConfig(appRoot string, getenv func(string) string, development bool, log func(string, ...any)) (*HostConfig, error) {
	return loadHostConfigFrom(appSource{fsys: os.DirFS(appRoot), root: appRoot}, getenv, development, log)
}

func loadHostConfigFrom(src appSource, getenv func(string) string, development bool, log func(string, ...any)) (*HostConfig, error) {
	file := src.file("host.json")
	h, err := readHostJSON(src.fsys, file)
	if err != nil {
		return nil, err
	}
	cfg := &HostConfig{File: file, RoutePrefix: "api"}
	if !src.inProcess || h.CustomHandler != nil || h.HTTPWorker != nil {
		ch, err := selectCustomHandler(file, h, log)
		if err != nil {
			return nil, err
		}
		cfg.Handler = resolveHandler(src.root, ch, getenv)
		// Under the legacy httpWorker section http-in/out functions are always forwarded (§1.1).
		cfg.Handler.ForwardHTTP = ch.EnableForwardingHTTPRequest || h.CustomHandler == nil
	}
	if cfg.FunctionTimeout, err = parseFunctionTimeout(file, h.FunctionTimeout); err != nil {
		return nil, err
	}
	var qs *hostQueues
	if h.Extensions != nil {
		qs = h.Extensions.Queues
	}
	if cfg.Queues, err = parseQueueOptions(file, qs, getenv, development); err != nil {
		return nil, err
	}
	if h.Extensions != nil && h.Extensions.HTTP != nil && h.Extensions.HTTP.RoutePrefix != nil {
		cfg.RoutePrefix = strings.Trim(*h.Extensions.HTTP.RoutePrefix, "/")
	}
	return cfg, nil
}

// readHostJSON reads and decodes host.json and checks its version.
func readHostJSON(fsys fs.FS, file string) (*hostJSON, error) {
	raw, err := fs.ReadFile(fsys, "host.json")
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
	return &h, nil
}

// selectCustomHandler picks the customHandler section, or the legacy httpWorker one
// (customHandler wins when both are present, §1.1), and checks its description.
func selectCustomHandler(file string, h *hostJSON, log func(string, ...any)) (*customHandler, error) {
	ch := h.CustomHandler
	if ch == nil {
		ch = h.HTTPWorker
	} else if h.HTTPWorker != nil {
		log("host.json has both customHandler and httpWorker sections; using customHandler")
	}
	if ch == nil || ch.Description == nil {
		return nil, &ConfigError{File: file, Field: "customHandler.description", Problem: "missing; the local host only runs custom handler apps"}
	}
	if strings.TrimSpace(ch.Description.DefaultExecutablePath) == "" {
		return nil, &ConfigError{File: file, Field: "customHandler.description.defaultExecutablePath", Problem: "WorkerDescription DefaultExecutablePath cannot be empty"}
	}
	return ch, nil
}

// resolveHandler resolves customHandler.description (§1.1): workerDirectory and
// workingDirectory default to the app root and relative ones are resolved against it. The
// executable resolves against workerDirectory, NOT workingDirectory, and only when
// <workerDirectory>/<path> exists.
func resolveHandler(appRoot string, ch *customHandler, getenv func(string) string) HandlerConfig {
	d := ch.Description
	abs := func(p string) string {
		if p == "" {
			return appRoot
		}
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(appRoot, p)
	}
	hc := HandlerConfig{Dir: abs(d.WorkingDirectory)}
	exe, _ := expandEnv(d.DefaultExecutablePath, getenv)
	hc.Path = resolveExecutable(abs(d.WorkerDirectory), exe)
	hc.Args = expandArgs(d.Arguments, getenv)
	if d.DefaultWorkerPath != "" {
		p, _ := expandEnv(d.DefaultWorkerPath, getenv)
		hc.Args = append(hc.Args, p)
	}
	hc.Args = append(hc.Args, expandArgs(d.WorkerArguments, getenv)...)
	return hc
}

// resolveExecutable returns <workerDir>/<exe> when that file exists (with ".exe" on
// Windows), else exe as given, to be looked up on PATH (§1.1).
func resolveExecutable(workerDir, exe string) string {
	if filepath.IsAbs(exe) {
		return exe
	}
	cand := filepath.Join(workerDir, exe)
	if runtime.GOOS == "windows" && filepath.Ext(cand) == "" {
		if _, err := os.Stat(cand + ".exe"); err == nil {
			cand += ".exe"
		}
	}
	if _, err := os.Stat(cand); err == nil {
		return cand
	}
	return exe
}

// expandArgs expands each argument and removes any %X% still unresolved (§1.1).
func expandArgs(args []string, getenv func(string) string) []string {
	var out []string
	for _, a := range args {
		v, _ := expandEnv(a, getenv)
		out = append(out, unresolvedRE.ReplaceAllString(v, ""))
	}
	return out
}

// parseFunctionTimeout reads functionTimeout (§1.10): the default for
// Flex/Premium/Dedicated is 30 min; "-1" means unbounded (0).
func parseFunctionTimeout(file string, raw *string) (time.Duration, error) {
	if raw == nil {
		return 30 * time.Minute, nil
	}
	switch v := strings.TrimSpace(*raw); v {
	case "-1", "-00:00:01":
		return 0, nil
	default:
		t, err := parseTimeSpan(v)
		if err != nil || t < time.Second {
			return 0, &ConfigError{File: file, Field: "functionTimeout", Problem: fmt.Sprintf("%q: expected a TimeSpan of at least 00:00:01, or -1 for unbounded", v)}
		}
		return t, nil
	}
}

// parseQueueOptions applies extensions.queues over the host's defaults (§2.1).
func parseQueueOptions(file string, qs *hostQueues, getenv func(string) string, development bool) (QueueOptions, error) {
	q := QueueOptions{BatchSize: 16, MaxPollingInterval: time.Minute, MaxDequeueCount: 5, Base64: true}
	if qs == nil {
		qs = &hostQueues{}
	}
	// Each check writes its field only when the value is valid; the first failure, in the
	// order of the fields here, is the one reported.
	if err := firstError(
		intSetting(file, "batchSize", qs.BatchSize, func(n int) bool { return n >= 1 && n <= 32 }, "expected 1–32", &q.BatchSize),
		intSetting(file, "newBatchThreshold", qs.NewBatchThreshold, func(n int) bool { return n >= 0 }, "expected >= 0", &q.NewBatchThreshold),
		spanSetting(file, "maxPollingInterval", qs.MaxPollingInterval, func(d time.Duration) bool { return d >= 100*time.Millisecond }, "expected a TimeSpan of at least 00:00:00.1", &q.MaxPollingInterval),
		spanSetting(file, "visibilityTimeout", qs.VisibilityTimeout, func(d time.Duration) bool { return d >= 0 && d <= 7*24*time.Hour }, "expected a TimeSpan between 00:00:00 and 7.00:00:00", &q.VisibilityTimeout),
		intSetting(file, "maxDequeueCount", qs.MaxDequeueCount, func(n int) bool { return n >= 1 }, "expected >= 1", &q.MaxDequeueCount),
		encodingSetting(file, qs.MessageEncoding, &q.Base64),
	); err != nil {
		return QueueOptions{}, err
	}
	if qs.NewBatchThreshold == nil {
		// §2.1: (batchSize / 2) * processorCount; 1 processor on Consumption (WEBSITE_SKU=Dynamic).
		procs := runtime.NumCPU()
		if getenv("WEBSITE_SKU") == "Dynamic" {
			procs = 1
		}
		q.NewBatchThreshold = (q.BatchSize / 2) * procs
	}
	if qs.MaxPollingInterval == nil && development {
		q.MaxPollingInterval = 2 * time.Second // §2.1: Development replaces the 1-min default
	}
	return q, nil
}

// firstError returns the first non-nil error.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// intSetting stores an integer extensions.queues setting in dst when it is set and valid.
func intSetting(file, name string, v *int, ok func(int) bool, want string, dst *int) error {
	if v == nil {
		return nil
	}
	if !ok(*v) {
		return &ConfigError{File: file, Field: "extensions.queues." + name, Problem: fmt.Sprintf("%d: %s", *v, want)}
	}
	*dst = *v
	return nil
}

// spanSetting stores a TimeSpan extensions.queues setting in dst when it is set and valid.
func spanSetting(file, name string, v *string, ok func(time.Duration) bool, want string, dst *time.Duration) error {
	if v == nil {
		return nil
	}
	d, err := parseTimeSpan(*v)
	if err != nil || !ok(d) {
		return &ConfigError{File: file, Field: "extensions.queues." + name, Problem: fmt.Sprintf("%q: %s", *v, want)}
	}
	*dst = d
	return nil
}

// encodingSetting reads extensions.queues.messageEncoding: "base64" or "none", any case.
func encodingSetting(file string, v *string, base64 *bool) error {
	if v == nil {
		return nil
	}
	switch strings.ToLower(*v) {
	case "base64":
		*base64 = true
	case "none":
		*base64 = false
	default:
		return &ConfigError{File: file, Field: "extensions.queues.messageEncoding", Problem: fmt.Sprintf("%q: expected \"base64\" or \"none\"", *v)}
	}
	return nil
}

// knownBindings are the binding types the local host implements.
var knownBindings = map[string]bool{"queuetrigger": true, "timertrigger": true, "httptrigger": true, "http": true, "blob": true}

func loadFunctions(src appSource, cfg *HostConfig, getenv func(string) string) ([]*Function, error) {
	entries, err := fs.ReadDir(src.fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read app root %s: %w", src.root, err)
	}
	var fns []*Function
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		file := src.file(e.Name() + "/function.json")
		raw, err := fs.ReadFile(src.fsys, e.Name()+"/function.json")
		if errors.Is(err, fs.ErrNotExist) {
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
		return nil, fmt.Errorf("%s: no function folders (<Name>/function.json next to host.json)", src.root)
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
	idx, err := fn.checkBindings(getenv)
	if err != nil {
		return nil, err
	}
	field := fmt.Sprintf("bindings[%d]", idx)
	switch strings.ToLower(fn.Trigger.Type) {
	case "queuetrigger":
		err = fn.setupQueue(field, getenv)
	case "timertrigger":
		err = fn.setupTimer(field, getenv)
	case "httptrigger":
		if herr := fn.setupHTTP(cfg); herr != nil {
			err = &ConfigError{File: file, Field: field, Problem: herr.Error()}
		}
	}
	if err != nil {
		return nil, err
	}
	return fn, nil
}

// checkBindings validates every binding, sets fn.Trigger, and returns the trigger's index.
func (fn *Function) checkBindings(getenv func(string) string) (int, error) {
	seen := map[string]bool{}
	var unknown []string
	idx := 0
	for i := range fn.Bindings {
		b := &fn.Bindings[i]
		field := fmt.Sprintf("bindings[%d]", i)
		if err := fn.checkBindingName(field, b.Name, seen); err != nil {
			return 0, err
		}
		t := strings.ToLower(b.Type)
		if !knownBindings[t] {
			unknown = append(unknown, b.Type)
			continue
		}
		isTrigger, err := fn.checkBinding(field, t, b, getenv)
		if err != nil {
			return 0, err
		}
		if isTrigger {
			idx = i
		}
	}
	if len(unknown) > 0 {
		// §5: the host's message for binding types it cannot find.
		return 0, &ConfigError{File: fn.File, Field: "bindings", Problem: fmt.Sprintf("The binding type(s) '%s' were not found in the configured extension bundle (the local host supports queueTrigger, timerTrigger, httpTrigger, http and blob outputs)", strings.Join(unknown, ", "))}
	}
	if fn.Trigger == nil {
		return 0, &ConfigError{File: fn.File, Field: "bindings", Problem: "no trigger binding; a function has exactly one trigger"}
	}
	return idx, nil
}

// checkBindingName requires a name, unique case-insensitively (§5).
func (fn *Function) checkBindingName(field, name string, seen map[string]bool) error {
	if name == "" {
		return &ConfigError{File: fn.File, Field: field + ".name", Problem: "missing"}
	}
	if seen[strings.ToLower(name)] {
		return &ConfigError{File: fn.File, Field: field + ".name", Problem: fmt.Sprintf("%q is used twice (binding names are compared case-insensitively)", name)}
	}
	seen[strings.ToLower(name)] = true
	return nil
}

// checkBinding validates one binding of a known type t (lower case): its direction, that
// it is the only trigger, its dataType and a blob output's path. It reports whether the
// binding is the trigger.
func (fn *Function) checkBinding(field, t string, b *Binding, getenv func(string) string) (bool, error) {
	dir := strings.ToLower(b.Direction)
	isTrigger := strings.HasSuffix(t, "trigger")
	switch {
	case isTrigger && dir != "in":
		return false, &ConfigError{File: fn.File, Field: field + ".direction", Problem: fmt.Sprintf("%q: a %s binding must have direction \"in\"", b.Direction, b.Type)}
	case !isTrigger && dir != "out":
		return false, &ConfigError{File: fn.File, Field: field + ".direction", Problem: fmt.Sprintf("%q: the local host supports %s bindings only as outputs (direction \"out\")", b.Direction, b.Type)}
	}
	if isTrigger {
		if fn.Trigger != nil {
			return false, &ConfigError{File: fn.File, Field: field, Problem: fmt.Sprintf("a second trigger (%s %q after %s %q); a function has exactly one trigger", b.Type, b.Name, fn.Trigger.Type, fn.Trigger.Name)}
		}
		fn.Trigger = b
	}
	if dt := strings.ToLower(b.DataType); dt != "" && dt != "string" && dt != "binary" && dt != "stream" {
		return false, &ConfigError{File: fn.File, Field: field + ".dataType", Problem: fmt.Sprintf("%q: expected \"string\", \"binary\" or \"stream\"", b.DataType)}
	}
	if t == "blob" {
		p, err := fn.blobPath(field, b.Path, getenv)
		if err != nil {
			return false, err
		}
		b.Path = p
	}
	return isTrigger, nil
}

// blobPath resolves a blob output's path, which must be "container/blob-name".
func (fn *Function) blobPath(field, path string, getenv func(string) string) (string, error) {
	if path == "" {
		return "", &ConfigError{File: fn.File, Field: field + ".path", Problem: "missing: a blob output needs \"container/blob-name\""}
	}
	p, err := resolveAppSettings(path, getenv)
	if err != nil {
		return "", &ConfigError{File: fn.File, Field: field + ".path", Problem: err.Error()}
	}
	if c, _, ok := strings.Cut(p, "/"); !ok || c == "" {
		return "", &ConfigError{File: fn.File, Field: field + ".path", Problem: fmt.Sprintf("%q: expected \"container/blob-name\"", path)}
	}
	return p, nil
}

// setupQueue resolves a queue trigger's queue and poison queue names.
func (fn *Function) setupQueue(field string, getenv func(string) string) error {
	// §2.1: %AppSetting% resolved, lower-cased, then validated.
	qn, err := resolveAppSettings(fn.Trigger.QueueName, getenv)
	if err != nil {
		return &ConfigError{File: fn.File, Field: field + ".queueName", Problem: err.Error()}
	}
	qn = strings.ToLower(qn)
	if why := storage.ValidQueueName(qn); why != "" {
		return &ConfigError{File: fn.File, Field: field + ".queueName", Problem: fmt.Sprintf("%q is not a valid queue name: %s", qn, why)}
	}
	fn.queueName = qn
	// §2.4: no poison queue for a queue already ending in -poison, or when the
	// -poison name would be invalid (source longer than 56 characters).
	if !strings.HasSuffix(qn, storage.PoisonSuffix) && storage.ValidQueueName(qn+storage.PoisonSuffix) == "" {
		fn.poisonName = qn + storage.PoisonSuffix
	}
	return nil
}

// setupTimer parses a timer trigger's schedule and decides whether its monitor is on.
func (fn *Function) setupTimer(field string, getenv func(string) string) error {
	tr := fn.Trigger
	expr, err := resolveAppSettings(tr.Schedule, getenv)
	if err != nil {
		return &ConfigError{File: fn.File, Field: field + ".schedule", Problem: err.Error()}
	}
	sched, err := parseSchedule(expr)
	if err != nil {
		return &ConfigError{File: fn.File, Field: field + ".schedule", Problem: err.Error()}
	}
	fn.schedule = sched
	fn.monitor = tr.UseMonitor == nil || *tr.UseMonitor
	if fn.monitor && sched.disablesMonitor() {
		fn.monitor = false // §3.3 ShouldDisableScheduleMonitor
	}
	return nil
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
	//lint:ignore ST1005 the timer extension's own message (§3.1), kept word for word
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
