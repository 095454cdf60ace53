package nightshift

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
)

// Trigger is how the Functions host invokes a function.
type Trigger string

// The triggers nightshift's functions use (docs/host-contract.md §2, §3, §1.7).
const (
	// TriggerQueue: one invocation per message on FunctionSpec.Queue.
	TriggerQueue Trigger = "queue"
	// TriggerTimer: one invocation per occurrence of FunctionSpec.Schedule.
	TriggerTimer Trigger = "timer"
	// TriggerHTTP: one invocation per request to /api/<FunctionSpec.Route>.
	TriggerHTTP Trigger = "http"
)

// Binding names in the generated function.json files: the names the invocation's Data
// carries the trigger under.
const (
	// QueueBinding is the queue trigger's binding ("message").
	QueueBinding = "message"
	// TimerBinding is the timer trigger's binding ("timer").
	TimerBinding = "timer"
	// HTTPBinding is the HTTP trigger's request binding ("req"); its response binding is
	// "res".
	HTTPBinding = "req"
)

// FunctionSpec is one function an App serves: its name (its folder in functions/), its
// trigger and the FunctionFunc that serves it. FunctionJSON renders the function.json the
// host reads from it.
type FunctionSpec struct {
	// Name is the function's name: [A-Za-z][A-Za-z0-9_-]*.
	Name string
	// Trigger is how the host invokes it.
	Trigger Trigger
	// Queue is the queue a queue-triggered function listens on.
	Queue string
	// Schedule is a timer's NCRONTAB expression or an app-setting reference (%NAME%).
	Schedule string
	// RunOnStartup fires a timer once when the host starts.
	RunOnStartup bool
	// UseMonitor keeps a timer's schedule status so that a missed occurrence is caught up.
	UseMonitor bool
	// Route is an HTTP function's route below /api/, with {name} parameters.
	Route string
	// Methods are the HTTP methods it accepts, lower case.
	Methods []string
	// Serve serves the invocations.
	Serve FunctionFunc
}

