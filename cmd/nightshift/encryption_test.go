package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/seal"
)

// With an encryption key configured, `dead show` opens a dead job's sealed args for the
// operator, and `dead replay` runs the job again with them.
func TestDeadShowAndReplayOpenSealedArgs(t *testing.T) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	t.Setenv(seal.SettingLocalKeys, "k1:"+base64.StdEncoding.EncodeToString(key))
	e := newCLIEnv(t)
	if e.store.Sealer == nil {
		t.Fatal("the CLI's storage has no sealer with " + seal.SettingLocalKeys + " set")
	}
	ctx := context.Background()
	const marker = "MARKER-cli-91b2-SENSITIVE"
	res, err := e.client.EnqueueRaw(ctx, "cli.flaky", json.RawMessage(`{"secret":"`+marker+`"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.runJobs()
	d, err := e.client.DeadLetter(ctx, res.JobID)
	if err != nil || d.Envelope == nil || len(d.Envelope.ArgsSealed) == 0 || len(d.Envelope.Args) != 0 {
		t.Fatalf("dead letter: %+v, %v", d, err)
	}
	out, _, code := e.run("", "dead", "show", res.JobID)
	if code != 0 || !strings.Contains(out, `args:        {"secret":"`+marker+`"}`) {
		t.Fatalf("dead show: %d %q", code, out)
	}
	if out, _, code = e.run("", "dead", "replay", res.JobID); code != 0 {
		t.Fatalf("replay: %d %q", code, out)
	}
	e.runJobs()
	if st, err := e.client.Status(ctx, res.JobID); err != nil || st.State != record.StateSucceeded || st.Replay != 1 {
		t.Fatalf("after replay: %+v, %v", st, err)
	}
}
