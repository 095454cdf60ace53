package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/storage"
)

// CSVStatsArgs asks for statistics over a CSV file in Blob storage: per column, how many
// values, how many empty, how many distinct (up to a cap), and for numeric columns the
// minimum, maximum, mean and standard deviation. Typical reporting work: a nightly export
// lands in a container, a job summarises it.
type CSVStatsArgs struct {
	// Container and Blob locate the CSV file (in the app's storage account). Container
	// must be listed in NIGHTSHIFT_CSV_CONTAINERS (SettingCSVContainers); Blob is at most
	// MaxCSVBlobName characters without "." or ".." segments, and the blob at most
	// MaxCSVBytes.
	Container string `json:"container"`
	Blob      string `json:"blob"`
	// Delimiter is the field separator, default ",".
	Delimiter string `json:"delimiter,omitempty"`
	// NoHeader says the first row is data; columns are then named col1, col2, ….
	NoHeader bool `json:"no_header,omitempty"`
}

// Kind implements nightshift.JobArgs.
func (CSVStatsArgs) Kind() string { return "csv_stats" }

// CSVReport is the csv_stats result.
type CSVReport struct {
	Source  string        `json:"source"`
	Rows    int           `json:"rows"`
	Columns []ColumnStats `json:"columns"`
}

// ColumnStats summarises one column.
type ColumnStats struct {
	Name     string `json:"name"`
	Count    int    `json:"count"`
	Empty    int    `json:"empty"`
	Distinct int    `json:"distinct"`
	// DistinctCapped is true when more than maxDistinct values were seen.
	DistinctCapped bool `json:"distinct_capped,omitempty"`
	// Numeric holds statistics when every non-empty value is a number.
	Numeric *NumericStats `json:"numeric,omitempty"`

	seen      map[string]struct{}
	n         int
	sum, sum2 float64
	min, max  float64
	notNumber bool
}

// NumericStats are the statistics of a numeric column.
type NumericStats struct {
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
	StdDev float64 `json:"stddev"`
	Sum    float64 `json:"sum"`
}

const maxDistinct = 10000

// SettingCSVContainers names the containers csv_stats may read: a comma-separated list of
// container names, e.g. "uploads,exports". Unset or empty, csv_stats reads no container.
// Job args come from whoever can enqueue, so without the list any holder of a function
// key or queue sender role could read any blob the app's identity can. nightshift's own
// containers, the Functions host's (azure-webjobs-*), deployment packages (app-package-*,
// deploymentpackage*, scm-releases), diagnostics exports (insights-*) and storage system
// containers ($logs, $web, …) are refused even when listed: the handler does not start.
const SettingCSVContainers = "NIGHTSHIFT_CSV_CONTAINERS"

// MaxCSVBytes bounds the CSV blobs csv_stats reads (256 MiB): a larger blob is a
// permanent error, found from its size before the download or, failing that, while
// reading.
const MaxCSVBytes = 256 << 20

// MaxCSVBlobName bounds args.blob (1024 characters, Blob storage's own limit).
const MaxCSVBlobName = 1024

type csvStatsWorker struct {
	store *storage.Clients
	// containers are the containers SettingCSVContainers allows.
	containers map[string]bool
}

// newCSVStatsWorker returns the worker reading the containers listed in setting (the
// value of SettingCSVContainers).
func newCSVStatsWorker(store *storage.Clients, setting string) (*csvStatsWorker, error) {
	containers, err := parseCSVContainers(setting, store.Layout)
	if err != nil {
		return nil, err
	}
	return &csvStatsWorker{store: store, containers: containers}, nil
}

