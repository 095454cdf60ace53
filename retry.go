package nightshift

import (
	"math"
	"math/rand/v2"
	"time"
)

// BackoffPolicy computes how long to wait before the next attempt, given the attempt that
// just failed (1 for the first).
type BackoffPolicy interface {
	NextDelay(failedAttempt int) time.Duration
}

// ExponentialBackoff waits Base·Factor^(attempt−1), capped at Max, with ±Jitter (a
// fraction) of random spread so that jobs that failed together do not retry together.
type ExponentialBackoff struct {
	Base   time.Duration
	Factor float64
	Max    time.Duration
	Jitter float64
}

// MaxDelay is the longest delay a retry can have: a queue message cannot stay invisible
// for more than 7 days, and its time to live is 7 days too.
const MaxDelay = 6 * 24 * time.Hour

// DefaultBackoff returns the default policy: 1 s, 4 s, 16 s, 64 s, … (factor 4), capped at
// 1 hour, ±20 % jitter. With DefaultMaxAttempts (10) a job keeps trying for about 5 hours.
func DefaultBackoff() BackoffPolicy {
	return ExponentialBackoff{Base: time.Second, Factor: 4, Max: time.Hour, Jitter: 0.2}
}

// NextDelay implements BackoffPolicy.
func (b ExponentialBackoff) NextDelay(failedAttempt int) time.Duration {
	if failedAttempt < 1 {
		failedAttempt = 1
	}
	factor := b.Factor
	if factor < 1 {
		factor = 2
	}
	d := float64(b.Base) * math.Pow(factor, float64(failedAttempt-1))
	maxD := b.Max
	if maxD <= 0 || maxD > MaxDelay {
		maxD = MaxDelay
	}
	if d > float64(maxD) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(maxD)
	}
	if b.Jitter > 0 {
		d *= 1 + b.Jitter*(2*rand.Float64()-1)
	}
	if d > float64(MaxDelay) {
		d = float64(MaxDelay)
	}
	return time.Duration(d)
}

// ConstantBackoff waits the same delay before every retry.
type ConstantBackoff time.Duration

// NextDelay implements BackoffPolicy.
func (c ConstantBackoff) NextDelay(int) time.Duration { return time.Duration(c) }
