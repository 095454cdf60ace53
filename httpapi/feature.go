package httpapi

import (
	"github.com/nightshift-jobs/nightshift"
)

// Functions returns the HTTP API's functions with their routes and methods (the
// functions/JobsAPI*, functions/BatchesAPI*, functions/DeadAPI* and functions/WorkflowsAPI* folders are generated
// from them).
func (a *API) Functions() []nightshift.FunctionSpec {
	fn := func(name, method, route string, serve nightshift.FunctionFunc) nightshift.FunctionSpec {
		return nightshift.FunctionSpec{Name: name, Trigger: nightshift.TriggerHTTP, Route: route, Methods: []string{method}, Serve: a.traced(name, route, serve)}
	}
	return []nightshift.FunctionSpec{
		fn(FunctionEnqueue, "post", "jobs", a.Enqueue),
		fn(FunctionList, "get", "jobs", a.List),
		fn(FunctionStatus, "get", "jobs/{id}", a.Status),
		fn(FunctionCancel, "post", "jobs/{id}/cancel", a.Cancel),
		fn(FunctionBatchStart, "post", "batches", a.StartBatch),
		fn(FunctionBatchStatus, "get", "batches/{id}", a.BatchStatus),
		fn(FunctionDeadReplay, "post", "dead/replay", a.DeadReplay),
		fn(FunctionPauses, "get", "pauses", a.Pauses),
		fn(FunctionPause, "post", "pauses", a.Pause),
		fn(FunctionResume, "post", "pauses/resume", a.Resume),
		fn(FunctionWorkflowStart, "post", "workflows", a.StartWorkflow),
		fn(FunctionWorkflowStatus, "get", "workflows/{id}", a.WorkflowStatus),
		fn(FunctionWorkflowCancel, "post", "workflows/{id}/cancel", a.CancelWorkflow),
	}
}

// Register adds the HTTP API's functions to h.
func (a *API) Register(h *nightshift.Handler) {
	for _, f := range a.Functions() {
		h.Handle(f.Name, f.Serve)
	}
}

// Feature returns the app feature serving the HTTP API with the app's client (its payload
// maximum and callback rule) and, unless opts.Kinds is set, refusing kinds the app's
// registry does not run. Logger defaults to the app's.
func Feature(opts *Options) nightshift.Feature {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	return nightshift.FeatureFunc(func(app *nightshift.App) error {
		if o.Kinds == nil {
			o.Kinds = app.Registry().Kinds
		}
		if o.Logger == nil {
			o.Logger = app.Logger()
		}
		if o.Tracer == nil {
			o.Tracer, _ = app.Observer().(RequestTracer)
		}
		for _, f := range New(app.Client(), &o).Functions() {
			if err := app.AddFunction(f); err != nil {
				return err
			}
		}
		return nil
	})
}