// parseCSVContainers reads the SettingCSVContainers list: valid container names, none of
// them refused by reservedContainer.
func parseCSVContainers(v string, layout storage.Layout) (map[string]bool, error) {
	out := map[string]bool{}
	for _, name := range strings.Split(v, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if why := reservedContainer(name, layout); why != "" {
			return nil, &storage.SettingError{Setting: SettingCSVContainers, Problem: fmt.Sprintf("%q is %s; csv_stats never reads it", name, why)}
		}
		// Container names follow the queue name rules: 3–63 lowercase letters, digits
		// and single hyphens, starting and ending with a letter or digit.
		if why := storage.ValidQueueName(name); why != "" {
			return nil, &storage.SettingError{Setting: SettingCSVContainers, Problem: fmt.Sprintf("%q is not a container name: %s", name, why)}
		}
		out[name] = true
	}
	return out, nil
}

// reservedPrefixes are the containers of the platform around the app, by name prefix.
var reservedPrefixes = []struct{ prefix, what string }{
	{"$", "a storage system container"},
	{"azure-webjobs-", "a Functions host container"},
	{"app-package-", "a deployment package container"},
	{"deploymentpackage", "a deployment package container"},
	{"scm-releases", "a deployment package container"},
	{"insights-", "a diagnostics export container"},
}

// reservedContainer says why csv_stats must never read container name ("" when it may):
// nightshift's own containers (of this layout or, by base name, of any other prefix) and
// the platform's.
func reservedContainer(name string, layout storage.Layout) string {
	for _, c := range layout.Containers() {
		if name == c {
			return "one of nightshift's own containers"
		}
	}
	for _, base := range (storage.Layout{}).Containers() {
		if name == base || strings.HasSuffix(name, "-"+base) {
			return "one of nightshift's own containers (of another name prefix)"
		}
	}
	for _, r := range reservedPrefixes {
		if strings.HasPrefix(name, r.prefix) {
			return r.what
		}
	}
	return ""
}

// validBlobName says why args.blob cannot be read ("" when it can): it must be 1–
// MaxCSVBlobName characters, with no empty, "." or ".." path segments, backslashes or
// control characters, so it names a blob inside the container and nothing else.
func validBlobName(name string) string {
	if len(name) > MaxCSVBlobName {
		return fmt.Sprintf("is longer than %d characters", MaxCSVBlobName)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return `has an empty, "." or ".." path segment`
		}
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return "contains a backslash or control character"
		}
	}
	return ""
}

// errCSVTooLarge is returned by capped once more than MaxCSVBytes were read.
var errCSVTooLarge = fmt.Errorf("blob is larger than %d bytes (MaxCSVBytes)", MaxCSVBytes)

// capped reads r up to n bytes and fails with errCSVTooLarge when there is more.
type capped struct {
	r io.Reader
	n int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.n <= 0 {
		var one [1]byte
		if k, _ := io.ReadFull(c.r, one[:]); k > 0 {
			return 0, errCSVTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	k, err := c.r.Read(p)
	c.n -= int64(k)
	return k, err
}

// Work reads the blob (at most MaxCSVBytes, through the storage boundary) and
// summarises it row by row. A container not listed in SettingCSVContainers, a bad blob name, a
// missing, oversized or malformed blob are permanent: retrying cannot fix them.
func (w *csvStatsWorker) Work(ctx context.Context, job *nightshift.Job[CSVStatsArgs]) (any, error) {
	a := job.Args
	if a.Container == "" || a.Blob == "" {
		return nil, nightshift.Permanentf("csv_stats needs args.container and args.blob")
	}
	// The caller's container is checked against the operator's list only; the error
	// names the setting, never the containers it lists.
	if !w.containers[a.Container] || reservedContainer(a.Container, w.store.Layout) != "" {
		return nil, nightshift.Permanentf("csv_stats: container %q is not one csv_stats may read (the operator lists them in %s)", a.Container, SettingCSVContainers)
	}
	if why := validBlobName(a.Blob); why != "" {
		return nil, nightshift.Permanentf("csv_stats: args.blob %s", why)
	}
	delim := ','
	if a.Delimiter != "" {
		r := []rune(a.Delimiter)
		if len(r) != 1 || r[0] == '"' || r[0] == '\n' || r[0] == '\r' {
			return nil, nightshift.Permanentf("csv_stats: delimiter %q must be one character other than a quote or newline", a.Delimiter)
		}
		delim = r[0]
	}
	body, err := w.download(ctx, a.Container, a.Blob, MaxCSVBytes)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	job.Logger.Info("summarising CSV", "container", a.Container, "blob", a.Blob)
	report, err := summarise(&capped{r: body, n: MaxCSVBytes}, delim, !a.NoHeader)
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) || errors.Is(err, errCSVTooLarge) {
			return nil, nightshift.Permanent(fmt.Errorf("csv_stats: %s/%s: %w", a.Container, a.Blob, err))
		}
		return nil, fmt.Errorf("csv_stats: reading %s/%s: %w", a.Container, a.Blob, err)
	}
	report.Source = a.Container + "/" + a.Blob
	job.Logger.Info("CSV summarised", "rows", report.Rows, "columns", len(report.Columns))
	return report, nil
}

