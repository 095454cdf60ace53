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
	"github.com/nightshift-jobs/nightshift/storage"
)

// CSVStatsArgs asks for statistics over a CSV file in Blob storage: per column, how many
// values, how many empty, how many distinct (up to a cap), and for numeric columns the
// minimum, maximum, mean and standard deviation. Typical reporting work: a nightly export
// lands in a container, a job summarises it.
type CSVStatsArgs struct {
	// Container and Blob locate the CSV file (in the app's storage account).
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

type csvStatsWorker struct {
	store *storage.Clients
}

// Work downloads the blob as a stream and summarises it row by row, so large files use
// little memory. A missing blob or malformed CSV is permanent: retrying cannot fix it.
func (w *csvStatsWorker) Work(ctx context.Context, job *nightshift.Job[CSVStatsArgs]) (any, error) {
	a := job.Args
	if a.Container == "" || a.Blob == "" {
		return nil, nightshift.Permanentf("csv_stats needs args.container and args.blob")
	}
	delim := ','
	if a.Delimiter != "" {
		r := []rune(a.Delimiter)
		if len(r) != 1 || r[0] == '"' || r[0] == '\n' || r[0] == '\r' {
			return nil, nightshift.Permanentf("csv_stats: delimiter %q must be one character other than a quote or newline", a.Delimiter)
		}
		delim = r[0]
	}
	resp, err := w.store.Blob.DownloadStream(ctx, a.Container, a.Blob, nil)
	if err != nil {
		if storage.IsNotFound(err) {
			return nil, nightshift.Permanentf("csv_stats: blob %s/%s does not exist", a.Container, a.Blob)
		}
		return nil, fmt.Errorf("csv_stats: download %s/%s: %w", a.Container, a.Blob, err)
	}
	defer resp.Body.Close()
	job.Logger.Info("summarising CSV", "container", a.Container, "blob", a.Blob)
	report, err := summarise(resp.Body, delim, !a.NoHeader)
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, nightshift.Permanent(fmt.Errorf("csv_stats: %s/%s: %w", a.Container, a.Blob, err))
		}
		return nil, fmt.Errorf("csv_stats: reading %s/%s: %w", a.Container, a.Blob, err)
	}
	report.Source = a.Container + "/" + a.Blob
	job.Logger.Info("CSV summarised", "rows", report.Rows, "columns", len(report.Columns))
	return report, nil
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
