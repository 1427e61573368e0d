//! The note under each workload's heading: what was measured, against what, and where a
//! target was missed, the measured cause.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::format::{bound, cpu, errors_note, mb, ms, queueing, thousands};
use super::{BinarySections, ColdSpread, LoginFigures, Oversubscribed, Report, Versus, WarmRun};
use crate::fanout::{FanOut, RoundCpu};
use crate::lambda::{FUNCTIONS, HELLO};
use crate::load::Spread;

/// A heading of `BENCHMARKS.md` and the text under it.
pub(super) struct Note {
    pub title: String,
    pub text: String,
}

impl Note {
    fn new(title: &str, text: String) -> Self {
        Self {
            title: title.to_owned(),
            text,
        }
    }
}

impl Report {
    pub(super) fn notes(&self) -> Vec<Note> {
        let cores = self.machine.cores;
        let mut notes = Vec::new();
        notes.push(Note::new(
            "How it runs",
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
            notes.push(Note::new("Send over HTTP", text));
        }
        if let Some(text) = self.list_note() {
            notes.push(Note::new("Listing the newest messages", text));
        }
        if let Some(text) = self.me_note(cores) {
            notes.push(Note::new("`GET /api/auth/me`", text));
        }
        if let Some(text) = self.session_note() {
            notes.push(Note::new("Session check", text));
        }
        if let Some(text) = self.send_log_note() {
            notes.push(Note::new("Change log", text));
        }
        if let Some(text) = self.login_note(cores) {
            notes.push(Note::new("Login", text));
        }
        if let Some(text) = self.fanout_note() {
            notes.push(Note::new("Fan-out", text));
        }
        if let Some(text) = self.load_note() {
            notes.push(Note::new("Load and memory", text));
        }
        if let Some(soak) = &self.soak {
            notes.push(Note::new("Soak", self.soak_note(soak)));
        }
        if let Some(text) = self.cold_note() {
            notes.push(Note::new("Cold start", text));
        }
        if let Some(text) = self.size_note() {
            notes.push(Note::new("Size and memory", text));
        }
        notes
    }

    fn send_note(&self, cores: usize) -> Option<String> {
        let Versus {
            measured: sent,
            baseline: straight,
            ..
        } = self.sends.iter().find(|s| s.clients == 16)?;
        let mut text = format!(
            "Each client sends `POST /api/chats/{{id}}/messages` with a short text, to 64 group \
             chats of 64 members, walking the chats in step so that no two clients write to one \
             chat at once. A send takes the whole deployed path but the network: the payload-2.0 \
             event, `lambda_http`'s adapter, the messages router, the JWT check, the session's \
             lookup, the insert (one statement: the chat's counter, the row, the sender's read \
             cursor, and the list of the members' live connections to push the message to; none \
             are connected here), and the JSON answer. The baseline is `blockchat::db::messages::insert`, the same statement, from as \
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
        if let Some(Versus {
            clients,
            measured: hot,
            baseline: hot_straight,
        }) = &self.hot
        {
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
        let Versus {
            clients,
            measured: big,
            baseline: small,
        } = self.list.as_ref()?;
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
            "`GET /api/auth/me` with a valid token: the JWT check and one statement (the user by \
             primary key, its session's check folded in), through the whole gateway path. The baseline is an axum route answering a constant JSON \
             object, served by `axum::serve` on the same runtime: the floor of any answer over \
             loopback HTTP here. CPU per request: {}; the static route's {}.{}\n\n\
             The request's one statement alone, `blockchat::db::users::find_own` with the session, from {} tasks straight \
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

    fn session_note(&self) -> Option<String> {
        if self.session_me.is_none() && self.session_send.is_none() {
            return None;
        }
        let mut text = format!(
            "Every authenticated request checks that its access token's session is live \
             (neither ended nor past its lifetime, its account not deleted). `/me` folds the \
             check into the statement that reads the user (an `EXISTS` on the session's primary \
             key); a send, into its insert's guard; a WebSocket frame, into the lookup of its \
             connection that also counts the frame; every other route makes one primary-key read \
             of the session before its own statements. These rows isolate the cost, straight through sqlx from as many tasks \
             on a pool as large as the gateway's ({} connections): each side is the product's \
             own statements, with the check and without it, in alternating runs. The HTTP rows \
             above include it.",
            self.gateway_connections
        );
        let delta = |v: &Versus| {
            format!(
                "p50 {} → {} (+{} µs), p99 {} → {}",
                ms(v.baseline.p50_ms),
                ms(v.measured.p50_ms),
                thousands((v.measured.p50_ms - v.baseline.p50_ms) * 1000.0),
                ms(v.baseline.p99_ms),
                ms(v.measured.p99_ms)
            )
        };
        if let Some(me) = &self.session_me {
            let _ = write!(
                text,
                "\n\n`/me`'s read with the check against without: {}, {} reads/s against {}.",
                delta(me),
                thousands(me.measured.rate),
                thousands(me.baseline.rate)
            );
        }
        if let Some(send) = &self.session_send {
            let _ = write!(
                text,
                "\n\nA send's statement with the session in its guard against the same \
                 statement without it: {}, {} msgs/s against {}.",
                delta(send),
                thousands(send.measured.rate),
                thousands(send.baseline.rate)
            );
        }
        Some(text)
    }

    fn send_log_note(&self) -> Option<String> {
        let v = self.send_log.as_ref()?;
        Some(format!(
            "Every change is logged for `GET /api/sync` in the statement that makes it. A send's \
             statement takes the chat's next change position in the same update that takes its \
             `seq` (the chat row is locked there already) and inserts one `changes` row (chat, \
             position, kind, message id, the writing transaction's id) beside the message; it \
             also compares the chat's membership position with the one its snapshot saw (when \
             members changed while it waited for the lock, the push looks its audience up \
             again). This row runs the product's statement against the statement as it was \
             before the log, both with the session check, {} clients on the send chats, in alternating \
             runs: p50 {} → {}, p99 {} → {}, {} msgs/s against {}.",
            v.clients,
            ms(v.baseline.p50_ms),
            ms(v.measured.p50_ms),
            ms(v.baseline.p99_ms),
            ms(v.measured.p99_ms),
            thousands(v.measured.rate),
            thousands(v.baseline.rate)
        ))
    }

    fn login_note(&self, cores: usize) -> Option<String> {
        let LoginFigures {
            logins,
            hashes,
            oversubscribed,
        } = self.login.as_ref()?;
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
        {
            let Oversubscribed { rate, gateway_us } = oversubscribed;
            let _ = write!(
                text,
                "\n\nOne login per core is the fair comparison, and the one Lambda makes (an \
                 instance verifies one password at a time). With {} clients, more argon2 hashes \
                 at once than cores, a run beside this one gave {} logins/s at {gateway_us:.0} µs \
                 of gateway CPU per login ({:.0} µs at one per core).",
                cores * 2,
                thousands(*rate),
                logins.cpu.gateway_us,
            );
        }
        Some(text)
    }

    fn fanout_note(&self) -> Option<String> {
        let f = self.fanout.as_ref()?;
        let Spread { p50: a50, p99: a99 } = f.answered_ms();
        let waves = f.connections.div_ceil(self.push_concurrency.max(1));
        let RoundCpu {
            gateway_ms: gw,
            client_ms: client,
            postgres_ms: pg,
        } = FanOut::cpu_ms(&f.http_cpu);
        let RoundCpu {
            gateway_ms: gw_direct,
            client_ms: client_direct,
            postgres_ms: pg_direct,
        } = FanOut::cpu_ms(&f.direct_cpu);
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

    fn load_note(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(many) = &self.many_clients {
            let mut text = format!(
                "{} clients at once, each on its own keep-alive connection, ask `GET \
                 /api/auth/me` of the gateway in-process for the measured window: {} requests, \
                 {} errors. The gateway's pool holds {} database connections, so the requests \
                 queue for them; none may fail or time out.",
                thousands(many.clients as f64),
                thousands(many.requests as f64),
                many.errors,
                self.gateway_connections
            );
            if let Some(first) = &many.first_error {
                let _ = write!(text, " The first error: `{first}`.");
            }
            parts.push(text);
        }
        if let Some(f) = &self.fanout_devices {
            parts.push(format!(
                "{} members each hold {} WebSocket connections ({} in all) in one group; a member \
                 sends over HTTP, and a round ends only when every connection has the \
                 `message.created` frame, so each of the {} rounds checked all {} of them.",
                thousands(f.members as f64),
                f.devices,
                thousands(f.connections as f64),
                f.http.len(),
                thousands(f.connections as f64)
            ));
        }
        if let Some(g) = &self.gateway_logins {
            let mut text = format!(
                "The release `blockchat-local` binary, started on its own over the benchmark's \
                 database (so that its memory is its own), serves {} logins from {} clients \
                 ({:.0} s, {} errors); its resident memory is read from `/proc` before the first \
                 login, at its peak (`VmHWM`) and at the end. Each login verifies an argon2id \
                 hash in 19 MiB: the product runs at most one verification per core, each in one \
                 of the memory areas it keeps (one per core), so the memory for hashing stays \
                 `cores × 19 MiB` however many logins and clients there are, instead of 19 MiB \
                 more per blocking thread that the allocator keeps.",
                thousands(g.logins as f64),
                g.clients,
                g.elapsed.as_secs_f64(),
                g.errors
            );
            if let Some(first) = &g.first_error {
                let _ = write!(text, " The first error: `{first}`.");
            }
            parts.push(text);
        }
        if let Some(w) = &self.function_logins {
            parts.push(format!(
                "One `auth` instance, started as Lambda starts it, answers {} login events one \
                 after another (p50 {} each); its peak resident memory is read from `/proc` at \
                 the end.",
                thousands(w.requests as f64),
                ms(w.p50_us as f64 / 1000.0)
            ));
        }
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }

    fn soak_note(&self, soak: &crate::soak::SoakReport) -> String {
        let outages: Vec<String> = soak
            .outages
            .iter()
            .map(|o| {
                format!(
                    "{}: down {:.2} s, the API answering again {:.2} s after its return",
                    o.kind,
                    o.down.as_secs_f64(),
                    o.recovered.as_secs_f64()
                )
            })
            .collect();
        let t = |n: u64| thousands(n as f64);
        let mut text = format!(
            "{} users with 2 devices each ({} devices) in {} chats \
             (groups and direct chats made through the API), each device sending about every \
             {} s for {:.0} s, half over HTTP and half over its socket, each send with a \
             `client_id`; a send that times out or meets a 503 is sent again with the same \
             `client_id`, and a socket send without its `ack` in 5 s goes again over HTTP. \
             Beside the sends, every kind of change: {} edits and {} deletions of earlier \
             messages, {} read marks (over HTTP and the socket), {} renames, {} members added \
             to and {} removed from churn groups, {} small groups made and {} deleted. Each \
             device keeps its chats' state (messages, members' read cursors, names, \
             membership) from the changes it applies, each once by its position in its chat; \
             it holds a sync token taken before it was in any chat, and every reconnect, every \
             gap in a chat's positions and every chat joined sends it through `GET /api/sync` \
             (a chat joined is loaded after the feed). Devices drop their socket at random \
             (closing it or just vanishing) and reconnect. During the run the `@connections` \
             endpoint fails 10% of posts, throttles 20% and slows 5% for {:.0} s; PostgreSQL \
             is restarted cleanly, then killed with SIGKILL (backends included) and started \
             again (crash recovery). {}.\n\n\
             {} sends were acknowledged ({} over HTTP, {} over the socket), {} sent again \
             ({} socket sends without an `ack`), {} reconnects, {} answers 503; devices applied \
             {} changes as live events and {} from the feed ({} syncs, {} gaps seen, {} chats \
             loaded on joining). At the end every device synced once more, and was compared \
             with a fresh load of its user's chats (chat list, members with their read \
             cursors, messages: {} chats compared, {} messages stored): losses {}, \
             duplicates {}, changes of chats a device was not in {}, other 5xx {}.",
            soak.users,
            soak.devices,
            soak.chats,
            self.plan.soak.send_every.as_secs_f64(),
            soak.duration.as_secs_f64(),
            t(soak.edits),
            t(soak.deletes),
            t(soak.reads),
            t(soak.renames),
            t(soak.added),
            t(soak.removed),
            t(soak.created),
            t(soak.deleted),
            soak.push_faults.as_secs_f64(),
            outages.join("; "),
            t(soak.acknowledged),
            t(soak.over_http),
            t(soak.over_socket),
            t(soak.retries),
            t(soak.socket_timeouts),
            t(soak.reconnects),
            t(soak.answers_503),
            t(soak.live),
            t(soak.synced),
            t(soak.syncs),
            t(soak.gaps),
            t(soak.loads),
            t(soak.compared),
            t(soak.stored),
            soak.losses,
            soak.duplicates,
            soak.strays,
            soak.unexpected.len(),
        );
        if !soak.differences.is_empty() {
            let _ = write!(
                text,
                " The first differences: {}.",
                soak.differences.join("; ")
            );
        }
        if let Some(first) = soak.unexpected.first() {
            let _ = write!(text, " The first other 5xx: `{first}`.");
        }
        text
    }

    fn cold_note(&self) -> Option<String> {
        if self.cold.is_empty() {
            return None;
        }
        let runs = self.cold.first().map_or(0, |c| c.starts.len());
        let pushing: Vec<f64> = ["users", "chats", "messages"]
            .iter()
            .filter_map(|f| self.cold_of(f).map(|c| c.ready_p50))
            .collect();
        let sdk = match (self.cold_of("auth"), pushing.is_empty()) {
            (Some(auth), false) => format!(
                "A function loads nothing at start that a request may not need: the pool \
                 connects on the first query, and the functions that push build their management \
                 API client (credentials and region from the environment, the HTTPS client's \
                 root certificates) on their first push. So `auth`, which never pushes, and \
                 `users`, `chats` and `messages`, which do, are ready alike: {} and {} (median of \
                 their medians). The `websocket` function's first answer includes building that \
                 client, as a ping is answered with a post to the connection.\n\n",
                ms(auth.ready_p50),
                ms(crate::load::median(&pushing)),
            ),
            _ => String::new(),
        };
        let mut worst = String::new();
        for function in FUNCTIONS.iter().chain([&HELLO]) {
            if let Some(ColdSpread {
                ready_p50: r50,
                ready_max: rmax,
                answered_p50: a50,
                answered_max: amax,
            }) = self.cold_of(function)
            {
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
             configuration the template gives (`DATABASE_URL`, `JWT_SECRET`, `WS_ENDPOINT` \
             pointing at the benchmark's own stand-in for the management API). *Ready* is exec to the first `GET /2018-06-01/runtime/invocation/next`; \
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
                .map(|b| b.built)
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
        for WarmRun { function, warm, .. } in &self.warm {
            let _ = write!(
                latency,
                "\n- `{function}`: p50 {} · p99 {} per request",
                ms(warm.p50_us as f64 / 1000.0),
                ms(warm.p99_us as f64 / 1000.0)
            );
        }
        let requests = self.warm.first().map_or(0, |w| w.warm.requests);
        let mut text = format!(
            "{sizes} Peak RSS is the process's `VmHWM` (from `/proc/PID/status`) after {} \
             requests, one after another, through the Runtime API, each with the function's event \
             above. The same loop gives the warm invocation time (Runtime API round trip \
             included):{latency}",
            thousands(requests as f64)
        );
        if let Some(BinarySections { function, sections }) = &self.sections {
            let of = |names: &[&str]| -> u64 {
                sections
                    .iter()
                    .filter(|s| names.contains(&s.name.as_str()))
                    .map(|s| s.size)
                    .sum()
            };
            let unwinding = [".eh_frame", ".eh_frame_hdr", ".gcc_except_table"];
            let counted = of(&[".text", ".rodata"]) + of(&unwinding) + of(&[".bss", ".tbss"]);
            let total: u64 = sections.iter().map(|s| s.size).sum();
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
                 always links, and the smithy runtime), sqlx, axum, serde_json and tokio. Every \
                 function now links the management API client, `auth` too: a logout and a \
                 refresh-token replay close the ended session's sockets (DeleteConnection), \
                 which puts `auth` at the pushing functions' size.",
                mb(of(&[".text"])),
                mb(of(&[".rodata"])),
                mb(of(&unwinding)),
                mb(total.saturating_sub(counted)),
            );
        }
        Some(text)
    }
}