// download opens the CSV blob through the storage boundary, streamed (the caller caps
// the read at limit, MaxCSVBytes, and closes it). A missing blob, or one whose size is
// over limit, is a permanent error.
func (w *csvStatsWorker) download(ctx context.Context, cont, name string, limit int64) (io.ReadCloser, error) {
	bs := w.store.Store()
	body, _, err := bs.Open(ctx, cont, name, limit)
	switch {
	case err == nil:
		return body, nil
	case storage.IsNotFound(err):
		return nil, nightshift.Permanentf("csv_stats: blob %s/%s does not exist", cont, name)
	case errors.Is(err, store.ErrTooLarge):
		if p, perr := bs.Properties(ctx, cont, name); perr == nil && p.ContentLength > limit {
			return nil, nightshift.Permanentf("csv_stats: blob %s/%s is %d bytes, over the limit of %d (MaxCSVBytes)", cont, name, p.ContentLength, limit)
		}
		// Over the limit when opened, though no longer (it was rewritten meanwhile).
		return nil, nightshift.Permanent(fmt.Errorf("csv_stats: %s/%s: %w", cont, name, errCSVTooLarge))
	}
	return nil, fmt.Errorf("csv_stats: download %s/%s: %w", cont, name, err)
}

func summarise(r io.Reader, delim rune, header bool) (*CSVReport, error) {
	cr := csv.NewReader(r)
	cr.Comma = delim
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	rep := &CSVReport{}
	first := true
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if first && header {
			for _, name := range rec {
				rep.Columns = append(rep.Columns, ColumnStats{Name: strings.TrimSpace(name)})
			}
			first = false
			continue
		}
		first = false
		rep.Rows++
		for i, v := range rec {
			for len(rep.Columns) <= i {
				rep.Columns = append(rep.Columns, ColumnStats{Name: "col" + strconv.Itoa(len(rep.Columns)+1)})
			}
			rep.Columns[i].add(strings.TrimSpace(v))
		}
	}
	for i := range rep.Columns {
		rep.Columns[i].finish()
	}
	return rep, nil
}

func (c *ColumnStats) add(v string) {
	if v == "" {
		c.Empty++
		return
	}
	c.Count++
	if c.seen == nil {
		c.seen = map[string]struct{}{}
	}
	if len(c.seen) < maxDistinct {
		c.seen[v] = struct{}{}
	} else if _, ok := c.seen[v]; !ok {
		c.DistinctCapped = true
	}
	if c.notNumber {
		return
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		c.notNumber = true
		return
	}
	if c.n == 0 || f < c.min {
		c.min = f
	}
	if c.n == 0 || f > c.max {
		c.max = f
	}
	c.n++
	c.sum += f
	c.sum2 += f * f
}

func (c *ColumnStats) finish() {
	c.Distinct = len(c.seen)
	if c.notNumber || c.n == 0 {
		return
	}
	mean := c.sum / float64(c.n)
	variance := c.sum2/float64(c.n) - mean*mean
	if variance < 0 {
		variance = 0
	}
	c.Numeric = &NumericStats{Min: c.min, Max: c.max, Mean: mean, StdDev: math.Sqrt(variance), Sum: c.sum}
}
