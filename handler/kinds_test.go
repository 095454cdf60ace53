package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/netguard"
	bstore "github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

func job[T nightshift.JobArgs](args T) *nightshift.Job[T] {
	return &nightshift.Job[T]{ID: "j1", Kind: args.Kind(), Args: args, Attempt: 1, MaxAttempts: 3,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestCSVStats(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) { testCSVStats(t, b.Clients(t)) })
	}
}

func testCSVStats(t *testing.T, store *storage.Clients) {
	ctx := context.Background()
	container := store.Layout.Name("inputs")
	if err := store.Store().CreateContainer(ctx, container); err != nil {
		t.Fatal(err)
	}
	csvText := "city,temp,note\nOslo,3.5,cold\nRome,18,\nOslo,-1.5,\"snow, wind\"\n"
	if _, err := store.Store().Put(ctx, container, "daily.csv", []byte(csvText), bstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := newCSVStatsWorker(store, container)
	if err != nil {
		t.Fatal(err)
	}
	out, err := w.Work(ctx, job(CSVStatsArgs{Container: container, Blob: "daily.csv"}))
	if err != nil {
		t.Fatal(err)
	}
	rep := out.(*CSVReport)
	if rep.Rows != 3 || len(rep.Columns) != 3 || rep.Source != container+"/daily.csv" {
		t.Fatalf("%+v", rep)
	}
	city, temp, note := rep.Columns[0], rep.Columns[1], rep.Columns[2]
	if city.Name != "city" || city.Count != 3 || city.Distinct != 2 || city.Numeric != nil {
		t.Fatalf("city %+v", city)
	}
	if temp.Numeric == nil || temp.Numeric.Min != -1.5 || temp.Numeric.Max != 18 || temp.Numeric.Sum != 20 || temp.Numeric.Mean != 20.0/3 {
		t.Fatalf("temp %+v %+v", temp, temp.Numeric)
	}
	if note.Empty != 1 || note.Count != 2 {
		t.Fatalf("note %+v", note)
	}
	b, _ := json.Marshal(rep)
	if !strings.Contains(string(b), `"stddev"`) {
		t.Fatalf("report JSON %s", b)
	}

	for name, args := range map[string]CSVStatsArgs{
		"missing blob":  {Container: container, Blob: "nope.csv"},
		"no args":       {},
		"bad delimiter": {Container: container, Blob: "daily.csv", Delimiter: "ab"},
	} {
		if _, err := w.Work(ctx, job(args)); !nightshift.IsPermanent(err) {
			t.Errorf("%s: want a permanent error, got %v", name, err)
		}
	}
	if _, err := store.Store().Put(ctx, container, "broken.csv", []byte("a,b\n\"unterminated,1\n"), bstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Work(ctx, job(CSVStatsArgs{Container: container, Blob: "broken.csv"})); !nightshift.IsPermanent(err) || !strings.Contains(err.Error(), "line") {
		t.Fatalf("malformed CSV: %v", err)
	}
	// A blob over the limit is refused from its size, naming it.
	if _, err := w.download(ctx, container, "daily.csv", 10); !nightshift.IsPermanent(err) ||
		!strings.Contains(err.Error(), "is "+strconv.Itoa(len(csvText))+" bytes, over the limit of 10") {
		t.Fatalf("oversized CSV: %v", err)
	}
}

func TestHTTPFetch(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		switch r.URL.Path {
		case "/json":
			if r.Header.Get("Authorization") != "Bearer t" || r.Method != http.MethodPost {
				w.WriteHeader(400)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"ok":true}`))
		case "/text":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte("hello"))
		case "/flaky":
			w.WriteHeader(503)
		case "/gone":
			w.WriteHeader(404)
			_, _ = w.Write([]byte("no such thing"))
		}
	}))
	defer srv.Close()
	w := newHTTPFetchWorker(true)
	ctx := context.Background()
	out, err := w.Work(ctx, job(HTTPFetchArgs{URL: srv.URL + "/json", Method: "post", Headers: map[string]string{"Authorization": "Bearer t"}}))
	if err != nil {
		t.Fatal(err)
	}
	if r := out.(*FetchResult); r.Status != 200 || string(r.Body) != `{"ok":true}` {
		t.Fatalf("%+v", r)
	}
	out, err = w.Work(ctx, job(HTTPFetchArgs{URL: srv.URL + "/text"}))
	if err != nil || string(out.(*FetchResult).Body) != `"hello"` {
		t.Fatalf("%v %v", out, err)
	}
	if _, err := w.Work(ctx, job(HTTPFetchArgs{URL: srv.URL + "/flaky"})); err == nil || nightshift.IsPermanent(err) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("5xx must be retryable: %v", err)
	}
	if _, err := w.Work(ctx, job(HTTPFetchArgs{URL: srv.URL + "/gone"})); !nightshift.IsPermanent(err) || !strings.Contains(err.Error(), "no such thing") {
		t.Fatalf("404 must be permanent: %v", err)
	}
	if _, err := w.Work(ctx, job(HTTPFetchArgs{URL: "ftp://x"})); !nightshift.IsPermanent(err) {
		t.Fatalf("bad URL: %v", err)
	}
	// The default worker refuses loopback and private targets (SSRF).
	guarded := newHTTPFetchWorker(false)
	_, err = guarded.Work(ctx, job(HTTPFetchArgs{URL: srv.URL + "/text"}))
	var re *netguard.RefusedError
	if !nightshift.IsPermanent(err) || !errors.As(err, &re) || !strings.Contains(err.Error(), SettingFetchAllowPrivate) {
		t.Fatalf("want SSRF refusal, got %v", err)
	}
}
