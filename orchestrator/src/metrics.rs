//! The orchestrator's counters and gauges, rendered in the Prometheus text format for
//! `GET /metrics`: runs by final status, due configs and due lag, dispatch latency, executions in
//! flight, ticks, claims, retries, swept leases and rejected requests. Small enough to keep
//! without a metrics crate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sheettobigquery::store::claims::RETRYABLE;
use sheettobigquery::store::runs::RunStatus;

/// Upper bounds (seconds) of the dispatch-latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Every final status of a run (`succeeded` and the retryable ones), listed even at zero.
fn final_statuses() -> impl Iterator<Item = &'static str> {
    std::iter::once(RunStatus::Succeeded.as_str()).chain(RETRYABLE)
}

#[derive(Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Process-wide metrics; cheap to update from any task.
#[derive(Default)]
pub struct Metrics {
    runs: Mutex<BTreeMap<String, u64>>,
    ticks: Mutex<BTreeMap<String, u64>>,
    rejected: Mutex<BTreeMap<u16, u64>>,
    latency: Mutex<Histogram>,
    inflight: AtomicI64,
    max_parallel: AtomicI64,
    due: AtomicI64,
    due_lag_ms: AtomicI64,
    claimed: AtomicU64,
    retries: AtomicU64,
    swept: AtomicU64,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    if let Ok(mut g) = m.lock() {
        *g.entry(k).or_insert(0) += 1;
    }
}

impl Metrics {
    pub fn run_finished(&self, status: &str) {
        bump(&self.runs, status.to_string());
    }
    pub fn tick_finished(&self, result: &str) {
        bump(&self.ticks, result.to_string());
    }
    pub fn request_rejected(&self, code: u16) {
        bump(&self.rejected, code);
    }
    pub fn dispatched(&self, latency: Duration) {
        if let Ok(mut h) = self.latency.lock() {
            let s = latency.as_secs_f64();
            for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                if s <= *b {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += s;
        }
    }
    pub fn inflight_add(&self, d: i64) {
        self.inflight.fetch_add(d, Ordering::Relaxed);
    }
    pub fn inflight(&self) -> i64 {
        self.inflight.load(Ordering::Relaxed)
    }
    pub fn set_max_parallel(&self, n: usize) {
        self.max_parallel.store(n as i64, Ordering::Relaxed);
    }
    /// The due configs found at the start of the last tick and how overdue the oldest was.
    pub fn set_due(&self, due: usize, max_lag: Duration) {
        self.due.store(due as i64, Ordering::Relaxed);
        self.due_lag_ms.store(max_lag.as_millis() as i64, Ordering::Relaxed);
    }
    pub fn claimed(&self, n: usize) {
        self.claimed.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    pub fn swept(&self, n: usize) {
        self.swept.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let mut o = String::new();
        let family = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} {kind}");
        };
        family(&mut o, "orchestrator_runs_total", "counter", "Runs finished by this process, by final status.");
        if let Ok(g) = self.runs.lock() {
            for status in final_statuses() {
                let _ = writeln!(
                    o,
                    "orchestrator_runs_total{{status=\"{status}\"}} {}",
                    g.get(status).copied().unwrap_or(0)
                );
            }
            for (k, v) in g.iter().filter(|(k, _)| !final_statuses().any(|s| s == k.as_str())) {
                let _ = writeln!(o, "orchestrator_runs_total{{status=\"{k}\"}} {v}");
            }
        }
        family(&mut o, "orchestrator_inflight_runs", "gauge", "Executions in flight now.");
        let _ = writeln!(o, "orchestrator_inflight_runs {}", self.inflight());
        family(&mut o, "orchestrator_max_parallel_jobs", "gauge", "The parallelism cap.");
        let _ = writeln!(o, "orchestrator_max_parallel_jobs {}", self.max_parallel.load(Ordering::Relaxed));
        family(&mut o, "orchestrator_due_configs", "gauge", "Configs due at the start of the last tick.");
        let _ = writeln!(o, "orchestrator_due_configs {}", self.due.load(Ordering::Relaxed));
        family(
            &mut o,
            "orchestrator_due_lag_seconds",
            "gauge",
            "How long the most overdue config had been due at the start of the last tick.",
        );
        let _ =
            writeln!(o, "orchestrator_due_lag_seconds {:.3}", self.due_lag_ms.load(Ordering::Relaxed) as f64 / 1000.0);
        family(
            &mut o,
            "orchestrator_dispatch_latency_seconds",
            "histogram",
            "From claim to the execution being started.",
        );
        if let Ok(h) = self.latency.lock() {
            for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                let _ = writeln!(o, "orchestrator_dispatch_latency_seconds_bucket{{le=\"{b}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(o, "orchestrator_dispatch_latency_seconds_bucket{{le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(o, "orchestrator_dispatch_latency_seconds_sum {:.6}", h.sum);
            let _ = writeln!(o, "orchestrator_dispatch_latency_seconds_count {}", h.count);
        }
        family(&mut o, "orchestrator_claimed_runs_total", "counter", "Runs claimed (new periods and retries).");
        let _ = writeln!(o, "orchestrator_claimed_runs_total {}", self.claimed.load(Ordering::Relaxed));
        family(&mut o, "orchestrator_retries_total", "counter", "Retry attempts claimed within a tick.");
        let _ = writeln!(o, "orchestrator_retries_total {}", self.retries.load(Ordering::Relaxed));
        family(
            &mut o,
            "orchestrator_abandoned_runs_total",
            "counter",
            "Runs whose lease expired, marked abandoned by this process's sweeper.",
        );
        let _ = writeln!(o, "orchestrator_abandoned_runs_total {}", self.swept.load(Ordering::Relaxed));
        family(&mut o, "orchestrator_ticks_total", "counter", "Ticks run by this process, by result.");
        if let Ok(g) = self.ticks.lock() {
            for (k, v) in g.iter() {
                let _ = writeln!(o, "orchestrator_ticks_total{{result=\"{k}\"}} {v}");
            }
        }
        family(
            &mut o,
            "orchestrator_rejected_requests_total",
            "counter",
            "POST /run requests refused, by HTTP status.",
        );
        if let Ok(g) = self.rejected.lock() {
            for (k, v) in g.iter() {
                let _ = writeln!(o, "orchestrator_rejected_requests_total{{code=\"{k}\"}} {v}");
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.run_finished("succeeded");
        m.run_finished("succeeded");
        m.run_finished("timed_out");
        m.dispatched(Duration::from_millis(20));
        m.set_due(3, Duration::from_secs(90));
        m.request_rejected(401);
        let t = m.render();
        assert!(t.contains("orchestrator_runs_total{status=\"succeeded\"} 2"), "{t}");
        assert!(t.contains("orchestrator_runs_total{status=\"timed_out\"} 1"), "{t}");
        assert!(t.contains("orchestrator_dispatch_latency_seconds_bucket{le=\"0.025\"} 1"), "{t}");
        assert!(t.contains("orchestrator_dispatch_latency_seconds_bucket{le=\"0.01\"} 0"), "{t}");
        assert!(t.contains("orchestrator_due_lag_seconds 90.000"), "{t}");
        assert!(t.contains("orchestrator_rejected_requests_total{code=\"401\"} 1"), "{t}");
        assert!(t.contains("# TYPE orchestrator_inflight_runs gauge"), "{t}");
    }
}
