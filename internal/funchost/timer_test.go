package funchost

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

func timerFn(schedule string, runOnStartup, useMonitor bool) string {
	b, _ := json.Marshal(map[string]any{"bindings": []map[string]any{{
		"name": "myTimer", "type": "timerTrigger", "direction": "in",
		"schedule": schedule, "runOnStartup": runOnStartup, "useMonitor": useMonitor}}})
	return string(b)
}

type timerBody struct {
	Data struct {
		MyTimer struct {
			Schedule       struct{ AdjustForDST bool }
			ScheduleStatus *struct{ Last, Next, LastUpdated string }
			IsPastDue      bool
		} `json:"myTimer"`
	}
	Metadata map[string]json.RawMessage
}

func (a *app) hostBlobText(name string) (string, bool) {
	a.t.Helper()
	resp, err := testenv.BlobService(a.clients).ServiceClient().NewContainerClient(storage.HostContainer).NewBlobClient(name).DownloadStream(context.Background(), nil)
	if storage.IsNotFound(err) {
		return "", false
	}
	must(a.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), true
}

func (a *app) putHostBlob(name, text string) {
	a.t.Helper()
	ctx := context.Background()
	_, err := testenv.BlobService(a.clients).CreateContainer(ctx, storage.HostContainer, nil)
	if err != nil && !storage.IsConflict(err) {
		a.t.Fatal(err)
	}
	_, err = testenv.BlobService(a.clients).UploadBuffer(ctx, storage.HostContainer, name, []byte(text), nil)
	must(a.t, err)
}

func TestTimer_3_4_PastDueFiresOnce(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), map[string]string{"Yearly": timerFn("0 0 0 1 1 *", false, true)})
	hostID := a.prefix
	statusBlob := TimerStatusBlob(hostID, "Yearly")
	// Missed 2021 … 2026: still exactly one catch-up.
	a.putHostBlob(statusBlob, `{"Last":"2020-01-01T00:00:00+00:00","Next":"2021-01-01T00:00:00+00:00","LastUpdated":"2020-01-01T00:00:00+00:00"}`)
	a.run(Options{HostID: hostID})
	testenv.WaitFor(t, 20*time.Second, "the past-due invocation", func() bool { return len(a.records_("Yearly")) == 1 })
	want := time.Date(time.Now().UTC().Year()+1, 1, 1, 0, 0, 0, 0, time.UTC).Format("2006-01-02T15:04:05+00:00")
	testenv.WaitFor(t, 10*time.Second, "the status update", func() bool {
		s, _ := a.hostBlobText(statusBlob)
		return strings.Contains(s, `"Next":"`+want+`"`)
	})
	var body timerBody
	must(t, json.Unmarshal(a.records_("Yearly")[0].Body, &body))
	tm := body.Data.MyTimer
	if !tm.IsPastDue || !tm.Schedule.AdjustForDST || tm.ScheduleStatus == nil {
		t.Fatalf("timer info %+v", tm)
	}
	if tm.ScheduleStatus.Last != "2020-01-01T00:00:00+00:00" || tm.ScheduleStatus.Next != "2021-01-01T00:00:00+00:00" {
		t.Errorf("ScheduleStatus %+v, want the recorded status", *tm.ScheduleStatus)
	}
	if len(body.Metadata) != 1 || body.Metadata["sys"] == nil {
		t.Errorf("Metadata %v, want only sys", body.Metadata)
	}
	if n := len(a.records_("Yearly")); n != 1 {
		t.Errorf("fired %d times", n)
	}
}

func TestTimer_3_4_FirstStartWritesStatusAndWaits(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), map[string]string{"Yearly": timerFn("0 0 0 1 1 *", false, true)})
	a.run(Options{HostID: a.prefix})
	var s string
	testenv.WaitFor(t, 20*time.Second, "the initial status blob", func() bool {
		var ok bool
		s, ok = a.hostBlobText(TimerStatusBlob(a.prefix, "Yearly"))
		return ok
	})
	if !strings.Contains(s, `"Last":"0001-01-01T00:00:00+00:00"`) || !strings.Contains(s, `"Next":"`+time.Date(time.Now().UTC().Year()+1, 1, 1, 0, 0, 0, 0, time.UTC).Format("2006-01-02T15:04:05+00:00")+`"`) {
		t.Errorf("status %s", s)
	}
	if n := len(a.records_("Yearly")); n != 0 {
		t.Errorf("fired %d times on first start", n)
	}
}

