//! Closed-loop load: N clients, each sending its next request as soon as the last is answered,
//! and the figures that come out of it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use hdrhistogram::Histogram;

use crate::cpu::{Meter, Usage};

/// Latencies are kept in microseconds, up to a minute, to three significant digits.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| anyhow!("histogram: {e:?}"))
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// How long a run warms up (not counted) and then measures.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub warmup: Duration,
    pub measure: Duration,
}

/// What one run measured.
pub struct Sample {
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    pub cpu: Usage,
}

impl Sample {
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        }
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

struct ClientTally {
    ops: u64,
    errors: u64,
    first_error: Option<String>,
    last_done: Instant,
    latency: Histogram<u64>,
}

/// Runs `op(client, iteration)` from `clients` tasks for the warm-up and then the measured
/// window. Only operations that start inside the window count; CPU is metered over the window.
pub async fn closed_loop<F, Fut>(
    clients: usize,
    window: Window,
    meter: &Meter,
    op: F,
) -> anyhow::Result<Sample>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let from = Instant::now() + window.warmup;
    let until = from + window.measure;
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let op = op.clone();
        let mut tally = ClientTally {
            ops: 0,
            errors: 0,
            first_error: None,
            last_done: from,
            latency: histogram()?,
        };
        tasks.push(tokio::spawn(async move {
            let mut iteration = 0u64;
            loop {
                let started = Instant::now();
                if started >= until {
                    break;
                }
                let result = op(client, iteration).await;
                iteration += 1;
                let done = Instant::now();
                if let Err(e) = result {
                    tally.errors += 1;
                    tally.first_error.get_or_insert_with(|| format!("{e:#}"));
                    // A failing server answers fast; do not spin on it.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                } else if started >= from {
                    tally.ops += 1;
                    tally.latency.saturating_record(micros(done - started));
                    tally.last_done = tally.last_done.max(done);
                }
            }
            tally
        }));
    }
    tokio::time::sleep_until(from.into()).await;
    let before = meter.snapshot();
    tokio::time::sleep_until(until.into()).await;
    let after = meter.snapshot();

    let mut sample = Sample {
        ops: 0,
        errors: 0,
        first_error: None,
        elapsed: window.measure,
        latency: histogram()?,
        cpu: after.since(&before),
    };
    let mut last_done = until;
    for task in tasks {
        let tally = task.await.context("a load task failed")?;
        sample.ops += tally.ops;
        sample.errors += tally.errors;
        if sample.first_error.is_none() {
            sample.first_error = tally.first_error;
        }
        last_done = last_done.max(tally.last_done);
        sample
            .latency
            .add(&tally.latency)
            .map_err(|e| anyhow!("histogram: {e:?}"))?;
    }
    // Requests that started in the window may end after it; their time counts too.
    sample.elapsed = last_done - from;
    Ok(sample)
}

/// The median of a few figures (the runs of one workload).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Per-operation CPU time in microseconds, by component.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuPerOp {
    pub client_us: f64,
    pub gateway_us: f64,
    pub postgres_us: Option<f64>,
    /// Share of all cores busy over the window with this workload's parts.
    pub busy: f64,
    /// Share of all cores other processes used meanwhile.
    pub others: Option<f64>,
}

/// The figures of several runs of one workload: each one the median over the runs.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub cpu: CpuPerOp,
}

impl Summary {
    pub fn of(samples: &[Sample], cores: usize) -> Self {
        let pick = |f: &dyn Fn(&Sample) -> f64| median(&samples.iter().map(f).collect::<Vec<_>>());
        let per_op = |s: &Sample, d: Duration| d.as_secs_f64() * 1e6 / s.ops.max(1) as f64;
        let postgres = samples.iter().all(|s| s.cpu.postgres.is_some());
        Self {
            rate: pick(&Sample::rate),
            p50_ms: pick(&|s| s.quantile_ms(0.50)),
            p99_ms: pick(&|s| s.quantile_ms(0.99)),
            errors: samples.iter().map(|s| s.errors).sum(),
            first_error: samples.iter().find_map(|s| s.first_error.clone()),
            cpu: CpuPerOp {
                client_us: pick(&|s| per_op(s, s.cpu.client)),
                gateway_us: pick(&|s| per_op(s, s.cpu.gateway)),
                postgres_us: postgres
                    .then(|| pick(&|s| per_op(s, s.cpu.postgres.unwrap_or_default()))),
                busy: pick(&|s| s.cpu.busy(cores)),
                others: samples
                    .iter()
                    .all(|s| s.cpu.machine.is_some())
                    .then(|| pick(&|s| s.cpu.others(cores).unwrap_or(0.0))),
            },
        }
    }
}

/// A workload and its baseline, run in turns (A B B A …) so that a machine that slows down or
/// speeds up during the run shifts both alike.
pub async fn paired<FA, FB, A, B>(
    runs: usize,
    cores: usize,
    mut workload: FA,
    mut baseline: FB,
) -> anyhow::Result<(Summary, Summary)>
where
    FA: FnMut() -> A,
    FB: FnMut() -> B,
    A: Future<Output = anyhow::Result<Sample>>,
    B: Future<Output = anyhow::Result<Sample>>,
{
    let mut a = Vec::with_capacity(runs);
    let mut b = Vec::with_capacity(runs);
    for run in 0..runs {
        if run % 2 == 0 {
            a.push(workload().await?);
            b.push(baseline().await?);
        } else {
            b.push(baseline().await?);
            a.push(workload().await?);
        }
    }
    Ok((Summary::of(&a, cores), Summary::of(&b, cores)))
}

/// The p50 and p99 of a handful of one-off timings, in ms.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub p50: f64,
    /// Nearest rank: with few samples, the slowest.
    pub p99: f64,
}

/// The p50 and p99 of a handful of one-off timings (fan-out rounds, cold starts), in ms.
pub fn spread_ms(values: &[Duration]) -> Spread {
    let mut ms: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    if ms.is_empty() {
        return Spread {
            p50: f64::NAN,
            p99: f64::NAN,
        };
    }
    let at = |q: f64| {
        // Nearest rank: with few samples the p99 is the slowest one, never an interpolation.
        let rank = (q * ms.len() as f64).ceil().max(1.0) as usize;
        ms[rank.min(ms.len()) - 1]
    };
    Spread {
        p50: median(&ms),
        p99: at(0.99),
    }
}
