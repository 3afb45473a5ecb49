//! Whether a sampled series is flat: a least-squares line through (minutes,
//! value) gives the slope per minute, the scatter around it the noise. A
//! series is flat when its slope cannot be told from zero (it is within three
//! standard errors of it), or when the change the line predicts over the
//! whole run is below a stated fraction of the series' mean — a leak too
//! small to matter over the run is reported, not failed.

/// The fitted trend of one series.
#[derive(Clone, Copy, Debug)]
pub struct Trend {
    /// Points fitted.
    pub points: usize,
    /// Mean value.
    pub mean: f64,
    /// Slope of the least-squares line, in units per minute.
    pub slope_per_minute: f64,
    /// The slope's standard error (same unit).
    pub slope_error: f64,
    /// Standard deviation of the values around the line.
    pub noise: f64,
    /// The line's change over the span fitted, as a fraction of the mean.
    pub drift: f64,
    /// Mean of the last third over the mean of the first third, minus one.
    pub thirds_change: f64,
}

impl Trend {
    /// Fits `points` (minutes, value); `None` with fewer than three points.
    pub fn fit(points: &[(f64, f64)]) -> Option<Self> {
        let n = points.len();
        if n < 3 {
            return None;
        }
        let count = n as f64;
        let mean_t = points.iter().map(|p| p.0).sum::<f64>() / count;
        let mean = points.iter().map(|p| p.1).sum::<f64>() / count;
        let spread_t: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
        let covariance: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.1 - mean)).sum();
        let slope = if spread_t > 0.0 {
            covariance / spread_t
        } else {
            0.0
        };
        let residuals: f64 = points
            .iter()
            .map(|p| (p.1 - (mean + slope * (p.0 - mean_t))).powi(2))
            .sum();
        let noise = (residuals / (count - 2.0)).sqrt();
        let slope_error = if spread_t > 0.0 {
            noise / spread_t.sqrt()
        } else {
            0.0
        };
        let span = points[n - 1].0 - points[0].0;
        let third = n / 3;
        let third_mean = |slice: &[(f64, f64)]| {
            slice.iter().map(|p| p.1).sum::<f64>() / slice.len().max(1) as f64
        };
        let first = third_mean(&points[..third.max(1)]);
        let last = third_mean(&points[n - third.max(1)..]);
        Some(Self {
            points: n,
            mean,
            slope_per_minute: slope,
            slope_error,
            noise,
            drift: relative(slope * span, mean),
            thirds_change: relative(last - first, first),
        })
    }

    /// Fits `values` sampled at `minutes`.
    pub fn of(minutes: &[f64], values: &[f64]) -> Option<Self> {
        let points: Vec<(f64, f64)> = minutes
            .iter()
            .copied()
            .zip(values.iter().copied())
            .collect();
        Self::fit(&points)
    }

    /// Whether the slope is indistinguishable from zero.
    pub fn slope_is_noise(&self) -> bool {
        self.slope_per_minute.abs() <= 3.0 * self.slope_error
    }

    /// Flat: the slope is noise, or the drift it predicts over the span is at
    /// most `tolerance` (a fraction of the mean).
    pub fn is_flat(&self, tolerance: f64) -> bool {
        self.slope_is_noise() || self.drift.abs() <= tolerance
    }
}

/// `change / base`, and 0 for a zero base with no change.
fn relative(change: f64, base: f64) -> f64 {
    if base.abs() > f64::EPSILON {
        change / base
    } else if change.abs() > f64::EPSILON {
        f64::INFINITY.copysign(change)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_series_is_flat_with_no_noise() {
        let trend = Trend::of(&[0.0, 1.0, 2.0, 3.0], &[7.0; 4]).unwrap();
        assert_eq!(trend.slope_per_minute, 0.0);
        assert_eq!(trend.noise, 0.0);
        assert!(trend.is_flat(0.0));
    }

    #[test]
    fn a_steady_leak_is_not_flat_and_noise_around_a_level_is() {
        let minutes: Vec<f64> = (0..30).map(|i| i as f64 / 6.0).collect();
        let leak: Vec<f64> = minutes.iter().map(|t| 100.0 + 5.0 * t).collect();
        let trend = Trend::of(&minutes, &leak).unwrap();
        assert!((trend.slope_per_minute - 5.0).abs() < 1e-9);
        assert!(!trend.is_flat(0.05), "{trend:?}");
        // Alternating ±3 around 100: large noise, no trend.
        let level: Vec<f64> = (0..30)
            .map(|i| if i % 2 == 0 { 103.0 } else { 97.0 })
            .collect();
        let trend = Trend::of(&minutes, &level).unwrap();
        assert!(trend.slope_is_noise(), "{trend:?}");
        assert!(trend.thirds_change.abs() < 0.01);
    }
}
