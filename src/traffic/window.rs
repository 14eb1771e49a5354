//! A sliding window over the requests of an access log, by the times the log gives them
//! (lines may come slightly out of order: nginx's workers write their own), and what it shows.

use serde::{Deserialize, Serialize};

/// One request, as the window keeps it.
#[derive(Clone, Copy, Debug)]
struct Request {
    time: f64,
    status: u16,
    ms: f64,
}

/// The requests of the last `length` seconds, and the lines that did not parse (stamped with
/// when they were read, having no time of their own).
#[derive(Debug)]
pub(crate) struct Window {
    length: f64,
    requests: Vec<Request>,
    unparsed: Vec<f64>,
}

/// What one window showed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sample {
    pub(crate) requests: u64,
    /// Answers with a 5xx status.
    pub(crate) errors: u64,
    pub(crate) error_rate: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
    /// Requests that took longer than the slow bound.
    pub(crate) slow: u64,
    pub(crate) slow_share: f64,
    pub(crate) unparsed: u64,
}

impl Window {
    pub(crate) fn new(length: f64) -> Self {
        Window {
            length,
            requests: Vec::new(),
            unparsed: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, time: f64, status: u16, ms: f64) {
        self.requests.push(Request { time, status, ms });
    }

    pub(crate) fn push_unparsed(&mut self, read_at: f64) {
        self.unparsed.push(read_at);
    }

    /// The window that ends at `now`: what is older leaves it for good; what is later than
    /// `now` (a line written as the clock was read) waits for a later window.
    pub(crate) fn sample(&mut self, now: f64, slow_ms: f64) -> Sample {
        let start = now - self.length;
        self.requests.retain(|r| r.time > start);
        self.unparsed.retain(|&t| t > start);
        let mut times: Vec<f64> = Vec::with_capacity(self.requests.len());
        let (mut errors, mut slow) = (0, 0);
        for r in self.requests.iter().filter(|r| r.time <= now) {
            times.push(r.ms);
            errors += u64::from(r.status >= 500);
            slow += u64::from(r.ms > slow_ms);
        }
        times.sort_unstable_by(f64::total_cmp);
        let share = |n: u64| {
            if times.is_empty() {
                0.0
            } else {
                n as f64 / times.len() as f64
            }
        };
        Sample {
            requests: times.len() as u64,
            errors,
            error_rate: share(errors),
            p50_ms: rank(&times, 0.50),
            p95_ms: rank(&times, 0.95),
            p99_ms: rank(&times, 0.99),
            slow,
            slow_share: share(slow),
            unparsed: self.unparsed.iter().filter(|&&t| t <= now).count() as u64,
        }
    }
}

/// The nearest-rank percentile of sorted values (0 when there are none).
fn rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = (q * sorted.len() as f64).ceil() as usize;
    sorted[at.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_rates_and_slow_share_of_one_window() {
        let mut w = Window::new(10.0);
        for i in 1..=100 {
            w.push(
                100.0 + f64::from(i) / 100.0,
                if i % 25 == 0 { 502 } else { 200 },
                f64::from(i),
            );
        }
        let s = w.sample(101.0, 90.0);
        assert_eq!((s.requests, s.errors, s.slow), (100, 4, 10));
        assert_eq!((s.p50_ms, s.p95_ms, s.p99_ms), (50.0, 95.0, 99.0));
        assert!((s.error_rate - 0.04).abs() < 1e-12 && (s.slow_share - 0.1).abs() < 1e-12);
    }

    #[test]
    fn the_window_slides_by_log_time_whatever_order_lines_come_in() {
        let mut w = Window::new(10.0);
        for (time, status) in [
            (105.0, 200),
            (99.0, 500),
            (112.0, 200),
            (101.0, 503),
            (111.5, 200),
        ] {
            w.push(time, status, 1.0);
        }
        w.push_unparsed(100.5);
        let at_110 = w.sample(110.0, 1000.0);
        assert_eq!(
            (at_110.requests, at_110.errors, at_110.unparsed),
            (2, 1, 1),
            "101 and 105 are in (100, 110]; 99 left, 111.5 and 112 are not yet"
        );
        let at_112 = w.sample(112.0, 1000.0);
        assert_eq!((at_112.requests, at_112.errors, at_112.unparsed), (3, 0, 0));
        assert_eq!(w.sample(130.0, 1000.0).requests, 0, "everything left");
    }

    #[test]
    fn an_empty_window_has_no_rates_and_one_request_is_every_percentile() {
        let mut w = Window::new(5.0);
        let empty = w.sample(100.0, 200.0);
        assert_eq!(
            (empty.requests, empty.error_rate, empty.p99_ms),
            (0, 0.0, 0.0)
        );
        w.push(99.0, 200, 2000.0);
        let one = w.sample(100.0, 200.0);
        assert_eq!(
            (one.p50_ms, one.p99_ms, one.slow_share),
            (2000.0, 2000.0, 1.0)
        );
    }
}
