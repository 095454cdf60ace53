package nightshift_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/record"
)

// After a crash storm, one call replays the dead letters that crashes caused (not their
// jobs), at most 10 per second, and leaves the others dead. Here the only dead letter is
// a job that failed on its own (cause job), so the crash replay takes nothing; a dry run
// of its reason shows what a replay would do.
func ExampleClient_ReplayDead() {
	app := resizeApp()
	client := nightshift.NewClient(app.Storage(), nil)
	ctx := context.Background()
	if _, err := client.Enqueue(ctx, ResizeArgs{Blob: "in/cat.png", Width: 0}, nil); err != nil {
		log.Fatal(err)
	}
	if _, err := app.Drain(ctx); err != nil {
		log.Fatal(err)
	}
	rep, err := client.ReplayDead(ctx, nightshift.DeadSelection{
		Reason: record.ReasonHostRetriesExhausted, Cause: record.CauseCrash, Since: time.Now().Add(-time.Hour),
	}, &nightshift.ReplayDeadOptions{Limit: 100})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("crash-caused dead letters replayed:", rep.Replayed)
	rep, err = client.ReplayDead(ctx, nightshift.DeadSelection{Reason: record.ReasonPermanentError}, &nightshift.ReplayDeadOptions{DryRun: true})
	if err != nil {
		log.Fatal(err)
	}
	d, _ := client.DeadLetter(ctx, rep.Outcomes[0].DeadID)
	fmt.Println(rep.Taken, "permanent_error dead letter, cause", d.Cause, "- would replay as life", rep.Outcomes[0].Replay)
	// Output:
	// crash-caused dead letters replayed: 0
	// 1 permanent_error dead letter, cause job - would replay as life 1
}
