//! Runtime configuration, read once per cold start from the environment.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

/// The certificate authorities of Amazon RDS (per Region, 2024 generation) and of RDS Proxy
/// (Amazon Trust Services), trusted for `sslmode=verify-full` unless `DATABASE_CA_FILE` or the
/// URL's `sslrootcert` names other ones. Built into the binary so that every function package
/// carries it; see the README's Deploy section for where it comes from and how to refresh it.
pub const RDS_CA_BUNDLE: &[u8] = include_bytes!("../certs/rds-ca-bundle.pem");

/// The smallest signing secret we accept: HS256 wants at least 256 bits of key.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Everything a function or the local gateway needs to serve requests.
#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: SecretString,
    /// PEM file of the certificate authorities that sign the database's certificate; `None`
    /// trusts [`RDS_CA_BUNDLE`].
    pub database_ca_file: Option<PathBuf>,
    pub jwt_secret: SecretString,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// A session's absolute lifetime from its login; refreshing never extends it.
    pub session_ttl: Duration,
    /// The API Gateway management endpoint (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`
    /// in AWS, `http://127.0.0.1:3001` locally). `None` disables real-time push.
    pub ws_endpoint: Option<String>,
    pub db_max_connections: u32,
    /// How long a request waits for a database connection, connecting included, before it is
    /// answered 503 `database_unavailable`.
    pub db_acquire_timeout: Duration,
    /// The most a request (or a WebSocket frame) may take; past it the answer is 503
    /// `database_unavailable`, so that a query to a database that stopped answering never
    /// hangs the client. Below Lambda's function timeout.
    pub request_deadline: Duration,
    pub limits: Limits,
}

