//! How figures are written: numbers, rates, latencies, and where the CPU went.

use std::fmt::Write as _;

use crate::load::Summary;

/// `1234567.0` → `1,234,567`.
pub fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_owned();
    }
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

pub(super) fn ms(value: f64) -> String {
    if !value.is_finite() {
        "n/a".to_owned()
    } else if value < 10.0 {
        format!("{value:.2} ms")
    } else if value < 100.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.0} ms")
    }
}

pub(super) fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

pub(super) fn ratio(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}×")
    } else {
        "n/a".to_owned()
    }
}

/// `2,345 msgs/s · p50 5.12 ms · p99 9.80 ms`
pub(super) fn rate(s: &Summary, unit: &str, p50: bool) -> String {
    let mut line = format!("{} {unit}", thousands(s.rate));
    if p50 {
        let _ = write!(line, " · p50 {}", ms(s.p50_ms));
    }
    let _ = write!(line, " · p99 {}", ms(s.p99_ms));
    if s.errors > 0 {
        let _ = write!(line, " ({} errors)", s.errors);
    }
    line
}

/// Where the CPU went, per operation.
pub(super) fn cpu(s: &Summary, gateway: &str, client: &str) -> String {
    let mut parts = Vec::new();
    if s.cpu.gateway_us >= 1.0 {
        parts.push(format!("{gateway} {:.0} µs", s.cpu.gateway_us));
    }
    parts.push(format!("{client} {:.0} µs", s.cpu.client_us));
    if let Some(pg) = s.cpu.postgres_us {
        parts.push(format!("PostgreSQL {pg:.0} µs"));
    }
    let others = s.cpu.others.map_or_else(String::new, |o| {
        format!(", other processes on the machine {:.0}%", o * 100.0)
    });
    format!(
        "{} (cores {:.0}% busy with these{others})",
        parts.join(", "),
        s.cpu.busy * 100.0
    )
}

pub(super) fn total_cpu_us(s: &Summary) -> f64 {
    s.cpu.gateway_us + s.cpu.client_us + s.cpu.postgres_us.unwrap_or(0.0)
}

/// When the cores were saturated, the rate is what the CPU per operation allows.
pub(super) fn bound(s: &Summary, cores: usize) -> String {
    let total = total_cpu_us(s);
    if s.cpu.busy >= 0.85 && total > 0.0 {
        format!(
            " The cores were saturated: {total:.0} µs of CPU per operation on {cores} cores allows \
             at most {}/s, which is what was measured.",
            thousands(cores as f64 * 1e6 / total)
        )
    } else {
        String::new()
    }
}

/// Why a p99 target is out of reach when the cores are saturated: by Little's law the mean time
/// in the system is the clients over the rate, and the rate is the cores over the CPU per request.
pub(super) fn queueing(clients: usize, s: &Summary, cores: usize, target_ms: f64) -> String {
    let clients_f = clients as f64;
    let limit = cores as f64 * target_ms * 1000.0 / clients_f;
    let mean = format!(
        " By Little's law {clients} requests in flight at {}/s spend {} each on average.",
        thousands(s.rate),
        ms(clients_f / s.rate * 1000.0),
    );
    if total_cpu_us(s) > limit {
        format!(
            "{mean} With {cores} cores even the mean stays under {} only if the whole path, load \
             generator included, takes no more than about {limit:.0} µs of CPU per request; it \
             takes {:.0} µs.",
            ms(target_ms),
            total_cpu_us(s),
        )
    } else if s.cpu.others.unwrap_or(0.0) >= 0.10 {
        format!(
            "{mean} The {:.0} µs of CPU per request would allow less on an idle machine; here \
             the wait was also for CPU that other processes held.",
            total_cpu_us(s),
        )
    } else {
        format!(
            "{mean} The mean {} {}; the tail is the queue for the cores ({:.0}% busy): a \
             request that arrives behind others waits for their {:.0} µs of CPU each as well as \
             its own.",
            if clients_f / s.rate * 1000.0 < target_ms {
                "fits in"
            } else {
                "is over"
            },
            ms(target_ms),
            s.cpu.busy * 100.0,
            total_cpu_us(s),
        )
    }
}

pub(super) fn errors_note(s: &Summary, what: &str) -> String {
    match (&s.first_error, s.errors) {
        (Some(e), n) if n > 0 => format!(" **{n} {what} failed**; the first: `{e}`."),
        _ => String::new(),
    }
}
