// Command testhandler is a custom handler for the local host's conformance tests. What it
// does is driven by the queue message (a JSON object with a "do" field) and, at start-up,
// by environment variables. Every request it receives is appended, with its headers, to
// $TESTHANDLER_DIR/<key>.log (key = the message's "key", else the function name) as one
// JSON line, so tests can assert the exact payload the host sent.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type command struct {
	Do          string          `json:"do"`
	Key         string          `json:"key"`
	MS          int             `json:"ms"`
	N           int             `json:"n"`
	Outputs     json.RawMessage `json:"outputs"`
	Logs        []string        `json:"logs"`
	ReturnValue json.RawMessage `json:"returnValue"`
	Line        string          `json:"line"`
}

// Record is one line of a <key>.log file.
type record struct {
	Function string              `json:"function"`
	Tag      string              `json:"tag"`
	PID      int                 `json:"pid"`
	Headers  map[string][]string `json:"headers"`
	Body     json.RawMessage     `json:"body"`
	Path     string              `json:"path"`
	// Concurrent is how many requests were in flight when this one arrived (itself included).
	Concurrent int64 `json:"concurrent"`
	// Env holds the FUNCTIONS_* variables and the working directory.
	Env map[string]string `json:"env"`
	At  time.Time         `json:"at"`
}

var inflight atomic.Int64

func env() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FUNCTIONS_") || strings.HasPrefix(kv, "TESTHANDLER_") {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
	}
	m["CWD"], _ = os.Getwd()
	m["ARGS"] = strings.Join(os.Args[1:], " ")
	return m
}

var mu sync.Mutex

func appendRecord(key string, rec record) {
	dir := os.Getenv("TESTHANDLER_DIR")
	if dir == "" {
		return
	}
	b, _ := json.Marshal(rec)
	mu.Lock()
	defer mu.Unlock()
	f, err := os.OpenFile(filepath.Join(dir, key+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	_, _ = f.Write(append(b, '\n'))
}

func main() {
	switch os.Getenv("TESTHANDLER_STARTUP") {
	case "crash":
		fmt.Fprintln(os.Stderr, "testhandler: crashing at start-up as asked")
		os.Exit(2)
	case "hang":
		select {}
	}
	port := os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT")
	fmt.Println("testhandler: listening on port", port)
	fmt.Fprintln(os.Stderr, "testhandler: warning: this is a test handler")
	fmt.Fprintln(os.Stderr, "testhandler: an error line")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/api/", forwarded)
	mux.HandleFunc("POST /{fn}", invoke)
	srv := &http.Server{Addr: "127.0.0.1:" + port, Handler: mux}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// forwarded answers forwarded HTTP requests (enableForwardingHttpRequest) with what it got,
// and status 418 so tests see that any status passes through.
func forwarded(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTeapot)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery, "body": string(body),
		"invocationId": r.Header.Get("X-Azure-Functions-InvocationId"),
	})
}

// decodeCommand finds the command in the invocation's Data: a queue message (double-encoded
// string, or base64 with dataType binary) or the body of a JSON-wrapped HTTP request.
func decodeCommand(data map[string]json.RawMessage) command {
	var cmd command
	for _, v := range data {
		var s string
		if json.Unmarshal(v, &s) != nil {
			if strings.Contains(string(v), `"Body"`) { // JSON-wrapped HTTP request
				var hr struct{ Body string }
				_ = json.Unmarshal(v, &hr)
				_ = json.Unmarshal([]byte(hr.Body), &cmd)
			}
			continue
		}
		var text string
		if json.Unmarshal([]byte(s), &text) != nil {
			// dataType binary: a single base64 string
			b, _ := base64.StdEncoding.DecodeString(s)
			text = string(b)
		}
		_ = json.Unmarshal([]byte(text), &cmd)
	}
	return cmd
}

// fixedAnswers are the commands whose answer does not depend on the request: each breaks
// one rule of the host's response parsing (§1.8).
var fixedAnswers = map[string]func(w http.ResponseWriter){
	"text": func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(`{"Outputs":{}}`))
	},
	"nocontenttype": func(w http.ResponseWriter) {
		w.Header()["Content-Type"] = nil
		_, _ = w.Write([]byte(`{"Outputs":{}}`))
	},
	"badjson": func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"Outputs":`))
	},
	"empty": func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
	},
}

func invoke(w http.ResponseWriter, r *http.Request) {
	concurrent := inflight.Add(1)
	defer inflight.Add(-1)
	fn := r.PathValue("fn")
	raw, _ := io.ReadAll(r.Body)
	var req struct {
		Data     map[string]json.RawMessage
		Metadata map[string]json.RawMessage
	}
	if err := json.Unmarshal(raw, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := decodeCommand(req.Data)
	if cmd.Do == "" {
		cmd.Do = os.Getenv("TESTHANDLER_DEFAULT")
	}
	key := cmd.Key
	if key == "" {
		key = fn
	}
	appendRecord(key, record{Function: fn, Tag: os.Getenv("TESTHANDLER_TAG"), PID: os.Getpid(), Headers: r.Header, Body: raw, Path: r.URL.Path,
		Concurrent: concurrent, Env: env(), At: time.Now()})
	ok := func() {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"Outputs": cmd.Outputs, "Logs": cmd.Logs, "ReturnValue": cmd.ReturnValue})
	}
	if fixed, found := fixedAnswers[cmd.Do]; found {
		fixed(w)
		return
	}
	switch cmd.Do {
	case "", "ok":
		ok()
	case "fail":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"Logs":["this log must be ignored"]}`))
	case "failuntil":
		var dc string
		_ = json.Unmarshal(req.Metadata["DequeueCount"], &dc)
		if n, _ := strconv.Atoi(dc); n < cmd.N {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		ok()
	case "sleep":
		if cmd.MS == 0 {
			cmd.MS, _ = strconv.Atoi(os.Getenv("TESTHANDLER_SLEEP_MS"))
		}
		time.Sleep(time.Duration(cmd.MS) * time.Millisecond)
		ok()
	case "crash":
		// Crash while DequeueCount < n (n defaults to 2: crash on the first delivery only).
		var dc string
		_ = json.Unmarshal(req.Metadata["DequeueCount"], &dc)
		if cmd.N == 0 {
			cmd.N = 2
		}
		if n, _ := strconv.Atoi(dc); n < cmd.N {
			fmt.Fprintln(os.Stderr, "testhandler: crashing as asked")
			os.Exit(3)
		}
		ok()
	case "echo":
		// The request body, base64-encoded, into the "out" binding (§1.9 robust pattern).
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"Outputs": map[string]string{"out": base64.StdEncoding.EncodeToString(raw)}})
	case "print":
		fmt.Println(cmd.Line)
		fmt.Fprintln(os.Stderr, cmd.Line)
		ok()
	default:
		http.Error(w, "unknown command "+cmd.Do, http.StatusBadRequest)
	}
}