/// Abuse limits; generous defaults, tunable per deployment.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Failed logins for one account within `login_window` before it is locked for that window.
    pub login_failures_per_account: i32,
    /// Failed logins from one client address within `login_window`.
    pub login_failures_per_address: i32,
    pub login_window: Duration,
    /// Registrations from one client address within `registration_window`.
    pub registrations_per_address: i32,
    pub registration_window: Duration,
    /// How many PostToConnection calls one push keeps in flight.
    pub push_concurrency: usize,
    /// The longest the pushes of one change (all its events and closes) may hold the answer
    /// to the request that made it; what is not done by then is given up.
    pub push_timeout: Duration,
    /// The longest one PostToConnection may take, its retries included.
    pub push_post_timeout: Duration,
    /// A member's `typing` is forwarded at most once per chat in this interval; the rest are
    /// dropped.
    pub typing_interval: Duration,
    /// Live WebSocket connections per user; opening one more closes the oldest.
    pub connections_per_user: i64,
    /// A connection this new may still be in its `$connect`: a 410 for it does not delete it.
    pub connect_window: Duration,
    /// Frames one connection may send per `frame_window`; above it, frames are refused (the
    /// first with a `rate_limited` error frame).
    pub frames_per_window: i32,
    pub frame_window: Duration,
    /// How long the change log keeps a change; a sync token older than this is answered 410
    /// `sync_expired`.
    pub sync_retention: Duration,
    /// How often the local gateway purges the change log (in AWS, the `maintenance`
    /// function's schedule does).
    pub sync_purge_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            login_failures_per_account: 10,
            login_failures_per_address: 100,
            login_window: Duration::from_secs(15 * 60),
            registrations_per_address: 20,
            registration_window: Duration::from_secs(3600),
            push_concurrency: 64,
            push_timeout: Duration::from_secs(5),
            push_post_timeout: Duration::from_secs(2),
            typing_interval: Duration::from_secs(3),
            connections_per_user: 10,
            connect_window: Duration::from_secs(30),
            frames_per_window: 100,
            frame_window: Duration::from_secs(10),
            sync_retention: Duration::from_secs(30 * 24 * 3600),
            sync_purge_interval: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is not valid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// Required: `DATABASE_URL`, `JWT_SECRET` (at least 32 bytes). Optional: `DATABASE_CA_FILE`,
    /// `JWT_ISSUER`, `JWT_AUDIENCE`, `ACCESS_TOKEN_TTL_SECS`, `REFRESH_TOKEN_TTL_SECS`, `WS_ENDPOINT`,
    /// `DB_MAX_CONNECTIONS`, `LOGIN_FAILURES_PER_ACCOUNT`, `LOGIN_FAILURES_PER_ADDRESS`,
    /// `LOGIN_WINDOW_SECS`, `REGISTRATIONS_PER_ADDRESS`, `REGISTRATION_WINDOW_SECS`,
    /// `SESSION_TTL_SECS`, `PUSH_CONCURRENCY`, `PUSH_TIMEOUT_MS`, `PUSH_POST_TIMEOUT_MS`,
    /// `TYPING_INTERVAL_MS`, `CONNECTIONS_PER_USER`, `WS_CONNECT_WINDOW_MS`,
    /// `WS_FRAMES_PER_WINDOW`, `WS_FRAME_WINDOW_SECS`, `DB_ACQUIRE_TIMEOUT_MS`,
    /// `REQUEST_TIMEOUT_MS`, `SYNC_RETENTION_SECS`, `SYNC_PURGE_INTERVAL_SECS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so callers can layer their own sources.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            lookup(name)
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match lookup(name).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
                    name,
                    reason: format!("expected a whole number, got {v:?}"),
                }),
            }
        };
        let count = |name: &'static str, default: i32| -> Result<i32, ConfigError> {
            Ok(i32::try_from(number(name, default as u64)?).unwrap_or(i32::MAX))
        };
        let seconds = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(number(name, default.as_secs())?))
        };
        let database_url = SecretString::from(required("DATABASE_URL")?);
        let jwt_secret = SecretString::from(required("JWT_SECRET")?);
        check_jwt_secret(&jwt_secret)?;
        let defaults = Limits::default();
        let limits = Limits {
            login_failures_per_account: count(
                "LOGIN_FAILURES_PER_ACCOUNT",
                defaults.login_failures_per_account,
            )?,
            login_failures_per_address: count(
                "LOGIN_FAILURES_PER_ADDRESS",
                defaults.login_failures_per_address,
            )?,
            login_window: seconds("LOGIN_WINDOW_SECS", defaults.login_window)?,
            registrations_per_address: count(
                "REGISTRATIONS_PER_ADDRESS",
                defaults.registrations_per_address,
            )?,
            registration_window: seconds("REGISTRATION_WINDOW_SECS", defaults.registration_window)?,
            push_concurrency: number("PUSH_CONCURRENCY", defaults.push_concurrency as u64)?.max(1)
                as usize,
            push_timeout: Duration::from_millis(
                number("PUSH_TIMEOUT_MS", defaults.push_timeout.as_millis() as u64)?.max(1),
            ),
            push_post_timeout: Duration::from_millis(
                number(
                    "PUSH_POST_TIMEOUT_MS",
                    defaults.push_post_timeout.as_millis() as u64,
                )?
                .max(1),
            ),
            typing_interval: Duration::from_millis(number(
                "TYPING_INTERVAL_MS",
                defaults.typing_interval.as_millis() as u64,
            )?),
            connections_per_user: i64::try_from(
                number("CONNECTIONS_PER_USER", defaults.connections_per_user as u64)?.max(1),
            )
            .unwrap_or(i64::MAX),
            connect_window: Duration::from_millis(number(
                "WS_CONNECT_WINDOW_MS",
                defaults.connect_window.as_millis() as u64,
            )?),
            frames_per_window: i32::try_from(
                number("WS_FRAMES_PER_WINDOW", defaults.frames_per_window as u64)?.max(1),
            )
            .unwrap_or(i32::MAX),
            frame_window: Duration::from_secs(
                number("WS_FRAME_WINDOW_SECS", defaults.frame_window.as_secs())?.max(1),
            ),
            sync_retention: Duration::from_secs(
                number("SYNC_RETENTION_SECS", defaults.sync_retention.as_secs())?.max(1),
            ),
            sync_purge_interval: Duration::from_secs(
                number(
                    "SYNC_PURGE_INTERVAL_SECS",
                    defaults.sync_purge_interval.as_secs(),
                )?
                .max(1),
            ),
        };
        Ok(Self {
            database_url,
            database_ca_file: lookup("DATABASE_CA_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            jwt_secret,
            jwt_issuer: lookup("JWT_ISSUER")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "blockchat".into()),
            jwt_audience: lookup("JWT_AUDIENCE")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "blockchat-api".into()),
            access_token_ttl: Duration::from_secs(number("ACCESS_TOKEN_TTL_SECS", 15 * 60)?.max(1)),
            refresh_token_ttl: Duration::from_secs(
                number("REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600)?.max(1),
            ),
            session_ttl: Duration::from_secs(number("SESSION_TTL_SECS", 90 * 24 * 3600)?.max(1)),
            ws_endpoint: lookup("WS_ENDPOINT").filter(|v| !v.is_empty()),
            db_max_connections: u32::try_from(number("DB_MAX_CONNECTIONS", 2)?.max(1))
                .unwrap_or(u32::MAX),
            db_acquire_timeout: Duration::from_millis(
                number("DB_ACQUIRE_TIMEOUT_MS", 3000)?.max(1),
            ),
            request_deadline: Duration::from_millis(number("REQUEST_TIMEOUT_MS", 10_000)?.max(1)),
            limits,
        })
    }
}

