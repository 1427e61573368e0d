//! Secrets from AWS Secrets Manager, read once per cold start.
//!
//! A deployed function is given the ARNs of its secrets, never their values:
//! `JWT_SECRET_ARN` (the signing key, the whole secret string) and `DATABASE_SECRET_ARN` (RDS
//! style JSON: `username`, `password` and optionally `host`, `port`, `dbname`). [`resolve`]
//! reads them before the first request and hands back the `JWT_SECRET` and `DATABASE_URL` that
//! [`Config::from_lookup`](crate::config::Config::from_lookup) reads. Where no ARN is set (the
//! local gateway, tests, a plain `DATABASE_URL`) nothing here runs and no client is built.
//!
//! Why a direct call rather than the AWS Parameters and Secrets Lambda Extension: the
//! extension is a layer whose ARN differs per Region, partition and architecture (and its
//! version per Region), so the template would have to carry a table of them, and it runs as a
//! second process in every execution environment. Why not the SDK client: its code is linked
//! into every function (release `auth`: 7.7 MB without a reader, 10.0 MB with the SDK client,
//! 8.1 MB with this call; `users`, which links the SDK runtime for pushes: 9.4, 9.8 and
//! 9.6 MB). [`SecretsManager`] makes the one call, `GetSecretValue`, itself: a SigV4-signed
//! JSON POST (`aws-sigv4`, which the management API client's runtime links) over the hyper and
//! rustls-on-`ring` stack the binaries link already, with the credentials and Region Lambda
//! puts in the environment. It is called once per secret per cold start, both secrets at once,
//! and sits behind [`SecretSource`], so the tests (and any other reader) can stand in for it.

mod manager;

use std::future::Future;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

pub use manager::{ENDPOINT_VARIABLE, SecretsManager, SecretsManagerError};

