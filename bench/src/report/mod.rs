//! The table, and `BENCHMARKS.md` around it: the machine, the table, and a note per workload
//! saying what was measured, against what, and where a target was missed, why.
//!
//! [`Report`] collects the figures as the workloads come in; [`table`] turns them into rows with
//! a verdict, [`notes`] into the text under each heading, [`document`] into the whole file, all
//! with the number formats of [`format`].

mod document;
mod format;
mod notes;
mod table;

use std::time::Duration;

use crate::fanout::FanOut;
use crate::lambda::{ColdStart, SamBootstrap, Section, Warm};
use crate::load::{Sample, Summary, spread_ms};
use crate::memory::GatewayLogins;
use crate::soak::SoakReport;
use crate::{Bench, Plan};

pub use format::thousands;

/// The machine the figures come from.
pub struct Machine {
    pub cores: usize,
    pub memory: Option<u64>,
    pub cpu: String,
    pub kernel: String,
    pub date: String,
}

impl Machine {
    fn here(cores: usize) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map(|kib| kib * 1024);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned());
        Self {
            cores,
            memory,
            cpu,
            kernel,
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }
}

/// Everything measured, as it comes in.
pub struct Report {
    plan: Plan,
    machine: Machine,
    postgres_version: String,
    external_database: bool,
    seed_time: Duration,
    pub build_time: Option<Duration>,
    pub measure_time: Duration,
    pub total_time: Duration,
    pub sam: Vec<SamBootstrap>,
    gateway_connections: u32,
    push_concurrency: usize,
    sends: Vec<Versus>,
    hot: Option<Versus>,
    list: Option<Versus>,
    me: Option<MeFigures>,
    /// `/me`'s read with its session check beside the same read without it.
    session_me: Option<Versus>,
    /// A send's statement with its session check beside the same without it.
    session_send: Option<Versus>,
    /// A send's statement with the change log beside the statement without it.
    send_log: Option<Versus>,
    login: Option<LoginFigures>,
    fanout: Option<FanOut>,
    /// The same group with every member connected twice.
    fanout_devices: Option<FanOut>,
    many_clients: Option<ManyClients>,
    gateway_logins: Option<GatewayLogins>,
    /// One `auth` instance after many logins.
    function_logins: Option<Warm>,
    soak: Option<SoakReport>,
    cold: Vec<ColdStarts>,
    warm: Vec<WarmRun>,
    unbuilt: Vec<Unbuilt>,
    sections: Option<BinarySections>,
}

/// A workload beside its baseline, with as many clients each.
struct Versus {
    clients: usize,
    measured: Summary,
    baseline: Summary,
}

struct MeFigures {
    clients: usize,
    me: Summary,
    constant: Summary,
    /// The same read straight through sqlx at the same concurrency.
    read: Summary,
    alone_p50: f64,
    alone_p99: f64,
    constant_alone_p50: f64,
}

struct LoginFigures {
    /// One client per core.
    logins: Summary,
    /// The bare password verification, one task per core.
    hashes: Summary,
    oversubscribed: Oversubscribed,
}

/// Logins with two clients per core.
struct Oversubscribed {
    /// Logins per second.
    rate: f64,
    /// The gateway's CPU per login, in µs.
    gateway_us: f64,
}

/// Many HTTP clients at once.
struct ManyClients {
    clients: usize,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// One function's cold starts.
struct ColdStarts {
    function: String,
    starts: Vec<ColdStart>,
}

/// What one function's cold starts come to, in ms: the median and the slowest.
#[derive(Clone, Copy)]
struct ColdSpread {
    ready_p50: f64,
    ready_max: f64,
    answered_p50: f64,
    answered_max: f64,
}

/// One function's warm requests, and its binary's size in `target/release`.
struct WarmRun {
    function: String,
    warm: Warm,
    binary_size: Option<u64>,
}

/// A binary that did not build, and why.
struct Unbuilt {
    function: String,
    cause: String,
}

/// One function binary's ELF sections, largest first.
struct BinarySections {
    function: String,
    sections: Vec<Section>,
}

impl Report {
    pub fn new(bench: &Bench, postgres_version: String, seed_time: Duration) -> Self {
        Self {
            plan: bench.plan,
            machine: Machine::here(bench.cores),
            postgres_version,
            external_database: bench.external_database,
            seed_time,
            build_time: None,
            measure_time: Duration::ZERO,
            total_time: Duration::ZERO,
            sam: Vec::new(),
            gateway_connections: bench.gateway_connections,
            push_concurrency: bench.push_concurrency,
            sends: Vec::new(),
            hot: None,
            list: None,
            me: None,
            session_me: None,
            session_send: None,
            send_log: None,
            login: None,
            fanout: None,
            fanout_devices: None,
            many_clients: None,
            gateway_logins: None,
            function_logins: None,
            soak: None,
            cold: Vec::new(),
            warm: Vec::new(),
            unbuilt: Vec::new(),
            sections: None,
        }
    }

    pub fn send(&mut self, clients: usize, sent: Summary, straight: Summary) {
        self.sends.push(Versus {
            clients,
            measured: sent,
            baseline: straight,
        });
    }

    pub fn hot(&mut self, clients: usize, sent: Summary, straight: Summary) {
        self.hot = Some(Versus {
            clients,
            measured: sent,
            baseline: straight,
        });
    }

    pub fn list(&mut self, clients: usize, big: Summary, small: Summary) {
        self.list = Some(Versus {
            clients,
            measured: big,
            baseline: small,
        });
    }

