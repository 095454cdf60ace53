package nightshift_test

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// benchRecords is the number of status records of the index benchmarks
// (NIGHTSHIFT_BENCH_RECORDS, default 20,005).
func benchRecords(b *testing.B) int {
	n := 20005
	if v := os.Getenv("NIGHTSHIFT_BENCH_RECORDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 10 {
			b.Fatalf("NIGHTSHIFT_BENCH_RECORDS=%q", v)
		}
	}
	return n
}

// requests counts the HTTP requests the SDK sends.
type requests struct {
	n atomic.Int64
	c http.Client
}

func (r *requests) Do(req *http.Request) (*http.Response, error) {
	r.n.Add(1)
	return r.c.Do(req)
}

// benchHTTP counts the requests to the benchmarks' Azurite.
var benchHTTP = &requests{}

// benchBackends are a private Azurite with a disk store (not the shared one) and memory.
func benchBackends(b *testing.B) map[string]func() *storage.Clients {
	return map[string]func() *storage.Clients{
		"azurite": func() *storage.Clients {
			cs, stop, err := testenv.StartAzurite(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(stop)
			m := map[string]string{storage.SettingStorage: cs, storage.SettingNamePrefix: testenv.Prefix(b)}
			c, err := storage.FromEnv(func(k string) string { return m[k] }, &storage.Options{Transport: benchHTTP})
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Ensure(context.Background()); err != nil {
				b.Fatal(err)
			}
			return c
		},
		"memory": func() *storage.Clients { return testenv.Memory(b) },
	}
}

// BenchmarkJobsDead lists the 5 dead jobs among NIGHTSHIFT_BENCH_RECORDS status records,
// through the index and through the full scan, in the same run; it reports the storage
// calls of each (go test -run '^$' -bench JobsDead -benchtime 1x).
func BenchmarkJobsDead(b *testing.B) {
	n := benchRecords(b)
	for name, open := range benchBackends(b) {
		b.Run(name, func(b *testing.B) {
			start := time.Now()
			f := newIndexFixture(b, open(), n, n/5)
			b.Logf("%s: wrote %d records (%d dead) in %s", name, n, len(f.dead), time.Since(start).Round(time.Millisecond))
			for _, scan := range []bool{false, true} {
				mode := map[bool]string{false: "index", true: "scan"}[scan]
				b.Run(mode, func(b *testing.B) {
					for range b.N {
						f.count.Reset()
						benchHTTP.n.Store(0)
						got, err := f.client.ListJobs(context.Background(), nightshift.JobFilter{State: record.StateDead, Scan: scan})
						if err != nil || len(got) != len(f.dead) {
							b.Fatalf("%d jobs, %v", len(got), err)
						}
					}
					calls := f.count.Calls()
					b.ReportMetric(float64(f.count.Total()), "calls/op")
					b.ReportMetric(float64(calls["Get"]), "reads/op")
					if name == "azurite" {
						b.ReportMetric(float64(benchHTTP.n.Load()), "http/op")
					}
					b.Logf("%s %s: %v", name, mode, calls)
				})
			}
		})
	}
}

// BenchmarkStatusWrite is the cost of one status write with its index tags against the
// same write without them (one Put either way), alternating the two so that both meet the
// same machine and container: it reports ns/tagged and ns/untagged.
func BenchmarkStatusWrite(b *testing.B) {
	for name, open := range benchBackends(b) {
		b.Run(name, func(b *testing.B) {
			c := open()
			ctx := context.Background()
			st := &record.Status{JobID: "w", Kind: "mail.send", Queue: c.Layout.JobsQueue(), BatchID: "b1", State: record.StateRunning,
				Attempt: 1, EnqueuedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC()}
			seq := 0 // the benchmark runs more than once: every write creates a new record
			var tagged, plain time.Duration
			for range b.N {
				seq++
				st.JobID = "tagged-" + strconv.Itoa(seq)
				start := time.Now()
				if _, err := c.PutStatus(ctx, st, ""); err != nil {
					b.Fatal(err)
				}
				tagged += time.Since(start)
				st.JobID = "plain-" + strconv.Itoa(seq)
				start = time.Now()
				if _, err := c.PutJSON(ctx, c.Layout.StatusContainer(), storage.StatusBlob(st.JobID), st, ""); err != nil {
					b.Fatal(err)
				}
				plain += time.Since(start)
			}
			b.ReportMetric(float64(tagged.Nanoseconds())/float64(b.N), "ns/tagged")
			b.ReportMetric(float64(plain.Nanoseconds())/float64(b.N), "ns/untagged")
		})
	}
}