/// The ARN of the JWT signing key's secret; replaces `JWT_SECRET`.
pub const JWT_SECRET_ARN: &str = "JWT_SECRET_ARN";
/// The ARN of the database credentials' secret; replaces `DATABASE_URL`.
pub const DATABASE_SECRET_ARN: &str = "DATABASE_SECRET_ARN";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("the Secrets Manager client cannot be set up: {0}")]
    Client(SecretsManagerError),
    #[error("{plain} and {arn} are both set; set only one of them")]
    Conflict {
        plain: &'static str,
        arn: &'static str,
    },
    #[error("reading the secret of {arn} failed: {reason}")]
    Fetch { arn: &'static str, reason: String },
    /// `reason` never quotes the secret's values.
    #[error("the secret of {arn} is not usable: {reason}")]
    Payload { arn: &'static str, reason: String },
}

/// The values read from secrets, to be looked up before the environment.
#[derive(Debug, Default)]
pub struct Resolved {
    jwt_secret: Option<SecretString>,
    database_url: Option<SecretString>,
}

impl Resolved {
    /// The value a secret gave for the configuration variable `name`, if any.
    pub fn get(&self, name: &str) -> Option<String> {
        let value = match name {
            "JWT_SECRET" => self.jwt_secret.as_ref(),
            "DATABASE_URL" => self.database_url.as_ref(),
            _ => None,
        };
        value.map(|v| v.expose_secret().to_owned())
    }
}

/// Reads the secrets whose ARNs the environment names, from Secrets Manager with the
/// function's own credentials and Region.
pub async fn resolve_from_env() -> Result<Resolved, SecretsError> {
    let lookup = |name: &str| std::env::var(name).ok();
    if lookup(JWT_SECRET_ARN).is_none_or(|v| v.is_empty())
        && lookup(DATABASE_SECRET_ARN).is_none_or(|v| v.is_empty())
    {
        return Ok(Resolved::default());
    }
    let source = SecretsManager::from_env().map_err(SecretsError::Client)?;
    resolve(lookup, &source).await
}

/// Where secret strings come from: Secrets Manager, or a table in tests.
pub(crate) trait SecretSource {
    fn secret_string(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<SecretString, BoxError>> + Send;
}

impl SecretSource for SecretsManager {
    async fn secret_string(&self, arn: &str) -> Result<SecretString, BoxError> {
        Ok(self.get_secret_value(arn).await?)
    }
}

/// Reads the secrets named by `JWT_SECRET_ARN` and `DATABASE_SECRET_ARN` (both at once), and
/// refuses a plain value beside its ARN: which of the two is meant would be a guess.
pub(crate) async fn resolve(
    lookup: impl Fn(&str) -> Option<String>,
    source: &impl SecretSource,
) -> Result<Resolved, SecretsError> {
    let set = |name: &str| lookup(name).filter(|v| !v.is_empty());
    let arn = |plain: &'static str, arn: &'static str| match (set(plain), set(arn)) {
        (Some(_), Some(_)) => Err(SecretsError::Conflict { plain, arn }),
        (_, value) => Ok(value),
    };
    let jwt_arn = arn("JWT_SECRET", JWT_SECRET_ARN)?;
    let database_arn = arn("DATABASE_URL", DATABASE_SECRET_ARN)?;
    let overrides = DatabaseOverrides {
        host: set("DATABASE_HOST"),
        port: set("DATABASE_PORT"),
        dbname: set("DATABASE_NAME"),
    };

    let jwt = async {
        match &jwt_arn {
            Some(id) => fetch(source, JWT_SECRET_ARN, id).await.map(Some),
            None => Ok(None),
        }
    };
    let database = async {
        let Some(id) = &database_arn else {
            return Ok(None);
        };
        let payload = fetch(source, DATABASE_SECRET_ARN, id).await?;
        database_url(payload.expose_secret(), &overrides)
            .map(Some)
            .map_err(|reason| SecretsError::Payload {
                arn: DATABASE_SECRET_ARN,
                reason,
            })
    };
    let (jwt_secret, database_url) = futures::try_join!(jwt, database)?;
    Ok(Resolved {
        jwt_secret,
        database_url,
    })
}

async fn fetch(
    source: &impl SecretSource,
    arn: &'static str,
    id: &str,
) -> Result<SecretString, SecretsError> {
    source
        .secret_string(id)
        .await
        .map_err(|e| SecretsError::Fetch {
            arn,
            reason: e.to_string(),
        })
}

/// Values of the deployment that win over the secret's: the RDS Proxy endpoint in place of
/// the instance's host, for example, or a database the secret does not name.
#[derive(Debug, Default)]
pub struct DatabaseOverrides {
    pub host: Option<String>,
    pub port: Option<String>,
    pub dbname: Option<String>,
}

/// Turns an RDS-style secret (`{"username", "password", "host", "port", "dbname"}`; the
/// secrets RDS manages itself hold only the first two) into a connection URL with
/// `sslmode=verify-full`, the user, password and database name percent-encoded.
///
/// The error says which field is missing or malformed, never what it holds.
pub fn database_url(payload: &str, overrides: &DatabaseOverrides) -> Result<SecretString, String> {
    let json: Value = serde_json::from_str(payload)
        .map_err(|_| "it is not a JSON object (expected RDS style credentials)".to_owned())?;
    let text = |field: &str| -> Result<Option<&str>, String> {
        match json.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("`{field}` is not a string")),
        }
    };
    let username = text("username")?.ok_or("`username` is missing")?;
    let password = text("password")?.ok_or("`password` is missing")?;

    let host = match &overrides.host {
        Some(host) => host.as_str(),
        None => text("host")?.ok_or("`host` is missing and DATABASE_HOST is not set")?,
    };
    let host = url_host(host).ok_or("the host is not a host name or an IP address")?;

    let port = match (&overrides.port, json.get("port")) {
        (Some(port), _) => port.parse::<u16>().ok(),
        (None, None | Some(Value::Null)) => Some(5432),
        (None, Some(Value::Number(n))) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        (None, Some(Value::String(s))) => s.parse::<u16>().ok(),
        (None, Some(_)) => None,
    }
    .filter(|port| *port != 0)
    .ok_or("the port is not a TCP port number")?;

    let dbname = match &overrides.dbname {
        Some(name) => Some(name.as_str()),
        None => text("dbname")?,
    };

    let encode = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let mut url = format!(
        "postgres://{}:{}@{host}:{port}",
        encode(username),
        encode(password)
    );
    if let Some(dbname) = dbname {
        url.push('/');
        url.push_str(&encode(dbname));
    }
    url.push_str("?sslmode=verify-full");
    Ok(SecretString::from(url))
}