    pub fn me(
        &mut self,
        clients: usize,
        me: Summary,
        constant: Summary,
        read: Summary,
        alone: &Sample,
        constant_alone: &Sample,
    ) {
        self.me = Some(MeFigures {
            clients,
            me,
            constant,
            read,
            alone_p50: alone.quantile_ms(0.5),
            alone_p99: alone.quantile_ms(0.99),
            constant_alone_p50: constant_alone.quantile_ms(0.5),
        });
    }

    pub fn session_me(&mut self, clients: usize, checked: Summary, unchecked: Summary) {
        self.session_me = Some(Versus {
            clients,
            measured: checked,
            baseline: unchecked,
        });
    }

    pub fn session_send(&mut self, clients: usize, checked: Summary, unchecked: Summary) {
        self.session_send = Some(Versus {
            clients,
            measured: checked,
            baseline: unchecked,
        });
    }

    pub fn send_log(&mut self, clients: usize, logged: Summary, unlogged: Summary) {
        self.send_log = Some(Versus {
            clients,
            measured: logged,
            baseline: unlogged,
        });
    }

    pub fn login(&mut self, logins: Summary, hashes: Summary, oversubscribed: &Sample) {
        let gateway_us =
            oversubscribed.cpu.gateway.as_secs_f64() * 1e6 / oversubscribed.ops.max(1) as f64;
        self.login = Some(LoginFigures {
            logins,
            hashes,
            oversubscribed: Oversubscribed {
                rate: oversubscribed.rate(),
                gateway_us,
            },
        });
    }

    pub fn fanout(&mut self, fanout: FanOut) {
        self.fanout = Some(fanout);
    }

    pub fn fanout_devices(&mut self, fanout: FanOut) {
        self.fanout_devices = Some(fanout);
    }

    pub fn many_clients(&mut self, clients: usize, sample: &Sample) {
        self.many_clients = Some(ManyClients {
            clients,
            requests: sample.ops,
            errors: sample.errors,
            first_error: sample.first_error.clone(),
            rate: sample.rate(),
            p50_ms: sample.quantile_ms(0.5),
            p99_ms: sample.quantile_ms(0.99),
        });
    }

    pub fn gateway_logins(&mut self, logins: GatewayLogins) {
        self.gateway_logins = Some(logins);
    }

    pub fn function_logins(&mut self, warm: Warm) {
        self.function_logins = Some(warm);
    }

    pub fn soak(&mut self, soak: SoakReport) {
        self.soak = Some(soak);
    }

    /// What the soak found wrong, if anything.
    pub fn soak_failure(&self) -> Option<String> {
        let soak = self.soak.as_ref()?;
        let slowest = soak
            .outages
            .iter()
            .map(|o| o.recovered.as_secs_f64())
            .fold(0.0, f64::max);
        let mut wrong = Vec::new();
        if soak.losses > 0 {
            wrong.push(format!("{} losses", soak.losses));
        }
        if soak.duplicates > 0 {
            wrong.push(format!("{} duplicates", soak.duplicates));
        }
        if soak.strays > 0 {
            wrong.push(format!(
                "{} changes of chats a device was not in",
                soak.strays
            ));
        }
        if let Some(first) = soak.differences.first() {
            wrong.push(format!("first difference: {first}"));
        }
        if let Some(first) = soak.unexpected.first() {
            wrong.push(format!(
                "{} answers 5xx other than 503 ({first})",
                soak.unexpected.len()
            ));
        }
        if soak.acknowledged == 0 {
            wrong.push("nothing acknowledged".to_owned());
        }
        if slowest >= 10.0 {
            wrong.push(format!(
                "the API answered again only {slowest:.1} s after PostgreSQL"
            ));
        }
        (!wrong.is_empty()).then(|| wrong.join(", "))
    }

    pub fn cold_start(&mut self, function: &str, starts: Vec<ColdStart>) {
        self.cold.push(ColdStarts {
            function: function.to_owned(),
            starts,
        });
    }

    pub fn warm(&mut self, function: &str, warm: Warm, size: Option<u64>) {
        self.warm.push(WarmRun {
            function: function.to_owned(),
            warm,
            binary_size: size,
        });
    }

    pub fn sections(&mut self, function: &str, sections: Option<Vec<Section>>) {
        self.sections = sections.map(|sections| BinarySections {
            function: function.to_owned(),
            sections,
        });
    }

    /// A binary that did not build: its rows say why instead of measuring an old one.
    pub fn unbuilt(&mut self, function: &str, cause: &str) {
        self.unbuilt.push(Unbuilt {
            function: function.to_owned(),
            cause: cause.to_owned(),
        });
    }

    fn cold_of(&self, function: &str) -> Option<ColdSpread> {
        let cold = self.cold.iter().find(|c| c.function == function)?;
        let ready: Vec<Duration> = cold.starts.iter().map(|s| s.ready).collect();
        let answered: Vec<Duration> = cold.starts.iter().map(|s| s.answered).collect();
        let ready = spread_ms(&ready);
        let answered = spread_ms(&answered);
        Some(ColdSpread {
            ready_p50: ready.p50,
            ready_max: ready.p99,
            answered_p50: answered.p50,
            answered_max: answered.p99,
        })
    }

    fn sam_size(&self, function: &str) -> Option<u64> {
        self.sam
            .iter()
            .find(|b| b.function == function)
            .map(|b| b.size)
    }
}
