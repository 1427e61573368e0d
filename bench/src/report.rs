//! The table, and `BENCHMARKS.md` around it: the machine, the table, and a note per workload
//! saying what was measured, against what, and where a target was missed, why.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::fanout::FanOut;
use crate::lambda::{ColdStart, FUNCTIONS, HELLO, Warm};
use crate::load::{Sample, Summary, spread_ms};
use crate::{Bench, Plan};

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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Met,
    Missed,
}

struct Row {
    workload: String,
    measured: String,
    baseline: String,
    ratio: String,
    target: String,
    verdict: Verdict,
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
    pub sam: Vec<(String, u64, SystemTime)>,
    gateway_connections: u32,
    push_concurrency: usize,
    sends: Vec<(usize, Summary, Summary)>,
    hot: Option<(usize, Summary, Summary)>,
    list: Option<(usize, Summary, Summary)>,
    me: Option<MeFigures>,
    login: Option<(Summary, Summary)>,
    /// Two logins per core: (logins/s, gateway CPU per login in µs).
    login_oversubscribed: Option<(f64, f64)>,
    fanout: Option<FanOut>,
    cold: Vec<(String, Vec<ColdStart>)>,
    warm: Vec<(String, Warm, Option<u64>)>,
    unbuilt: Vec<(String, String)>,
    /// One function binary's ELF sections, largest first.
    sections: Option<(String, Vec<(String, u64)>)>,
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

fn ms(value: f64) -> String {
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

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn ratio(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}×")
    } else {
        "n/a".to_owned()
    }
}