/// A host as it goes into a URL: a DNS name or IPv4 address as is, an IPv6 address in
/// brackets; `None` for anything else (a slash or an `@` would change the URL's meaning).
fn url_host(host: &str) -> Option<String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(std::net::IpAddr::V6(ip)) = bare.parse() {
        return Some(format!("[{ip}]"));
    }
    let name_like = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
    name_like.then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const JWT_ARN: &str = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:jwt-AbCdEf";
    const DB_ARN: &str = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:db-AbCdEf";
    const KEY: &str = "k7Qe0vY3mZ8rT2wL5nB9xC4hJ6pF1sD0gA3uE8iO2yR5tW7q";

    struct Table(HashMap<&'static str, &'static str>);

    impl SecretSource for Table {
        async fn secret_string(&self, arn: &str) -> Result<SecretString, BoxError> {
            let value = self.0.get(arn).ok_or("ResourceNotFoundException")?;
            Ok(SecretString::from(*value))
        }
    }

    fn secrets(entries: &[(&'static str, &'static str)]) -> Table {
        Table(entries.iter().copied().collect())
    }

    async fn resolved(
        env: &[(&str, &str)],
        source: &Table,
    ) -> Result<HashMap<&'static str, String>, SecretsError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let resolved = resolve(|k| env.get(k).cloned(), source).await?;
        Ok(["JWT_SECRET", "DATABASE_URL"]
            .into_iter()
            .filter_map(|k| resolved.get(k).map(|v| (k, v)))
            .collect())
    }

    fn url(payload: &str, overrides: &DatabaseOverrides) -> Result<String, String> {
        database_url(payload, overrides).map(|u| u.expose_secret().to_owned())
    }

    #[test]
    fn an_rds_secret_becomes_a_verified_url_with_encoded_credentials() {
        let payload = r#"{"engine":"postgres","username":"chat app","password":"p@ss:w/rd%41#?",
            "host":"db.abc.eu-west-1.rds.amazonaws.com","port":5432,"dbname":"block chat"}"#;
        assert_eq!(
            url(payload, &DatabaseOverrides::default()).expect("valid"),
            "postgres://chat%20app:p%40ss%3Aw%2Frd%2541%23%3F@db.abc.eu-west-1.rds.amazonaws.com:5432/block%20chat?sslmode=verify-full"
        );
    }

    #[test]
    fn the_url_decodes_back_to_the_secret_s_credentials() {
        let payload =
            r#"{"username":"u:ser","password":"p@ss/w%rd ü","host":"h.example","port":"6432"}"#;
        let url = url(payload, &DatabaseOverrides::default()).expect("valid");
        let options: sqlx::postgres::PgConnectOptions = url.parse().expect("sqlx parses it");
        assert_eq!(options.get_username(), "u:ser");
        assert_eq!(options.get_host(), "h.example");
        assert_eq!(options.get_port(), 6432);
        assert_eq!(options.get_database(), None);
        assert!(matches!(
            options.get_ssl_mode(),
            sqlx::postgres::PgSslMode::VerifyFull
        ));
    }

    #[test]
    fn deployment_values_win_over_the_secret_s() {
        let payload = r#"{"username":"u","password":"p","host":"instance.rds.example","port":5432,"dbname":"a"}"#;
        let overrides = DatabaseOverrides {
            host: Some("proxy.proxy-abc.rds.example".into()),
            port: Some("5433".into()),
            dbname: Some("b".into()),
        };
        assert_eq!(
            url(payload, &overrides).expect("valid"),
            "postgres://u:p@proxy.proxy-abc.rds.example:5433/b?sslmode=verify-full"
        );
    }

    #[test]
    fn a_managed_master_secret_needs_the_host_from_the_deployment() {
        let payload = r#"{"username":"postgres","password":"p"}"#;
        let err = url(payload, &DatabaseOverrides::default()).expect_err("no host");
        assert!(err.contains("DATABASE_HOST"), "{err}");
        let overrides = DatabaseOverrides {
            host: Some("10.0.0.5".into()),
            ..DatabaseOverrides::default()
        };
        assert_eq!(
            url(payload, &overrides).expect("valid"),
            "postgres://postgres:p@10.0.0.5:5432?sslmode=verify-full"
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed_and_odd_hosts_refused() {
        assert_eq!(url_host("2001:db8::1").as_deref(), Some("[2001:db8::1]"));
        assert_eq!(url_host("[::1]").as_deref(), Some("[::1]"));
        assert_eq!(url_host("evil.example/x?sslmode=disable#"), None);
        assert_eq!(url_host("user@host"), None);
        assert_eq!(url_host(""), None);
    }

    #[test]
    fn malformed_secrets_are_refused_without_quoting_them() {
        let cases = [
            ("hunter2-not-json", "JSON"),
            (r#"{"password":"hunter2"}"#, "`username`"),
            (
                r#"{"username":"u","password":"hunter2","host":"h","port":"hunter2"}"#,
                "port",
            ),
            (
                r#"{"username":"u","password":"hunter2","host":"h","port":70000}"#,
                "port",
            ),
            (
                r#"{"username":"u","password":["hunter2"],"host":"h"}"#,
                "`password`",
            ),
        ];
        for (payload, named) in cases {
            let err = url(payload, &DatabaseOverrides::default()).expect_err(payload);
            assert!(err.contains(named), "{payload}: {err}");
            assert!(
                !err.contains("hunter2"),
                "the error quotes the secret: {err}"
            );
        }
    }

    #[tokio::test]
    async fn without_arns_the_plain_values_stay_and_nothing_is_read() {
        let got = resolved(
            &[
                ("JWT_SECRET", KEY),
                ("DATABASE_URL", "postgres://localhost/x"),
            ],
            &secrets(&[]),
        )
        .await
        .expect("nothing to read");
        assert!(got.is_empty(), "{got:?}");
    }

    #[tokio::test]
    async fn arns_are_read_into_jwt_secret_and_database_url() {
        let source = secrets(&[
            (JWT_ARN, KEY),
            (
                DB_ARN,
                r#"{"username":"u","password":"p","host":"db.example","dbname":"chat"}"#,
            ),
        ]);
        let got = resolved(
            &[
                (JWT_SECRET_ARN, JWT_ARN),
                (DATABASE_SECRET_ARN, DB_ARN),
                ("DATABASE_HOST", ""),
            ],
            &source,
        )
        .await
        .expect("resolved");
        assert_eq!(got["JWT_SECRET"], KEY);
        assert_eq!(
            got["DATABASE_URL"],
            "postgres://u:p@db.example:5432/chat?sslmode=verify-full"
        );
    }

    #[tokio::test]
    async fn a_plain_value_beside_its_arn_is_refused() {
        let source = secrets(&[(JWT_ARN, KEY)]);
        let err = resolved(&[("JWT_SECRET", KEY), (JWT_SECRET_ARN, JWT_ARN)], &source)
            .await
            .expect_err("ambiguous");
        assert!(matches!(err, SecretsError::Conflict { .. }), "{err}");
        let err = resolved(
            &[
                ("DATABASE_URL", "postgres://x"),
                (DATABASE_SECRET_ARN, DB_ARN),
            ],
            &source,
        )
        .await
        .expect_err("ambiguous");
        assert_eq!(
            err.to_string(),
            "DATABASE_URL and DATABASE_SECRET_ARN are both set; set only one of them"
        );
    }

    #[tokio::test]
    async fn an_unreadable_secret_names_its_variable() {
        let err = resolved(&[(JWT_SECRET_ARN, JWT_ARN)], &secrets(&[]))
            .await
            .expect_err("not found");
        let message = err.to_string();
        assert!(message.contains("JWT_SECRET_ARN"), "{message}");
        assert!(message.contains("ResourceNotFoundException"), "{message}");
    }
}
