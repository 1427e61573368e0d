//! The one table: a row per workload, its baseline and its target, and whether it was met.

use std::fmt::Write as _;

use super::format::{mb, mib, ms, rate, ratio, thousands};
use super::{ColdSpread, LoginFigures, Report, Unbuilt, Versus, WarmRun};
use crate::lambda::{FUNCTIONS, HELLO};
use crate::load::Spread;

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

impl Report {
    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for Versus {
            clients,
            measured: sent,
            baseline: straight,
        } in &self.sends
        {
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
        if let Some(Versus {
            clients,
            measured: sent,
            baseline: straight,
        }) = &self.hot
        {
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
        if let Some(Versus {
            measured: big,
            baseline: small,
            ..
        }) = &self.list
        {
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
        let sessions = [
            (&self.session_me, "`/me`'s read", "reads/s"),
            (&self.session_send, "a send's statements", "msgs/s"),
        ];
        for (versus, what, unit) in sessions {
            let Some(Versus {
                clients,
                measured,
                baseline,
            }) = versus
            else {
                continue;
            };
            let share = measured.rate / baseline.rate;
            rows.push(Row {
                workload: format!("session check: {what}, {clients} clients"),
                measured: format!("checked: {}", rate(measured, unit, true)),
                baseline: format!("unchecked: {}", rate(baseline, unit, true)),
                ratio: ratio(share),
                target: "≥ 0.80× the baseline".to_owned(),
                verdict: if share >= 0.8 && measured.errors == 0 {
                    Verdict::Met
                } else {
                    Verdict::Missed
                },
            });
        }
        if let Some(Versus {
            clients,
            measured,
            baseline,
        }) = &self.send_log
        {
            let share = measured.rate / baseline.rate;
            rows.push(Row {
                workload: format!("change log: a send's statement, {clients} clients"),
                measured: format!("with the log: {}", rate(measured, "msgs/s", true)),
                baseline: format!("without: {}", rate(baseline, "msgs/s", true)),
                ratio: ratio(share),
                target: "≥ 0.80× the baseline".to_owned(),
                verdict: if share >= 0.8 && measured.errors == 0 {
                    Verdict::Met
                } else {
                    Verdict::Missed
                },
            });
        }
        if let Some(LoginFigures { logins, hashes, .. }) = &self.login {
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
            let Spread { p50, p99 } = f.http_ms();
            let Spread { p50: d50, p99: d99 } = f.direct_ms();
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
        self.load_rows(&mut rows);
        let hello = self.cold_of(HELLO);
        for function in FUNCTIONS {
            let Some(ColdSpread {
                ready_p50: ready,
                answered_p50: answered,
                ..
            }) = self.cold_of(function)
            else {
                continue;
            };
            rows.push(Row {
                workload: format!("cold start: `{function}`"),
                measured: format!("ready {} · first answer {}", ms(ready), ms(answered)),
                baseline: hello.map_or_else(String::new, |h| {
                    format!(
                        "hello world: ready {} · first answer {}",
                        ms(h.ready_p50),
                        ms(h.answered_p50)
                    )
                }),
                ratio: hello.map_or_else(String::new, |h| {
                    format!("ready {}", ratio(ready / h.ready_p50))
                }),
                target: "ready < 10 ms; answer < 50 ms".to_owned(),
                verdict: if ready < 10.0 && answered < 50.0 {
                    Verdict::Met
                } else {
                    Verdict::Missed
                },
            });
        }
        for Unbuilt { function, cause } in &self.unbuilt {
            rows.push(Row {
                workload: format!("cold start, size and memory: `{function}`"),
                measured: format!("does not build: `{cause}`"),
                baseline: String::new(),
                ratio: String::new(),
                target: "builds; ready < 10 ms; answer < 50 ms; < 10 MB; < 30 MB".to_owned(),
                verdict: Verdict::Missed,
            });
        }
        let hello_warm = self.warm.iter().find(|w| w.function == HELLO);
        for WarmRun {
            function,
            warm,
            binary_size,
        } in &self.warm
        {
            if function == HELLO {
                continue;
            }
            let size = self.sam_size(function).or(*binary_size).unwrap_or(0);
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
                baseline: hello_warm.map_or_else(String::new, |hello| {
                    format!(
                        "hello world: binary {} · peak RSS {}",
                        mb(hello.binary_size.unwrap_or(0)),
                        mb(hello.warm.peak_rss)
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
    /// Many clients, many connections, and memory after many logins.
    fn load_rows(&self, rows: &mut Vec<Row>) {
        let verdict = |met: bool| if met { Verdict::Met } else { Verdict::Missed };
        if let Some(many) = &self.many_clients {
            rows.push(Row {
                workload: format!(
                    "`GET /api/auth/me`, {} clients at once",
                    thousands(many.clients as f64)
                ),
                measured: format!(
                    "{} req/s · p50 {} · p99 {} · {} errors in {}",
                    thousands(many.rate),
                    ms(many.p50_ms),
                    ms(many.p99_ms),
                    many.errors,
                    thousands(many.requests as f64)
                ),
                baseline: self.me.as_ref().map_or_else(String::new, |me| {
                    format!("{} clients: {}", me.clients, rate(&me.me, "req/s", true))
                }),
                ratio: String::new(),
                target: "no errors".to_owned(),
                verdict: verdict(many.errors == 0 && many.requests > 0),
            });
        }
        if let Some(f) = &self.fanout_devices {
            let Spread { p50, p99 } = f.http_ms();
            rows.push(Row {
                workload: format!(
                    "fan-out to {} connections ({} members × {} devices)",
                    thousands(f.connections as f64),
                    thousands(f.members as f64),
                    f.devices
                ),
                measured: format!(
                    "every connection had every message ({} rounds); last: p50 {} · p99 {}",
                    f.http.len(),
                    ms(p50),
                    ms(p99)
                ),
                baseline: self.fanout.as_ref().map_or_else(String::new, |one| {
                    let Spread { p50, p99 } = one.http_ms();
                    format!("one device each: p50 {} · p99 {}", ms(p50), ms(p99))
                }),
                ratio: String::new(),
                target: "every connection receives".to_owned(),
                verdict: verdict(!f.http.is_empty()),
            });
        }
        if let Some(g) = &self.gateway_logins {
            rows.push(Row {
                workload: format!(
                    "memory: `blockchat-local`, {} logins at {} clients",
                    thousands(g.logins as f64),
                    g.clients
                ),
                measured: format!(
                    "peak RSS {} · at the end {} · {} errors",
                    mib(g.peak_rss),
                    mib(g.rss_end),
                    g.errors
                ),
                baseline: format!("at start: {}", mib(g.rss_start)),
                ratio: String::new(),
                target: "< 150 MiB".to_owned(),
                verdict: verdict(g.peak_rss < 150 << 20 && g.errors == 0),
            });
        }
        if let Some(soak) = &self.soak {
            let slowest = soak
                .outages
                .iter()
                .map(|o| o.recovered.as_secs_f64())
                .fold(0.0, f64::max);
            rows.push(Row {
                workload: format!(
                    "soak: {} users × 2 devices, {:.0} s, PostgreSQL restarted and killed, pushes failing",
                    soak.users,
                    soak.duration.as_secs_f64()
                ),
                measured: format!(
                    "{} sends acknowledged · {} other changes · {} changes live, {} synced · losses {} · duplicates {} · {} reconnects · {} retries · other 5xx {}",
                    thousands(soak.acknowledged as f64),
                    thousands(
                        (soak.edits
                            + soak.deletes
                            + soak.reads
                            + soak.renames
                            + soak.added
                            + soak.removed
                            + soak.created
                            + soak.deleted) as f64
                    ),
                    thousands(soak.live as f64),
                    thousands(soak.synced as f64),
                    soak.losses,
                    soak.duplicates,
                    thousands(soak.reconnects as f64),
                    thousands(soak.retries as f64),
                    soak.unexpected.len()
                ),
                baseline: format!("answering again {slowest:.2} s after PostgreSQL's return at worst"),
                ratio: String::new(),
                target: "losses 0; duplicates 0; no change of a chat left; no 5xx but 503; answering within 10 s".to_owned(),
                verdict: verdict(self.soak_failure().is_none()),
            });
        }
        if let Some(w) = &self.function_logins {
            let hello = self.warm.iter().find(|w| w.function == HELLO);
            rows.push(Row {
                workload: format!(
                    "memory: `auth` instance, {} logins",
                    thousands(w.requests as f64)
                ),
                measured: format!("peak RSS {}", mib(w.peak_rss)),
                baseline: hello.map_or_else(String::new, |h| {
                    format!("hello world: peak RSS {}", mib(h.warm.peak_rss))
                }),
                ratio: String::new(),
                target: "< 60 MiB".to_owned(),
                verdict: verdict(w.peak_rss < 60 << 20),
            });
        }
    }

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

    pub(super) fn missed(&self) -> Vec<String> {
        self.rows()
            .into_iter()
            .filter(|r| r.verdict == Verdict::Missed)
            .map(|r| r.workload)
            .collect()
    }
}
