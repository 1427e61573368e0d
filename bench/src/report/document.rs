//! `BENCHMARKS.md`: how it was run, on what machine, the table, and the notes.

use std::fmt::Write as _;

use super::Report;
use super::format::thousands;
use super::notes::Note;

impl Report {
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
        for Note { title, text } in self.notes() {
            let _ = writeln!(out, "### {title}\n\n{text}\n");
        }
        out
    }
}
