package schedule

import "github.com/nightshift-jobs/nightshift"

// Feature returns the app feature serving recurring and delayed jobs: it registers the
// maintenance worker, one timer function per recurring job (Recurring<Name>) and the
// ScheduleSweep timer. Getenv and Logger default to the app's.
func Feature(opts *Options) nightshift.Feature {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	return nightshift.FeatureFunc(func(a *nightshift.App) error {
		if o.Getenv == nil {
			o.Getenv = a.Getenv
		}
		if o.Logger == nil {
			o.Logger = a.Logger()
		}
		return install(a.Registry(), a.Store(), o, a.AddFunction)
	})
}
