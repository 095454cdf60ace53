package callback

import "github.com/nightshift-jobs/nightshift"

// Feature returns the app feature delivering callbacks with opts, or with the options
// read from the app's settings (FromEnv) when opts is nil: it registers the delivery kind, enqueues a delivery job when
// a job or a workflow that asked for a callback ends, and makes the app's client refuse callbacks the
// delivery would refuse (an origin without a webhook secret, an unlisted queue). Install
// it before features that use the app's client (httpapi.Feature).
func Feature(opts *Options) nightshift.Feature {
	return nightshift.FeatureFunc(func(a *nightshift.App) error {
		var o Options
		if opts != nil {
			o = *opts
		} else {
			var err error
			if o, err = FromEnv(a.Getenv); err != nil {
				return err
			}
		}
		if err := Register(a.Registry(), a.Store(), o); err != nil {
			return err
		}
		if err := a.CheckCallback(o.CheckCallback); err != nil {
			return err
		}
		if err := a.OnWorkflowEnd(OnWorkflowEnd(a.Store())); err != nil {
			return err
		}
		return a.OnJobEnd(OnJobEnd(a.Store()))
	})
}