var functionName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,127}$`)

func (f *FunctionSpec) validate() error {
	if !functionName.MatchString(f.Name) {
		return fmt.Errorf("nightshift: function name %q: want a letter, then letters, digits, _ or - (at most 128)", f.Name)
	}
	if f.Serve == nil {
		return fmt.Errorf("nightshift: function %s has no Serve", f.Name)
	}
	switch f.Trigger {
	case TriggerQueue:
		if f.Queue == "" {
			return fmt.Errorf("nightshift: queue function %s names no queue", f.Name)
		}
	case TriggerTimer:
		if f.Schedule == "" {
			return fmt.Errorf("nightshift: timer function %s has no schedule", f.Name)
		}
	case TriggerHTTP:
		if f.Route == "" || len(f.Methods) == 0 {
			return fmt.Errorf("nightshift: HTTP function %s needs a route and methods", f.Name)
		}
	default:
		return fmt.Errorf("nightshift: function %s: unknown trigger %q", f.Name, f.Trigger)
	}
	return nil
}

// binding is one entry of function.json's bindings, with the properties in the order the
// checked-in files have them.
type binding struct {
	Name         string   `json:"name"`
	Type         string   `json:"type"`
	Direction    string   `json:"direction"`
	AuthLevel    string   `json:"authLevel,omitempty"`
	Methods      []string `json:"methods,omitempty"`
	Route        string   `json:"route,omitempty"`
	QueueName    string   `json:"queueName,omitempty"`
	Connection   string   `json:"connection,omitempty"`
	Schedule     string   `json:"schedule,omitempty"`
	RunOnStartup *bool    `json:"runOnStartup,omitempty"`
	UseMonitor   *bool    `json:"useMonitor,omitempty"`
}

// oneLineArray puts a short string array on one line, as the checked-in files have it.
var (
	oneLineArray = regexp.MustCompile(`\[\n\s+"[a-z]+"(?:,\n\s+"[a-z]+")*\n\s+\]`)
	quoted       = regexp.MustCompile(`"[a-z]+"`)
)

// FunctionJSON renders the function.json the host reads for f: a queue trigger on the
// storage account of AzureWebJobsStorage, a timer trigger, or an HTTP trigger with
// function-key authorization and its response binding.
func FunctionJSON(f FunctionSpec) ([]byte, error) {
	var bs []binding
	switch f.Trigger {
	case TriggerQueue:
		bs = []binding{{Name: QueueBinding, Type: "queueTrigger", Direction: "in", QueueName: f.Queue, Connection: "AzureWebJobsStorage"}}
	case TriggerTimer:
		bs = []binding{{Name: TimerBinding, Type: "timerTrigger", Direction: "in", Schedule: f.Schedule,
			RunOnStartup: &f.RunOnStartup, UseMonitor: &f.UseMonitor}}
	case TriggerHTTP:
		bs = []binding{
			{Name: HTTPBinding, Type: "httpTrigger", Direction: "in", AuthLevel: "function", Methods: f.Methods, Route: f.Route},
			{Name: "res", Type: "http", Direction: "out"},
		}
	default:
		return nil, fmt.Errorf("function %s: unknown trigger %q", f.Name, f.Trigger)
	}
	out, err := json.MarshalIndent(struct {
		Bindings []binding `json:"bindings"`
	}{bs}, "", "  ")
	if err != nil {
		return nil, err
	}
	out = oneLineArray.ReplaceAllFunc(out, func(m []byte) []byte {
		return append(append([]byte("["), bytes.Join(quoted.FindAll(m, -1), []byte(", "))...), ']')
	})
	return append(out, '\n'), nil
}

// FunctionFiles renders the function.json of every function the app serves, keyed by
// its path relative to the functions folder ("RunJob/function.json").
func (a *App) FunctionFiles() (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, f := range a.funcs {
		b, err := FunctionJSON(f)
		if err != nil {
			return nil, err
		}
		out[f.Name+"/function.json"] = b
	}
	return out, nil
}

// CheckFunctions compares the functions folder dir with FunctionFiles and lists the
// differences (none when the folder is up to date); a folder the app does not serve is
// stale.
func (a *App) CheckFunctions(dir string) ([]FunctionDrift, error) {
	files, err := a.FunctionFiles()
	if err != nil {
		return nil, err
	}
	return CheckFunctionFiles(dir, files, func(string) bool { return true })
}

// FunctionDrift is one difference between generated function.json files and a functions
// folder.
type FunctionDrift struct {
	// Path is relative to the functions folder.
	Path string
	// Problem is "missing", "differs" or "stale" (a folder the generator owns that it no
	// longer generates).
	Problem string
}

func (d FunctionDrift) String() string { return d.Path + ": " + d.Problem }

// CheckFunctionFiles compares the functions folder dir with files (relative path →
// content, as FunctionFiles returns them): each file missing or different, then each
// folder that owns claims but files lacks, in name order.
func CheckFunctionFiles(dir string, files map[string][]byte, owns func(folder string) bool) ([]FunctionDrift, error) {
	var out []FunctionDrift
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		cur, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		switch {
		case errors.Is(err, os.ErrNotExist):
			out = append(out, FunctionDrift{rel, "missing"})
		case err != nil:
			return nil, err
		case !bytes.Equal(cur, files[rel]):
			out = append(out, FunctionDrift{rel, "differs"})
		}
	}
	stale, err := StaleFunctionFolders(dir, files, owns)
	if err != nil {
		return nil, err
	}
	for _, s := range stale {
		out = append(out, FunctionDrift{s, "stale"})
	}
	return out, nil
}

// StaleFunctionFolders lists the folders of dir that owns claims and files has no
// function.json for, in name order (none when dir does not exist).
func StaleFunctionFolders(dir string, files map[string][]byte, owns func(folder string) bool) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() || !owns(e.Name()) {
			continue
		}
		if _, ok := files[e.Name()+"/function.json"]; !ok {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