impl Config {
    /// The pool's settings: its size, and how long a request waits for a connection. An idle
    /// connection is pinged before it is handed out (inside that wait), so one whose server
    /// went away or stopped answering is dropped and replaced rather than used; a connection
    /// whose query was abandoned at the deadline is pinged again before it goes back to the
    /// pool, and closed if that fails. So the pool heals by itself once the database is back.
    pub fn pool_options(&self) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(self.db_max_connections)
            .acquire_timeout(self.db_acquire_timeout)
            .test_before_acquire(true)
    }

    /// The connection options of `DATABASE_URL`, refusing any TLS mode weaker than
    /// `sslmode=verify-full` (which checks the certificate's chain *and* its name) unless the
    /// server is on this machine: a loopback address, `localhost` or a Unix socket.
    /// `require` and `verify-ca` still let anyone with a certificate from a trusted
    /// authority (any RDS customer, for the RDS authorities) stand in for the database, and
    /// `prefer`, `allow` and no `sslmode` at all silently fall back to plaintext.
    ///
    /// Checked here, where a pool is built, rather than in [`Config::from_lookup`]: callers
    /// that only sign tokens need no database.
    pub fn database_options(&self) -> Result<PgConnectOptions, ConfigError> {
        let url = self.database_url.expose_secret();
        // sqlx's parse errors name the part that is wrong, never the URL or its password.
        let options: PgConnectOptions = url.parse().map_err(|e| ConfigError::Invalid {
            name: "DATABASE_URL",
            reason: format!("not a PostgreSQL URL ({e})"),
        })?;
        let mode = options.get_ssl_mode();
        if !is_on_this_machine(&options) && !matches!(mode, PgSslMode::VerifyFull) {
            return Err(ConfigError::Invalid {
                name: "DATABASE_URL",
                reason: format!(
                    "sslmode={} does not verify the server's certificate and name; a database \
                     that is not on this machine needs sslmode=verify-full",
                    ssl_mode_name(mode)
                ),
            });
        }
        if !matches!(mode, PgSslMode::VerifyFull | PgSslMode::VerifyCa) {
            return Ok(options);
        }
        Ok(match &self.database_ca_file {
            Some(path) => options.ssl_root_cert(path),
            None if names_root_cert(url) => options,
            None => options.ssl_root_cert_from_pem(RDS_CA_BUNDLE.to_vec()),
        })
    }
}

/// A Unix socket, `localhost` or a loopback address: traffic that never leaves the host.
fn is_on_this_machine(options: &PgConnectOptions) -> bool {
    let host = options.get_host();
    if options.get_socket().is_some() || host.starts_with('/') {
        return true;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether the URL names its own certificate authorities (`sslrootcert` or its aliases).
fn names_root_cert(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        u.query_pairs()
            .any(|(k, _)| matches!(&*k, "sslrootcert" | "ssl-root-cert" | "ssl-ca"))
    })
}

fn ssl_mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer (the default when sslmode is not given)",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

