package callback

import "github.com/nightshift-jobs/nightshift"

// Feature returns the app feature delivering callbacks, with the options read from the
// app's settings (FromEnv): it registers the delivery kind, enqueues a delivery job when
// a job that asked for a callback ends, and makes the app's client refuse callbacks the
// delivery would refuse (an origin without a webhook secret, an unlisted queue). Install
// it before features that use the app's client (httpapi.Feature).
func Feature() nightshift.Feature {
	return nightshift.FeatureFunc(func(a *nightshift.App) error {
		opts, err := FromEnv(a.Getenv)
		if err != nil {
			return err
		}
		if err := Register(a.Registry(), a.Store(), opts); err != nil {
			return err
		}
		if err := a.CheckCallback(opts.CheckCallback); err != nil {
			return err
		}
		return a.OnJobEnd(OnJobEnd(a.Store()))
	})
}