func TestTimer_1_6_RunOnStartupMonitorOff(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), map[string]string{"Boot": timerFn("0 0 0 1 1 *", true, false)})
	a.run(Options{HostID: a.prefix})
	testenv.WaitFor(t, 20*time.Second, "the start-up invocation", func() bool { return len(a.records_("Boot")) == 1 })
	var raw struct{ Data map[string]json.RawMessage }
	must(t, json.Unmarshal(a.records_("Boot")[0].Body, &raw))
	if got := string(raw.Data["myTimer"]); got != `{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}` {
		t.Errorf("Data.myTimer = %s", got)
	}
	if _, ok := a.hostBlobText(TimerStatusBlob(a.prefix, "Boot")); ok {
		t.Error("status blob written with useMonitor false")
	}
}

func TestTimer_3_6_NoOverlappingRuns(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), map[string]string{"Tick": timerFn("*/1 * * * * *", false, true)})
	a.settings["TESTHANDLER_DEFAULT"] = "sleep"
	a.settings["TESTHANDLER_SLEEP_MS"] = "1500"
	a.run(Options{HostID: a.prefix})
	testenv.WaitFor(t, 30*time.Second, "three runs", func() bool { return len(a.records_("Tick")) >= 3 })
	for i, r := range a.records_("Tick") {
		if r.Concurrent != 1 {
			t.Errorf("run %d overlapped another (%d in flight)", i, r.Concurrent)
		}
		var body timerBody
		must(t, json.Unmarshal(r.Body, &body))
		if body.Data.MyTimer.ScheduleStatus != nil {
			t.Error("every-second schedules switch the monitor off (§3.3)")
		}
	}
}

func TestTimer_3_5_TwoHostsShareOneTimer(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), map[string]string{"Tick": timerFn("*/1 * * * * *", false, true)})
	hostOpts := func(tag string) Options {
		s := map[string]string{"TESTHANDLER_TAG": tag}
		for k, v := range a.settings {
			s[k] = v
		}
		return Options{HostID: a.prefix, Settings: s, ListenerLockPeriod: 15 * time.Second, ListenerLockRecoveryPollingInterval: 500 * time.Millisecond}
	}
	cancels := map[string]context.CancelFunc{}
	dones := map[string]<-chan error{}
	for _, tag := range []string{"A", "B"} {
		_, cancels[tag], dones[tag] = a.run(hostOpts(tag))
	}
	testenv.WaitFor(t, 30*time.Second, "four runs", func() bool { return len(a.records_("Tick")) >= 4 })
	recs := a.records_("Tick")
	owner := recs[0].Tag
	for _, r := range recs {
		if r.Tag != owner {
			t.Fatalf("both hosts ran the timer: %s and %s", owner, r.Tag)
		}
	}
	// Stop the owner; the other host takes the released lease over.
	other := map[string]string{"A": "B", "B": "A"}[owner]
	cancels[owner]()
	<-dones[owner]
	testenv.WaitFor(t, 30*time.Second, "the other host to take over", func() bool {
		for _, r := range a.records_("Tick") {
			if r.Tag == other {
				return true
			}
		}
		return false
	})
}

func TestTimer_3_2_EvaluatedInTimeZone(t *testing.T) {
	t.Parallel()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no tz database")
	}
	a := newApp(t, testHostJSON{}.render(), map[string]string{"Yearly": timerFn("0 0 0 1 1 *", true, true)})
	a.run(Options{HostID: a.prefix, TimeZone: ny})
	testenv.WaitFor(t, 20*time.Second, "the start-up invocation", func() bool { return len(a.records_("Yearly")) == 1 })
	var body timerBody
	must(t, json.Unmarshal(a.records_("Yearly")[0].Body, &body))
	want := time.Date(time.Now().In(ny).Year()+1, 1, 1, 0, 0, 0, 0, ny).Format("2006-01-02T15:04:05-07:00")
	if st := body.Data.MyTimer.ScheduleStatus; st == nil || st.Next != want || body.Data.MyTimer.IsPastDue {
		t.Errorf("ScheduleStatus %+v, want Next %s (midnight in New York)", st, want)
	}
}