fn check_jwt_secret(secret: &SecretString) -> Result<(), ConfigError> {
    let len = secret.expose_secret().len();
    if len < MIN_JWT_SECRET_BYTES {
        return Err(ConfigError::Invalid {
            name: "JWT_SECRET",
            reason: format!(
                "it is {len} bytes long; HS256 needs at least {MIN_JWT_SECRET_BYTES} random bytes \
                 (for example `openssl rand -base64 48`)"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn short_jwt_secret_is_refused_with_a_reason() {
        let err = config(&[("DATABASE_URL", "postgres://x"), ("JWT_SECRET", "short")])
            .expect_err("a 5-byte secret must be refused");
        let message = err.to_string();
        assert!(message.contains("JWT_SECRET"), "{message}");
        assert!(message.contains("32"), "{message}");
    }

    #[test]
    fn missing_database_url_is_named() {
        let err = config(&[("JWT_SECRET", SECRET)]).expect_err("DATABASE_URL is required");
        assert_eq!(err.to_string(), "DATABASE_URL is not set");
    }

    #[test]
    fn defaults_apply_when_optional_values_are_absent() {
        let c = config(&[("DATABASE_URL", "postgres://x"), ("JWT_SECRET", SECRET)])
            .expect("valid config");
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.jwt_issuer, "blockchat");
        assert_eq!(c.db_max_connections, 2);
        assert_eq!(c.db_acquire_timeout, Duration::from_secs(3));
        assert_eq!(c.request_deadline, Duration::from_secs(10));
        assert_eq!(c.session_ttl, Duration::from_secs(90 * 24 * 3600));
        assert_eq!(c.limits.registrations_per_address, 20);
        assert!(c.ws_endpoint.is_none());
        assert_eq!(c.limits.typing_interval, Duration::from_secs(3));
        assert_eq!(c.limits.connections_per_user, 10);
        assert_eq!(c.limits.push_timeout, Duration::from_secs(5));
        assert_eq!(c.limits.push_post_timeout, Duration::from_secs(2));
    }

    #[test]
    fn non_numeric_ttl_is_refused() {
        let err = config(&[
            ("DATABASE_URL", "postgres://x"),
            ("JWT_SECRET", SECRET),
            ("ACCESS_TOKEN_TTL_SECS", "soon"),
        ])
        .expect_err("must refuse");
        assert!(err.to_string().contains("ACCESS_TOKEN_TTL_SECS"));
    }

    fn database(url: &str) -> Result<PgConnectOptions, ConfigError> {
        config(&[("DATABASE_URL", url), ("JWT_SECRET", SECRET)])
            .expect("valid config")
            .database_options()
    }

    #[test]
    fn a_remote_database_without_verify_full_is_refused() {
        for query in [
            "",
            "?sslmode=disable",
            "?sslmode=allow",
            "?sslmode=prefer",
            "?sslmode=require",
            "?sslmode=verify-ca",
        ] {
            let url =
                format!("postgres://app:hunter2@db.abc.eu-west-1.rds.amazonaws.com/chat{query}");
            let err = database(&url).expect_err(&url);
            let message = err.to_string();
            assert!(
                message.starts_with("DATABASE_URL is not valid"),
                "{message}"
            );
            assert!(message.contains("sslmode=verify-full"), "{message}");
            assert!(
                !message.contains("hunter2"),
                "the error quotes the password: {message}"
            );
        }
    }

    #[test]
    fn a_remote_database_with_verify_full_is_accepted() {
        let options = database("postgres://app:pw@10.1.2.3:5432/chat?sslmode=verify-full")
            .expect("verified TLS is enough");
        assert!(matches!(options.get_ssl_mode(), PgSslMode::VerifyFull));
        let with_own_ca = config(&[
            (
                "DATABASE_URL",
                "postgres://app:pw@db.example/chat?sslmode=verify-full",
            ),
            ("JWT_SECRET", SECRET),
            ("DATABASE_CA_FILE", "/var/task/ca.pem"),
        ])
        .expect("valid config");
        assert_eq!(
            with_own_ca.database_ca_file.as_deref(),
            Some(std::path::Path::new("/var/task/ca.pem"))
        );
        with_own_ca
            .database_options()
            .expect("verified TLS is enough");
    }

    #[test]
    fn loopback_and_unix_sockets_may_connect_in_plaintext() {
        for url in [
            "postgres://postgres@localhost:5432/x",
            "postgres://postgres@LOCALHOST/x?sslmode=disable",
            "postgres://nobody@127.0.0.1:1/none",
            "postgres://postgres@127.9.9.9/x?sslmode=prefer",
            "postgres://postgres@[::1]:5432/x",
            "postgres://postgres@localhost/x?host=/tmp/pg-socket",
            "postgres://postgres@db.example/x?host=/var/run/postgresql",
        ] {
            database(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn hosts_that_only_look_local_are_remote() {
        for url in [
            "postgres://p@localhost.example.com/x",
            "postgres://p@127.0.0.1.nip.io/x",
            "postgres://p@10.0.0.1/x?sslmode=require",
        ] {
            database(url).expect_err(url);
        }
    }

    #[test]
    fn the_bundled_authorities_are_certificates() {
        let pem = std::str::from_utf8(RDS_CA_BUNDLE).expect("PEM is text");
        let begins = pem.matches("-----BEGIN CERTIFICATE-----").count();
        let ends = pem.matches("-----END CERTIFICATE-----").count();
        assert_eq!(begins, ends);
        assert!(begins >= 90, "{begins} certificates");
    }
}