/// `2,345 msgs/s · p50 5.12 ms · p99 9.80 ms`
fn rate(s: &Summary, unit: &str, p50: bool) -> String {
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
fn cpu(s: &Summary, gateway: &str, client: &str) -> String {
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

fn total_cpu_us(s: &Summary) -> f64 {
    s.cpu.gateway_us + s.cpu.client_us + s.cpu.postgres_us.unwrap_or(0.0)
}

/// When the cores were saturated, the rate is what the CPU per operation allows.
fn bound(s: &Summary, cores: usize) -> String {
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
fn queueing(clients: usize, s: &Summary, cores: usize, target_ms: f64) -> String {
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

fn errors_note(s: &Summary, what: &str) -> String {
    match (&s.first_error, s.errors) {
        (Some(e), n) if n > 0 => format!(" **{n} {what} failed**; the first: `{e}`."),
        _ => String::new(),
    }
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
            login: None,
            login_oversubscribed: None,
            fanout: None,
            cold: Vec::new(),
            warm: Vec::new(),
            unbuilt: Vec::new(),
            sections: None,
        }
    }

    pub fn send(&mut self, clients: usize, sent: Summary, straight: Summary) {
        self.sends.push((clients, sent, straight));
    }

    pub fn hot(&mut self, clients: usize, sent: Summary, straight: Summary) {
        self.hot = Some((clients, sent, straight));
    }

    pub fn list(&mut self, clients: usize, big: Summary, small: Summary) {
        self.list = Some((clients, big, small));
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

    pub fn login(&mut self, logins: Summary, hashes: Summary, oversubscribed: &Sample) {
        self.login = Some((logins, hashes));
        let per_login =
            oversubscribed.cpu.gateway.as_secs_f64() * 1e6 / oversubscribed.ops.max(1) as f64;
        self.login_oversubscribed = Some((oversubscribed.rate(), per_login));
    }

    pub fn fanout(&mut self, fanout: FanOut) {
        self.fanout = Some(fanout);
    }

    pub fn cold_start(&mut self, function: &str, starts: Vec<ColdStart>) {
        self.cold.push((function.to_owned(), starts));
    }

    pub fn warm(&mut self, function: &str, warm: Warm, size: Option<u64>) {
        self.warm.push((function.to_owned(), warm, size));
    }

    pub fn sections(&mut self, function: &str, sections: Option<Vec<(String, u64)>>) {
        self.sections = sections.map(|s| (function.to_owned(), s));
    }

    /// A binary that did not build: its rows say why instead of measuring an old one.
    pub fn unbuilt(&mut self, function: &str, cause: &str) {
        self.unbuilt.push((function.to_owned(), cause.to_owned()));
    }

    fn cold_of(&self, function: &str) -> Option<(f64, f64, f64, f64)> {
        let (_, starts) = self.cold.iter().find(|(f, _)| f == function)?;
        let ready: Vec<Duration> = starts.iter().map(|s| s.ready).collect();
        let answered: Vec<Duration> = starts.iter().map(|s| s.answered).collect();
        let (ready_p50, ready_max) = spread_ms(&ready);
        let (answered_p50, answered_max) = spread_ms(&answered);
        Some((ready_p50, ready_max, answered_p50, answered_max))
    }

    fn sam_size(&self, function: &str) -> Option<u64> {
        self.sam
            .iter()
            .find(|(f, _, _)| f == function)
            .map(|(_, size, _)| *size)
    }

    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for (clients, sent, straight) in &self.sends {
            let share = sent.rate / straight.rate;
            let mut target = "≥ 0.50× the baseline".to_owned();
            let mut met = share >= 0.5 && sent.errors == 0;
            if *clients == 16 {
                target.push_str("; p99 < 10 ms");
                met &= sent.p99_ms < 10.0;
            }
            rows.push(Row {
                workload: format!("send over HTTP, 64 chats, {clients} clients"),
                measured: rate(sent, "msgs/s", true),
                baseline: format!("sqlx insert: {}", rate(straight, "msgs/s", true)),
                ratio: ratio(share),
                target,
                verdict: if met { Verdict::Met } else { Verdict::Missed },
            });
        }
        if let Some((clients, sent, straight)) = &self.hot {
            let share = sent.rate / straight.rate;
            rows.push(Row {
                workload: format!("send, one hot chat, {clients} clients"),
                measured: rate(sent, "msgs/s", false),
                baseline: format!("sqlx insert: {}", rate(straight, "msgs/s", false)),
                ratio: ratio(share),
                target: "≥ 0.50× the baseline".to_owned(),
                verdict: if share >= 0.5 && sent.errors == 0 {
                    Verdict::Met
                } else {
                    Verdict::Missed
                },
            });
        }
        if let Some((_, big, small)) = &self.list {
            let slower = big.p99_ms / small.p99_ms;
            rows.push(Row {
                workload: format!(
                    "list newest 50, chat of {} in {} rows",
                    thousands(self.plan.sizes.big_chat_messages as f64),
                    thousands(self.plan.sizes.total_messages as f64)
                ),
                measured: rate(big, "req/s", true),
                baseline: format!(
                    "table of {}: {}",
                    thousands(self.plan.sizes.small_table_messages as f64),
                    rate(small, "req/s", true)
                ),
                ratio: format!("p99 {}", ratio(slower)),
                target: "p99 ≤ 1.3× the baseline".to_owned(),
                verdict: if slower <= 1.3 && big.errors == 0 {
                    Verdict::Met
                } else {
                    Verdict::Missed
                },
            });
        }
        if let Some(me) = &self.me {
            rows.push(Row {
                workload: format!("`GET /api/auth/me`, {} clients", me.clients),
                measured: rate(&me.me, "req/s", true),
                baseline: format!("static route: {}", rate(&me.constant, "req/s", true)),
                ratio: ratio(me.me.rate / me.constant.rate),
                target: "p99 < 2 ms".to_owned(),
                verdict: if me.me.p99_ms < 2.0 && me.me.errors == 0 {
                    Verdict::Met
                } else {
                    Verdict::Missed
                },
            });
        }
        if let Some((logins, hashes)) = &self.login {
            let share = logins.rate / hashes.rate;
            rows.push(Row {
                workload: "login".to_owned(),
                measured: format!(
                    "{} logins/s · p50 {}",
                    thousands(logins.rate),
                    ms(logins.p50_ms)
                ),
                baseline: format!(
                    "argon2, one per core: {} hashes/s · p50 {}",
                    thousands(hashes.rate),
                    ms(hashes.p50_ms)
                ),
                ratio: ratio(share),
                target: "≥ 0.77× the baseline (within 1.3×)".to_owned(),
                verdict: if share >= 1.0 / 1.3 && logins.errors == 0 {
                    Verdict::Met
                } else {
                    Verdict::Missed
                },
            });
        }
        if let Some(f) = &self.fanout {
            let (p50, p99) = f.http_ms();
            let (d50, d99) = f.direct_ms();
            rows.push(Row {
                workload: format!(
                    "fan-out to {} connected members",
                    thousands(f.members as f64)
                ),
                measured: format!("last member has it: p50 {} · p99 {}", ms(p50), ms(p99)),
                baseline: format!("frames posted straight: p50 {} · p99 {}", ms(d50), ms(d99)),
                ratio: format!("p99 {}", ratio(p99 / d99)),
                target: "p99 < 250 ms".to_owned(),
                verdict: if p99 < 250.0 {
                    Verdict::Met
                } else {
                    Verdict::Missed
                },
            });
        }
        let hello = self.cold_of(HELLO);
        for function in FUNCTIONS {
            let Some((ready, _, answered, _)) = self.cold_of(function) else {
                continue;
            };
            rows.push(Row {
                workload: format!("cold start: `{function}`"),
                measured: format!("ready {} · first answer {}", ms(ready), ms(answered)),
                baseline: hello.map_or_else(String::new, |(r, _, a, _)| {
                    format!("hello world: ready {} · first answer {}", ms(r), ms(a))
                }),
                ratio: hello.map_or_else(String::new, |(r, _, _, _)| {
                    format!("ready {}", ratio(ready / r))
                }),
                target: "ready < 10 ms; answer < 50 ms".to_owned(),
                verdict: if ready < 10.0 && answered < 50.0 {
                    Verdict::Met
                } else {
                    Verdict::Missed
                },
            });
        }
        for (function, cause) in &self.unbuilt {
            rows.push(Row {
                workload: format!("cold start, size and memory: `{function}`"),
                measured: format!("does not build: `{cause}`"),
                baseline: String::new(),
                ratio: String::new(),
                target: "builds; ready < 10 ms; answer < 50 ms; < 10 MB; < 30 MB".to_owned(),
                verdict: Verdict::Missed,
            });
        }
        let hello_warm = self.warm.iter().find(|(f, _, _)| f == HELLO);
        for (function, warm, size) in &self.warm {
            if function == HELLO {
                continue;
            }
            let size = self.sam_size(function).or(*size).unwrap_or(0);
            let kind = if self.sam_size(function).is_some() {
                "bootstrap"
            } else {
                "binary"
            };
            rows.push(Row {
                workload: format!("size and memory: `{function}`"),
                measured: format!(
                    "{kind} {} · peak RSS {} after {} requests",
                    mb(size),
                    mb(warm.peak_rss),
                    thousands(warm.requests as f64)
                ),
                baseline: hello_warm.map_or_else(String::new, |(_, w, s)| {
                    format!(
                        "hello world: binary {} · peak RSS {}",
                        mb(s.unwrap_or(0)),
                        mb(w.peak_rss)
                    )
                }),
                ratio: String::new(),
                target: "< 10 MB; < 30 MB".to_owned(),
                verdict: if size < 10_000_000 && warm.peak_rss < 30_000_000 {
                    Verdict::Met
                } else {
                    Verdict::Missed
                },
            });
        }
        rows
    }

    /// The one table, in markdown.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| workload | measured | baseline, same run | ratio | target | |\n\
             | --- | --- | --- | --- | --- | --- |\n",
        );
        for row in self.rows() {
            let verdict = match row.verdict {
                Verdict::Met => "met",
                Verdict::Missed => "**missed**",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.workload, row.measured, row.baseline, row.ratio, row.target, verdict
            );
        }
        out
    }

    fn missed(&self) -> Vec<String> {
        self.rows()
            .into_iter()
            .filter(|r| r.verdict == Verdict::Missed)
            .map(|r| r.workload)
            .collect()
    }

    /// `BENCHMARKS.md`.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "# Block Chat benchmarks\n");
        let _ = writeln!(
            out,
            "Written by `cargo run --release -p blockchat-bench{}` on {}; run it again to \
             rewrite this file. Each figure is the median of {} run{} of {:.1} s (after {:.1} s of \
             warm-up) of each workload, run in turns with its baseline in the same process, so that \
             a noisy machine moves both alike.\n",
            if self.plan.quick { " -- --quick" } else { "" },
            m.date,
            self.plan.runs,
            if self.plan.runs == 1 { "" } else { "s" },
            self.plan.window.measure.as_secs_f64(),
            self.plan.window.warmup.as_secs_f64(),
        );
        if self.plan.quick {
            let _ = writeln!(
                out,
                "**Quick mode**: one run per figure, {} fan-out rounds, {} cold starts and {} \
                 requests per function, and a table of {} messages instead of 1,000,000. The \
                 figures check that the benchmark works; the full run is the one to quote.\n",
                self.plan.fanout_rounds,
                self.plan.cold_starts,
                thousands(self.plan.warm_requests as f64),
                thousands(self.plan.sizes.total_messages as f64),
            );
        }
        let _ = writeln!(out, "## Machine\n");
        let _ = writeln!(out, "- CPU: {} × {}", m.cores, m.cpu);
        if let Some(memory) = m.memory {
            let _ = writeln!(
                out,
                "- memory: {:.1} GiB",
                memory as f64 / (1u64 << 30) as f64
            );
        }
        let _ = writeln!(out, "- Linux {}", m.kernel);
        let _ = writeln!(
            out,
            "- PostgreSQL {}{}, default settings (durable commits: `fsync` and `synchronous_commit` on)",
            self.postgres_version,
            if self.external_database {
                " (given by DATABASE_URL)"
            } else {
                ", embedded, on a Unix socket"
            }
        );
        let _ = writeln!(
            out,
            "- the load generator, the gateway and PostgreSQL share these cores; the gateway runs on \
             a Tokio runtime of its own ({} worker threads), the load generator on another",
            m.cores
        );
        let _ = writeln!(
            out,
            "- seeding took {:.1} s{}; measuring took {:.0} s",
            self.seed_time.as_secs_f64(),
            self.build_time.map_or_else(String::new, |b| format!(
                ", building the functions {:.0} s",
                b.as_secs_f64()
            )),
            self.measure_time.as_secs_f64(),
        );
        let _ = writeln!(out, "\n## Results\n");
        out.push_str(&self.table());
        let missed = self.missed();
        if missed.is_empty() {
            let _ = writeln!(out, "\nEvery target is met.");
        } else {
            let _ = writeln!(
                out,
                "\nMissed: {}. The notes below give each miss's measured cause.",
                missed.join("; ")
            );
        }
        let _ = writeln!(out, "\n## What each row measures\n");
        for (title, text) in self.notes() {
            let _ = writeln!(out, "### {title}\n\n{text}\n");
        }
        out
    }

    fn notes(&self) -> Vec<(String, String)> {
        let cores = self.machine.cores;
        let mut notes = Vec::new();
        notes.push((
            "How it runs".to_owned(),
            "One process holds everything but PostgreSQL and the function binaries: the local \
             gateway (`blockchat_local::start`, the same routers and WebSocket handler the \
             functions run, each HTTP request turned into API Gateway's payload-2.0 event and \
             answered through `lambda_http`'s adapter), a second gateway over the small table, \
             and the load generator: N tasks on one keep-alive `reqwest` client, each sending its \
             next request when the last is answered. Latencies are per request, in an HDR \
             histogram. CPU per operation is read from the kernel's accounting for the gateway's \
             threads, the load generator's threads and PostgreSQL's processes, over the measured \
             window. Logging is off in the gateway; the function binaries log as in Lambda (JSON on \
             stdout)."
                .to_owned(),
        ));
        if let Some(text) = self.send_note(cores) {
            notes.push(("Send over HTTP".to_owned(), text));
        }
        if let Some(text) = self.list_note() {
            notes.push(("Listing the newest messages".to_owned(), text));
        }
        if let Some(text) = self.me_note(cores) {
            notes.push(("`GET /api/auth/me`".to_owned(), text));
        }
        if let Some(text) = self.login_note(cores) {
            notes.push(("Login".to_owned(), text));
        }
        if let Some(text) = self.fanout_note() {
            notes.push(("Fan-out".to_owned(), text));
        }
        if let Some(text) = self.cold_note() {
            notes.push(("Cold start".to_owned(), text));
        }
        if let Some(text) = self.size_note() {
            notes.push(("Size and memory".to_owned(), text));
        }
        notes
    }

    fn send_note(&self, cores: usize) -> Option<String> {
        let (_, sent, straight) = self.sends.iter().find(|(c, _, _)| *c == 16)?;
        let mut text = format!(
            "Each client sends `POST /api/chats/{{id}}/messages` with a short text, to 64 group \
             chats of 64 members, walking the chats in step so that no two clients write to one \
             chat at once. A send takes the whole deployed path but the network: the payload-2.0 \
             event, `lambda_http`'s adapter, the messages router, the JWT check, the insert (one \
             statement: the chat's counter, the row, the sender's read cursor, and the list of \
             the members' live connections to push the message to; none are connected here), and \
             the JSON answer. The baseline is `blockchat::db::messages::insert`, the same statement, from as \
             many tasks on a sqlx pool as large as the gateway's ({} connections): what PostgreSQL \
             commits on this machine with nothing in front of it.\n\n\
             At 16 clients the CPU per send was {}; the baseline's {}.{}{}",
            self.gateway_connections,
            cpu(sent, "gateway", "load generator"),
            cpu(straight, "gateway", "sqlx"),
            bound(sent, cores),
            errors_note(sent, "sends"),
        );
        if sent.p99_ms >= 10.0 {
            text.push_str(&queueing(16, sent, cores, 10.0));
            let _ = write!(
                text,
                " The database alone, at the same concurrency, has a p99 of {} with the cores {:.0}% \
                 busy with it; the gateway's {:.0} µs per send comes on top, on the same two \
                 cores.",
                ms(straight.p99_ms),
                straight.cpu.busy * 100.0,
                sent.cpu.gateway_us,
            );
        }
        if straight.p99_ms >= 10.0 {
            text.push_str(
                " With the database's own p99 above 10 ms (each send waits for its commit's WAL \
                 flush, and for CPU), no front end could meet that target on this machine at \
                 that moment.",
            );
        } else if sent.p99_ms >= 10.0 {
            let _ = write!(
                text,
                " That leaves {} of the 10 ms at p99 for the HTTP path (each send waits for its \
                 commit's WAL flush, which no front end shortens), whose CPU (the gateway's \
                 {:.0} µs and the load generator's {:.0} µs per send) shares the cores with \
                 PostgreSQL.",
                ms(10.0 - straight.p99_ms),
                sent.cpu.gateway_us,
                sent.cpu.client_us,
            );
        }
        if let Some((clients, hot, hot_straight)) = &self.hot {
            let _ = write!(
                text,
                "\n\nOne hot chat: the same {clients} clients all write to one chat, so every send \
                 waits for the chat row's lock ({} msgs/s at p99 {}, against {} msgs/s at p99 {} \
                 over 64 chats); the baseline serialises the same way ({} msgs/s). Sends to \
                 different chats {} queue behind each other.",
                thousands(hot.rate),
                ms(hot.p99_ms),
                thousands(sent.rate),
                ms(sent.p99_ms),
                thousands(hot_straight.rate),
                if sent.rate > hot.rate * 1.05 {
                    "do not"
                } else {
                    "did not clearly avoid"
                }
            );
        }
        Some(text)
    }

    fn list_note(&self) -> Option<String> {
        let (clients, big, small) = self.list.as_ref()?;
        Some(format!(
            "`GET /api/chats/{{id}}/messages?limit=50` by a member, {clients} clients, on a chat of \
             {} messages in a table of {} (the other rows spread over chats of 1,000, interleaved \
             with the big chat's as time would interleave them, `seq` gap-free and \
             `chats.last_seq` in step, made with `INSERT … SELECT generate_series`); the baseline \
             is the same request to a second gateway whose table holds one chat of {} messages. \
             The page is walked backwards on the `(chat_id, seq)` index, so its cost does not grow \
             with the table: the CPU per request was {} on the big table, {} on the small one.{}",
            thousands(self.plan.sizes.big_chat_messages as f64),
            thousands(self.plan.sizes.total_messages as f64),
            thousands(self.plan.sizes.small_table_messages as f64),
            cpu(big, "gateway", "load generator"),
            cpu(small, "gateway", "load generator"),
            errors_note(big, "requests"),
        ))
    }

    fn me_note(&self, cores: usize) -> Option<String> {
        let me = self.me.as_ref()?;
        let mut text = format!(
            "`GET /api/auth/me` with a valid token: the JWT check and one primary-key read, through \
             the whole gateway path. The baseline is an axum route answering a constant JSON \
             object, served by `axum::serve` on the same runtime: the floor of any answer over \
             loopback HTTP here. CPU per request: {}; the static route's {}.{}\n\n\
             The request's one query alone, `blockchat::db::users::find` from {} tasks straight \
             through sqlx on a pool as large as the gateway's ({} connections): {} reads/s · p50 \
             {} · p99 {}, CPU per read {}.\n\n\
             With one client (no queueing) the same request takes p50 {} (p99 {}), the static \
             route p50 {}.",
            cpu(&me.me, "gateway", "load generator"),
            cpu(&me.constant, "server", "load generator"),
            bound(&me.me, cores),
            me.clients,
            self.gateway_connections,
            thousands(me.read.rate),
            ms(me.read.p50_ms),
            ms(me.read.p99_ms),
            cpu(&me.read, "gateway", "sqlx"),
            ms(me.alone_p50),
            ms(me.alone_p99),
            ms(me.constant_alone_p50),
        );
        if me.me.p99_ms >= 2.0 {
            text.push_str(&queueing(me.clients, &me.me, cores, 2.0));
            text.push_str(
                "\n\nWhere the gateway's CPU goes (`perf` sampling the gateway's threads during \
                 this workload alone, on a release build with symbols, taken while writing the \
                 benchmark): a quarter in the kernel (loopback TCP to the client, the Unix socket \
                 to PostgreSQL, epoll and futex wake-ups); a sixth in the C allocator and \
                 `memcpy`; sqlx about 7%, hyper and http 6%, serde_json 5%, tokio 4%; the rest \
                 spread thin (chrono, `aws_lambda_events`, `lambda_http`, url, axum, jsonwebtoken \
                 under 1.5% each), with no single hot spot. About a tenth is the local gateway's \
                 emulation of API Gateway, which AWS does outside the function: the request made \
                 a JSON event and parsed back into `lambda_http`'s request, and the answer the \
                 same way back.",
            );
            let read = if me.read.p99_ms >= 2.0 {
                format!(
                    " The database read alone, with no HTTP in front of it, already has a p99 of \
                     {} at this concurrency on these cores.",
                    ms(me.read.p99_ms)
                )
            } else {
                format!(
                    " The database read alone stays under the target (p99 {}); what the request \
                     adds is the HTTP path's CPU, competing with the load generator and \
                     PostgreSQL for the same cores.",
                    ms(me.read.p99_ms)
                )
            };
            text.push_str(&read);
            text.push_str(
                " The target needs less CPU per request than the load generator, the gateway and \
                 PostgreSQL together use on two cores.",
            );
        }
        let _ = write!(text, "{}", errors_note(&me.me, "requests"));
        Some(text)
    }

    fn login_note(&self, cores: usize) -> Option<String> {
        let (logins, hashes) = self.login.as_ref()?;
        let mut text = format!(
            "`POST /api/auth/login` (JSON) from {cores} clients (one per core), each its own \
             account: the lockout checks, the account read, one argon2id verification (19 MiB, \
             2 passes, on the blocking pool), the last-seen update, a refresh token stored and an \
             access token signed. The baseline is `blockchat::auth::password::verify` of the same \
             hash by {cores} tasks (one per core), back to back: the rate the password hash alone \
             allows. CPU per login: {}; per bare verification: {}.{}",
            cpu(logins, "gateway", "load generator"),
            cpu(hashes, "gateway", "argon2"),
            errors_note(logins, "logins"),
        );
        if let Some((rate, gateway_us)) = self.login_oversubscribed {
            let _ = write!(
                text,
                "\n\nOne login per core is the fair comparison, and the one Lambda makes (an \
                 instance verifies one password at a time). With {} clients, more argon2 hashes \
                 at once than cores, a run beside this one gave {} logins/s at {gateway_us:.0} µs \
                 of gateway CPU per login ({:.0} µs at one per core).",
                cores * 2,
                thousands(rate),
                logins.cpu.gateway_us,
            );
        }
        Some(text)
    }

    fn fanout_note(&self) -> Option<String> {
        let f = self.fanout.as_ref()?;
        let (a50, a99) = f.answered_ms();
        let waves = f.members.div_ceil(self.push_concurrency.max(1));
        let (gw, client, pg) = FanOut::cpu_ms(&f.http_cpu);
        let (gw_direct, client_direct, pg_direct) = FanOut::cpu_ms(&f.direct_cpu);
        let pg_ms =
            |pg: Option<f64>| pg.map_or_else(String::new, |p| format!(", PostgreSQL {p:.1} ms"));
        let cpu = format!(
            " CPU per round (the median): through the product, gateway {gw:.1} ms, members' \
             sockets and load generator {client:.1} ms{}; posted straight, gateway \
             {gw_direct:.1} ms, members' sockets and poster {client_direct:.1} ms{}. The \
             difference is the push's own cost: the connection list (a subquery of the insert), \
             and the AWS SDK (request \
             signing, its interceptors and HTTP client) around each of the {} posts.",
            pg_ms(pg),
            pg_ms(pg_direct),
            thousands(f.members as f64),
        );
        Some(format!(
            "{} members, each with one WebSocket connection to the gateway (opened with `?token=`, \
             {:.1} s to connect them all), in one group. A member sends a message over HTTP; the \
             figure is the time from the send until the last member's socket has the \
             `message.created` frame ({} bytes), over {} rounds (so the p99 is the slowest round). \
             The send's answer comes once every post is done (p50 {}, p99 {}), as it must in \
             Lambda, which freezes a function once it has answered. The insert lists the \
             connections in the same statement, and the push posts the frame to each through the `@connections` \
             management endpoint with the AWS SDK client, {} at a time. The baseline posts the same \
             frame to the same connections, {} at a time, straight to the endpoint with a plain \
             HTTP client: the cost of moving 1,000 frames through the gateway's sockets, with \
             nothing of the product around it.{cpu}\n\n\
             In AWS each PostToConnection is an HTTPS call to API Gateway's management \
             endpoint, far slower than a loopback post. With L the latency of one call, {} \
             members at {} in flight are ⌈{}/{}⌉ = {waves} waves, about {waves} × L: under 250 ms \
             while L stays under {:.0} ms; beyond that, a higher `PUSH_CONCURRENCY` shortens it \
             (the posts wait on the network, not on the CPU). Then the account's throttle is the \
             limit: PostToConnection counts against API Gateway's quota per account and Region, \
             shared by all its HTTP, REST and WebSocket APIs and callbacks (10,000 requests per \
             second by default, with a burst bucket of 5,000; 2,500 in some Regions), so one \
             message to {} members spends a tenth of a second of the whole account's budget; a \
             throttled post answers 429 and the push retries it with backoff. Past what one \
             function can post within its timeout, the fan-out splits: the sending function posts \
             to the first slice itself and hands the rest, in slices of connection ids, to \
             asynchronous invocations of a push function (or to a queue feeding it), each posting \
             its slice concurrently, so the time stays one slice's whatever the group's size, and \
             the throttle is the only shared limit.",
            thousands(f.members as f64),
            f.connect_time.as_secs_f64(),
            thousands(f.frame_bytes as f64),
            f.http.len(),
            ms(a50),
            ms(a99),
            self.push_concurrency,
            self.push_concurrency,
            thousands(f.members as f64),
            self.push_concurrency,
            thousands(f.members as f64),
            self.push_concurrency,
            250.0 / waves as f64,
            thousands(f.members as f64),
        ))
    }

    fn cold_note(&self) -> Option<String> {
        if self.cold.is_empty() {
            return None;
        }
        let runs = self.cold.first().map_or(0, |(_, s)| s.len());
        let pushing: Vec<f64> = ["users", "chats", "messages"]
            .iter()
            .filter_map(|f| self.cold_of(f).map(|c| c.0))
            .collect();
        let sdk = match (self.cold_of("auth"), pushing.is_empty()) {
            (Some((auth_ready, ..)), false) => format!(
                "A function loads nothing at start that a request may not need: the pool \
                 connects on the first query, and the functions that push build their management \
                 API client (credentials and region from the environment, the HTTPS client's \
                 root certificates) on their first push. So `auth`, which never pushes, and \
                 `users`, `chats` and `messages`, which do, are ready alike: {} and {} (median of \
                 their medians). The `websocket` function's first answer includes building that \
                 client, as a ping is answered with a post to the connection.\n\n",
                ms(auth_ready),
                ms(crate::load::median(&pushing)),
            ),
            _ => String::new(),
        };
        let mut worst = String::new();
        for function in FUNCTIONS.iter().chain([&HELLO]) {
            if let Some((r50, rmax, a50, amax)) = self.cold_of(function) {
                let _ = write!(
                    worst,
                    "\n- `{function}`: ready p50 {} (slowest {}), first answer p50 {} (slowest {})",
                    ms(r50),
                    ms(rmax),
                    ms(a50),
                    ms(amax)
                );
            }
        }
        Some(format!(
            "Each binary of `target/release` is started {runs} times, one process after another, \
             the way Lambda starts `bootstrap`: against a minimal Lambda Runtime API that the \
             benchmark serves on loopback, with the environment Lambda sets \
             (`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME`, `…_MEMORY_SIZE` = 256 as in \
             `template.yaml`, `…_VERSION`, the region and a role's credentials) and the \
             configuration the template gives (`DATABASE_URL`, `JWT_SECRET`, `WS_ENDPOINT` for \
             every function but `auth`, pointing at the benchmark's own stand-in for the \
             management API). *Ready* is exec to the first `GET /2018-06-01/runtime/invocation/next`; \
             *first answer* is exec to the POST of the first response, for an event that needs the \
             database, so it includes connecting to it (a lazy pool: the first query connects): \
             `GET /api/auth/me` (auth), `GET /api/users/me` (users), `GET /api/chats/{{id}}` \
             (chats), `GET /api/chats/{{id}}/messages?limit=50` (messages), a `$default` \
             `{{\"action\":\"ping\"}}` frame (websocket, which looks the connection up and posts \
             the pong; the benchmark checks that it arrives, signed with the role's credentials \
             from the environment). The baseline is `bench-hello`, a `lambda_runtime` function that answers \
             `{{}}`, built with the same profile. Medians and slowest of the {runs} starts:{worst}\n\n\
             {sdk}What this leaves out: Lambda's own work before exec (fetching and unpacking the code, \
             starting the sandbox), which no binary controls, and a TLS handshake to a remote \
             database (here the socket is local)."
        ))
    }

    fn size_note(&self) -> Option<String> {
        if self.warm.is_empty() {
            return None;
        }
        let sizes = if self.sam.is_empty() {
            "Sizes are of the `cargo build --release` binaries in `target/release` (as the \
             workspace's release profile builds them): there was no `.aws-sam/build` from a \
             `sam build --parameter-overrides Architecture=x86_64` to measure, and the deployed \
             `bootstrap` (linked by cargo-lambda through zig) may differ in size."
                .to_owned()
        } else {
            let built = self
                .sam
                .iter()
                .map(|(_, _, t)| *t)
                .max()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .and_then(|d| chrono::DateTime::from_timestamp(d.as_secs() as i64, 0))
                .map_or_else(
                    || "unknown".to_owned(),
                    |d| d.format("%Y-%m-%d %H:%M UTC").to_string(),
                );
            format!(
                "Sizes are of the `bootstrap` files that `sam build` (x86_64) left in \
                 `.aws-sam/build` (built {built}); rebuild with `sam build --parameter-overrides \
                 Architecture=x86_64` before a run to keep them current. A function with no \
                 `bootstrap` there is measured from `target/release`, as its row says."
            )
        };
        let mut latency = String::new();
        for (function, warm, _) in &self.warm {
            let _ = write!(
                latency,
                "\n- `{function}`: p50 {} · p99 {} per request",
                ms(warm.p50_us as f64 / 1000.0),
                ms(warm.p99_us as f64 / 1000.0)
            );
        }
        let requests = self.warm.first().map_or(0, |(_, w, _)| w.requests);
        let mut text = format!(
            "{sizes} Peak RSS is the process's `VmHWM` (from `/proc/PID/status`) after {} \
             requests, one after another, through the Runtime API, each with the function's event \
             above. The same loop gives the warm invocation time (Runtime API round trip \
             included):{latency}",
            thousands(requests as f64)
        );
        if let Some((function, sections)) = &self.sections {
            let of = |names: &[&str]| -> u64 {
                sections
                    .iter()
                    .filter(|(n, _)| names.contains(&n.as_str()))
                    .map(|(_, size)| size)
                    .sum()
            };
            let unwinding = [".eh_frame", ".eh_frame_hdr", ".gcc_except_table"];
            let counted = of(&[".text", ".rodata"]) + of(&unwinding) + of(&[".bss", ".tbss"]);
            let total: u64 = sections.iter().map(|(_, size)| size).sum();
            let _ = write!(
                text,
                "\n\nWhat a binary holds: `{function}` is {} of machine code (`.text`), {} of \
                 constants (`.rodata`), {} of unwinding tables (`.eh_frame`, \
                 `.gcc_except_table`, for panics that unwind) and {} of relocations and other \
                 data. The hello-world binary, with `lambda_runtime` and tokio alone, is the \
                 floor. Three choices keep the functions small: one crypto library, `ring`, for \
                 the JWTs, sqlx's TLS and the AWS SDK's HTTPS client (the SDK's default client \
                 would link aws-lc's C crypto beside it); the management API client takes its \
                 credentials and region from the environment Lambda sets, without the SDK's \
                 default chain (profiles, SSO, STS, ECS, IMDS), which Lambda never runs (the two \
                 together took the pushing functions' `bootstrap` from 12.1 MB to 8.2 MB when \
                 they were made); and the release profile's full LTO, one codegen unit and \
                 stripped symbols. Past those, \
                 the binaries hold the SDK's HTTP stack (hyper with h2, which the smithy client \
                 always links, and the smithy runtime), sqlx, axum, serde_json and tokio.",
                mb(of(&[".text"])),
                mb(of(&[".rodata"])),
                mb(of(&unwinding)),
                mb(total.saturating_sub(counted)),
            );
        }
        Some(text)
    }
}
