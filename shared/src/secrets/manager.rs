//! Secrets Manager's `GetSecretValue`, called directly: one SigV4-signed JSON POST over the
//! HTTPS stack the binaries already link (hyper 1, rustls over `ring`, Mozilla's roots from
//! `webpki-roots`), in place of the SDK client, which added 2.4 MB to every function.
//!
//! The wire format (AWS JSON 1.1): `POST /` to `secretsmanager.{region}.amazonaws.com` with
//! `X-Amz-Target: secretsmanager.GetSecretValue` and `{"SecretId": "<arn>"}`; a success is a
//! JSON object with `SecretString` (or `SecretBinary`), a failure a status of 400 or more with
//! `{"__type": "<code>", "message": "…"}`.

use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use secrecy::SecretString;
use serde::Deserialize;
use tower::ServiceExt;

/// The signing name of the service, and its endpoint's first label.
const SERVICE: &str = "secretsmanager";
const TARGET: &str = "secretsmanager.GetSecretValue";
const CONTENT_TYPE_JSON: &str = "application/x-amz-json-1.1";
/// Overrides the endpoint, as it does for the AWS SDKs and CLI; then `AWS_ENDPOINT_URL`.
pub const ENDPOINT_VARIABLE: &str = "AWS_ENDPOINT_URL_SECRETS_MANAGER";

/// Init has 10 s in all; a stuck call must leave room for a retry and a clear error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(7);
const ATTEMPTS: u32 = 3;
/// The least time worth starting another attempt with.
const MIN_ATTEMPT: Duration = Duration::from_millis(500);
/// A secret string is at most 64 KiB; its answer, JSON-escaped with the metadata, stays well
/// under this.
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// How much of an AWS error message goes into ours.
const MAX_MESSAGE_CHARS: usize = 300;

/// What can go wrong reading a secret. None of the messages quotes a secret value: an answer
/// that is not as expected is described, never shown.
#[derive(Debug, thiserror::Error)]
pub enum SecretsManagerError {
    #[error("{0} is not set")]
    MissingVariable(&'static str),
    #[error("the Secrets Manager endpoint `{0}` is not an http(s) URL with a host")]
    Endpoint(String),
    #[error("signing the request failed: {0}")]
    Signing(String),
    #[error("calling Secrets Manager failed: {0}")]
    Transport(String),
    #[error("Secrets Manager did not answer within {0:?}")]
    Timeout(Duration),
    /// An AWS error: its HTTP status, the error code (`__type`, e.g.
    /// `ResourceNotFoundException`) and AWS's message.
    #[error("Secrets Manager answered HTTP {status}: {code}{}", message_suffix(.message))]
    Service {
        status: u16,
        code: String,
        message: Option<String>,
    },
    #[error("Secrets Manager's answer is not usable: {0}")]
    Malformed(&'static str),
    #[error("the secret holds binary data, not a string")]
    Binary,
}

fn message_suffix(message: &Option<String>) -> String {
    message
        .as_deref()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default()
}

impl SecretsManagerError {
    /// Whether another attempt may succeed: the network, a timeout, throttling, or a fault on
    /// AWS's side.
    fn retryable(&self) -> bool {
        match self {
            Self::Transport(_) | Self::Timeout(_) => true,
            Self::Service { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || matches!(
                        code.as_str(),
                        "ThrottlingException" | "InternalServiceError" | "RequestTimeout"
                    )
            }
            _ => false,
        }
    }
}

/// Secrets Manager with the credentials and Region Lambda puts in the environment.
pub struct SecretsManager {
    endpoint: Uri,
    region: String,
    credentials: Credentials,
    connector: HttpsConnector<HttpConnector>,
}

impl SecretsManager {
    /// From the function's environment: `AWS_REGION` (or `AWS_DEFAULT_REGION`), the role's
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, and an optional
    /// endpoint override.
    pub fn from_env() -> Result<Self, SecretsManagerError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), from any lookup; empty values count as unset.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SecretsManagerError> {
        let set = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let region = set("AWS_REGION")
            .or_else(|| set("AWS_DEFAULT_REGION"))
            .ok_or(SecretsManagerError::MissingVariable("AWS_REGION"))?;
        let key_id = set("AWS_ACCESS_KEY_ID")
            .ok_or(SecretsManagerError::MissingVariable("AWS_ACCESS_KEY_ID"))?;
        let secret_key = set("AWS_SECRET_ACCESS_KEY").ok_or(
            SecretsManagerError::MissingVariable("AWS_SECRET_ACCESS_KEY"),
        )?;
        let credentials = Credentials::new(
            key_id,
            secret_key,
            set("AWS_SESSION_TOKEN"),
            None,
            "environment",
        );
        let endpoint = set(ENDPOINT_VARIABLE).or_else(|| set("AWS_ENDPOINT_URL"));
        Self::new(region, credentials, endpoint.as_deref())
    }

    /// A reader for `region` with `credentials`, calling `endpoint` if given, else the
    /// Region's public endpoint.
    pub fn new(
        region: String,
        credentials: Credentials,
        endpoint: Option<&str>,
    ) -> Result<Self, SecretsManagerError> {
        let endpoint = match endpoint {
            Some(url) => parse_endpoint(url)?,
            None => parse_endpoint(&format!("https://{SERVICE}.{region}.amazonaws.com/"))?,
        };
        Ok(Self {
            connector: https_connector(endpoint.scheme_str() == Some("http"))?,
            endpoint,
            region,
            credentials,
        })
    }

    /// The signed `GetSecretValue` request for `arn`, as of `time`, in the form it is sent
    /// on a connection to the endpoint: the path as its URI, the endpoint in `host`.
    pub(crate) fn request(
        &self,
        arn: &str,
        time: SystemTime,
    ) -> Result<Request<Full<Bytes>>, SecretsManagerError> {
        let body = serde_json::json!({ "SecretId": arn }).to_string();
        let host = self
            .endpoint
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| SecretsManagerError::Endpoint(self.endpoint.to_string()))?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.path_and_query().map_or("/", |p| p.as_str()))
            .header(HOST, host)
            .header(CONTENT_TYPE, CONTENT_TYPE_JSON)
            .header("x-amz-target", TARGET)
            .body(body)
            .map_err(|e| SecretsManagerError::Signing(e.to_string()))?;

        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| SecretsManagerError::Signing(e.to_string()))?
            .into();
        let headers = request
            .headers()
            .iter()
            .map(|(name, value)| {
                value
                    .to_str()
                    .map(|value| (name.as_str(), value))
                    .map_err(|e| SecretsManagerError::Signing(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let uri = self.endpoint.to_string();
        let signable = SignableRequest::new(
            request.method().as_str(),
            &uri,
            headers.into_iter(),
            SignableBody::Bytes(request.body().as_bytes()),
        )
        .map_err(|e| SecretsManagerError::Signing(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| SecretsManagerError::Signing(e.to_string()))?
            .into_parts();
        instructions.apply_to_request_http1x(&mut request);
        Ok(request.map(|body| Full::new(Bytes::from(body))))
    }

    /// Reads one secret string: up to three attempts within 7 s, with a short pause between
    /// them, where the failure may pass (network, timeout, throttling, a fault at AWS).
    pub async fn get_secret_value(&self, arn: &str) -> Result<SecretString, SecretsManagerError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            let limit = ATTEMPT_TIMEOUT.min(TOTAL_TIMEOUT.saturating_sub(started.elapsed()));
            let result = match tokio::time::timeout(limit, self.attempt(arn)).await {
                Ok(result) => result,
                Err(_) => Err(SecretsManagerError::Timeout(limit)),
            };
            // Another attempt only with time left for it after the pause.
            let left = TOTAL_TIMEOUT.saturating_sub(started.elapsed());
            match result {
                Err(e) if e.retryable() && attempt < ATTEMPTS && left > pause + MIN_ATTEMPT => {
                    tracing::warn!(error = %e, attempt, "secrets: GetSecretValue failed, retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn attempt(&self, arn: &str) -> Result<SecretString, SecretsManagerError> {
        let request = self.request(arn, SystemTime::now())?;
        // One connection per call, HTTP/1.1 straight on it: a cold start makes two calls at
        // once and no more, so a pool (and the legacy client's HTTP/2 code) would only add size.
        let io = self
            .connector
            .clone()
            .oneshot(self.endpoint.clone())
            .await
            .map_err(|e| {
                SecretsManagerError::Transport(format!("connecting: {}", error_chain(&*e)))
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| SecretsManagerError::Transport(error_chain(&e)))?;
        // Ends once the answer is read and `sender` dropped, or with the connection's error,
        // which `send_request` reports.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| SecretsManagerError::Transport(error_chain(&e)))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| SecretsManagerError::Transport(format!("reading the answer: {e}")))?
            .to_bytes();
        parse_answer(parts.status, &parts.headers, &body)
    }
}

fn parse_endpoint(url: &str) -> Result<Uri, SecretsManagerError> {
    let bad = || SecretsManagerError::Endpoint(url.to_owned());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("https" | "http"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err(bad());
    }
    if uri.path() == "/" || uri.path().is_empty() {
        // Normalised to `scheme://authority/`, the form signed and sent.
        let mut parts = uri.into_parts();
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        return Uri::from_parts(parts).map_err(|_| bad());
    }
    Ok(uri)
}

/// TCP then TLS (rustls with `ring` and Mozilla's roots, HTTP/1.1 by ALPN); plain TCP only
/// when the endpoint override asks for it (a local stand-in).
fn https_connector(allow_http: bool) -> Result<HttpsConnector<HttpConnector>, SecretsManagerError> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SecretsManagerError::Transport(format!("setting up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    let builder = if allow_http {
        builder.https_or_http()
    } else {
        builder.https_only()
    };
    Ok(builder.enable_http1().wrap_connector(http))
}

/// Reads a `GetSecretValue` answer: the secret string, or a typed error. Nothing of the body
/// is quoted in an error but an AWS error's code and message.
pub(crate) fn parse_answer(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<SecretString, SecretsManagerError> {
    if status.is_success() {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "SecretString")]
            secret_string: Option<String>,
            #[serde(rename = "SecretBinary")]
            secret_binary: Option<serde::de::IgnoredAny>,
        }
        // serde_json's own message could quote the body, the secret in it: not passed on.
        let answer: Answer = serde_json::from_slice(body)
            .map_err(|_| SecretsManagerError::Malformed("not a JSON object with a SecretString"))?;
        return match (answer.secret_string, answer.secret_binary) {
            (Some(value), _) => Ok(SecretString::from(value)),
            (None, Some(_)) => Err(SecretsManagerError::Binary),
            (None, None) => Err(SecretsManagerError::Malformed("it holds no SecretString")),
        };
    }

    #[derive(Deserialize, Default)]
    struct AwsError {
        #[serde(rename = "__type")]
        kind: Option<String>,
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    let error: AwsError = serde_json::from_slice(body).unwrap_or_default();
    let header = headers
        .get("x-amzn-errortype")
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_owned);
    let code = error
        .kind
        .or(header)
        .map(|code| error_code(&code).to_owned())
        .filter(|code| !code.is_empty())
        .unwrap_or_else(|| "UnknownError".to_owned());
    let message = error
        .message
        .filter(|m| !m.is_empty())
        .map(|m| m.chars().take(MAX_MESSAGE_CHARS).collect());
    Err(SecretsManagerError::Service {
        status: status.as_u16(),
        code,
        message,
    })
}

/// The bare code of an AWS JSON error type: `aws.protocol#Code:http://…` → `Code`.
fn error_code(kind: &str) -> &str {
    let kind = kind.rsplit('#').next().unwrap_or(kind);
    kind.split(':').next().unwrap_or(kind)
}

/// An error and its sources, `: `-joined (hyper's own message alone says little).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:jwt-AbCdEf";
    const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLETOKEN";

    fn credentials(token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_owned),
            None,
            "test",
        )
    }

    fn at_noon() -> SystemTime {
        // 2026-11-30T12:00:00Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_040_000)
    }

    fn header<'a>(request: &'a Request<Full<Bytes>>, name: &str) -> &'a str {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    async fn body_of(request: Request<Full<Bytes>>) -> String {
        let bytes = request
            .into_body()
            .collect()
            .await
            .expect("in memory")
            .to_bytes();
        String::from_utf8(bytes.to_vec()).expect("UTF-8")
    }

    #[tokio::test]
    async fn the_request_is_a_sigv4_signed_json_post_to_the_region_s_endpoint() {
        let reader =
            SecretsManager::new("eu-west-1".into(), credentials(Some(TOKEN)), None).expect("valid");
        let request = reader.request(ARN, at_noon()).expect("signed");

        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "/");
        assert_eq!(
            header(&request, "host"),
            "secretsmanager.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            header(&request, "content-type"),
            "application/x-amz-json-1.1"
        );
        assert_eq!(
            header(&request, "x-amz-target"),
            "secretsmanager.GetSecretValue"
        );
        assert_eq!(header(&request, "x-amz-date"), "20261130T120000Z");
        assert_eq!(header(&request, "x-amz-security-token"), TOKEN);
        let authorization = header(&request, "authorization");
        assert!(
            authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261130/eu-west-1/secretsmanager/aws4_request, "
            ),
            "{authorization}"
        );
        assert!(
            authorization.contains(
                "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, "
            ),
            "{authorization}"
        );
        let signature = authorization
            .rsplit("Signature=")
            .next()
            .expect("a signature");
        assert_eq!(signature.len(), 64, "{authorization}");
        assert!(signature.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(body_of(request).await, format!(r#"{{"SecretId":"{ARN}"}}"#));
    }

    #[tokio::test]
    async fn without_a_session_token_none_is_sent_and_the_signature_is_stable() {
        let reader =
            SecretsManager::new("us-east-1".into(), credentials(None), None).expect("valid");
        let first = reader.request(ARN, at_noon()).expect("signed");
        let again = reader.request(ARN, at_noon()).expect("signed");
        assert!(first.headers().get("x-amz-security-token").is_none());
        assert!(
            header(&first, "authorization")
                .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-target, ")
        );
        assert_eq!(
            header(&first, "authorization"),
            header(&again, "authorization")
        );
        let other = SecretsManager::new("us-east-1".into(), credentials(None), None)
            .expect("valid")
            .request("another", at_noon())
            .expect("signed");
        assert_ne!(
            header(&first, "authorization"),
            header(&other, "authorization"),
            "the body is signed"
        );
    }

    #[test]
    fn the_environment_gives_region_credentials_and_endpoint() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let refused = |pairs| {
            SecretsManager::from_lookup(env(pairs))
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(
            refused(&[
                ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
            ])
            .as_deref(),
            Some("AWS_REGION is not set")
        );
        assert_eq!(
            refused(&[
                ("AWS_REGION", "eu-west-1"),
                ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", ""),
            ])
            .as_deref(),
            Some("AWS_SECRET_ACCESS_KEY is not set")
        );
        assert_eq!(
            refused(&[
                ("AWS_REGION", "eu-west-1"),
                ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
                (ENDPOINT_VARIABLE, "ftp://files.example"),
            ])
            .as_deref(),
            Some(
                "the Secrets Manager endpoint `ftp://files.example` is not an http(s) URL with a host"
            )
        );

        let reader = SecretsManager::from_lookup(env(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", ""),
            ("AWS_ENDPOINT_URL", "https://ignored.example"),
            (ENDPOINT_VARIABLE, "http://127.0.0.1:4566"),
        ]))
        .expect("valid");
        let request = reader.request(ARN, at_noon()).expect("signed");
        assert_eq!(request.uri(), "/");
        assert_eq!(header(&request, "host"), "127.0.0.1:4566");
        assert!(request.headers().get("x-amz-security-token").is_none());
    }

    fn parse(
        status: u16,
        headers: &[(&'static str, &'static str)],
        body: &str,
    ) -> Result<String, SecretsManagerError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        let status = StatusCode::from_u16(status).expect("a status");
        parse_answer(status, &map, body.as_bytes()).map(|s| s.expose_secret().to_owned())
    }

    #[test]
    fn a_success_answer_gives_the_secret_string() {
        let body = format!(
            r#"{{"ARN":"{ARN}","Name":"jwt","VersionId":"v1","SecretString":"s3cr\"et","VersionStages":["AWSCURRENT"],"CreatedDate":1.7e9}}"#
        );
        assert_eq!(parse(200, &[], &body).expect("a string"), "s3cr\"et");
        let err = parse(200, &[], r#"{"ARN":"x","SecretBinary":"AAEC"}"#).expect_err("binary");
        assert!(matches!(err, SecretsManagerError::Binary), "{err}");
        let err = parse(200, &[], r#"{"ARN":"x"}"#).expect_err("empty");
        assert!(matches!(err, SecretsManagerError::Malformed(_)), "{err}");
    }

    #[test]
    fn an_unexpected_success_body_is_described_never_quoted() {
        for body in [
            r#"{"SecretString": ["hunter2"]}"#,
            r#"{"SecretString": "hunter2""#,
            "hunter2",
        ] {
            let err = parse(200, &[], body).expect_err(body);
            assert!(matches!(err, SecretsManagerError::Malformed(_)), "{err}");
            assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
        }
    }

    #[test]
    fn an_aws_error_answer_is_a_typed_error_with_status_and_code() {
        let err = parse(
            400,
            &[],
            r#"{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}"#,
        )
        .expect_err("an error");
        assert!(
            matches!(&err, SecretsManagerError::Service { status: 400, code, message: Some(_) } if code == "ResourceNotFoundException"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "Secrets Manager answered HTTP 400: ResourceNotFoundException (Secrets Manager can't find the specified secret.)"
        );
        assert!(!err.retryable());

        let err = parse(
            400,
            &[],
            r#"{"__type":"com.amazonaws.secretsmanager#AccessDeniedException","Message":"denied"}"#,
        )
        .expect_err("an error");
        assert_eq!(
            err.to_string(),
            "Secrets Manager answered HTTP 400: AccessDeniedException (denied)"
        );

        let err = parse(
            400,
            &[(
                "x-amzn-errortype",
                "ThrottlingException:http://internal.amazon.com/",
            )],
            "",
        )
        .expect_err("an error");
        assert_eq!(
            err.to_string(),
            "Secrets Manager answered HTTP 400: ThrottlingException"
        );
        assert!(err.retryable());

        let err = parse(503, &[], "<html>Service Unavailable</html>").expect_err("an error");
        assert_eq!(
            err.to_string(),
            "Secrets Manager answered HTTP 503: UnknownError"
        );
        assert!(err.retryable());
    }

    /// One request as the stand-in endpoint received it.
    #[derive(Debug, Clone)]
    struct Received {
        request_line: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Received {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// A stand-in for Secrets Manager on loopback: HTTP/1.1, one request per connection,
    /// answered by `answer` from the request and how many came before it.
    async fn stand_in(
        answer: fn(&Received, usize) -> (u16, String),
    ) -> (String, Arc<Mutex<Vec<Received>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let Some(received) = read_request(&mut socket).await else {
                    continue;
                };
                let count = {
                    let mut seen = seen.lock().expect("not poisoned");
                    seen.push(received.clone());
                    seen.len() - 1
                };
                let (status, body) = answer(&received, count);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        (url, log)
    }

    async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Received> {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = socket.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..n]);
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
        };
        let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
        let mut lines = head.split("\r\n");
        let request_line = lines.next()?.to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = buffer[head_end + 4..].to_vec();
        while body.len() < length {
            let n = socket.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Some(Received {
            request_line,
            headers,
            body: String::from_utf8(body).ok()?,
        })
    }

    fn lookup(endpoint: String) -> impl Fn(&str) -> Option<String> {
        move |name: &str| match name {
            "AWS_REGION" => Some("eu-west-1".to_owned()),
            "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_owned()),
            "AWS_SESSION_TOKEN" => Some(TOKEN.to_owned()),
            ENDPOINT_VARIABLE => Some(endpoint.clone()),
            _ => None,
        }
    }

    const JWT_ARN: &str = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:jwt-AbCdEf";
    const DB_ARN: &str = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:db-AbCdEf";

    /// Answers as Secrets Manager does for the two secrets above, and 400 for any other.
    fn two_secrets(request: &Received, _: usize) -> (u16, String) {
        let id = serde_json::from_str::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|v| v["SecretId"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let value = match id.as_str() {
            JWT_ARN => "k7Qe0vY3mZ8rT2wL5nB9xC4hJ6pF1sD0gA3uE8iO2yR5tW7q",
            DB_ARN => r#"{"username":"u","password":"p w","host":"db.example","dbname":"chat"}"#,
            _ => {
                return (
                    400,
                    r#"{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}"#.to_owned(),
                );
            }
        };
        let answer = serde_json::json!({
            "ARN": id, "Name": "x", "VersionId": "v1", "SecretString": value,
            "VersionStages": ["AWSCURRENT"], "CreatedDate": 1.7e9,
        });
        (200, answer.to_string())
    }

    #[tokio::test]
    async fn both_secrets_are_read_over_http_from_the_overridden_endpoint() {
        let (url, log) = stand_in(two_secrets).await;
        let env = lookup(url.clone());
        let reader = SecretsManager::from_lookup(&env).expect("valid");
        let config = |name: &str| match name {
            super::super::JWT_SECRET_ARN => Some(JWT_ARN.to_owned()),
            super::super::DATABASE_SECRET_ARN => Some(DB_ARN.to_owned()),
            _ => None,
        };
        let resolved = super::super::resolve(config, &reader)
            .await
            .expect("both read");
        assert_eq!(
            resolved.get("JWT_SECRET").as_deref(),
            Some("k7Qe0vY3mZ8rT2wL5nB9xC4hJ6pF1sD0gA3uE8iO2yR5tW7q")
        );
        assert_eq!(
            resolved.get("DATABASE_URL").as_deref(),
            Some("postgres://u:p%20w@db.example:5432/chat?sslmode=verify-full")
        );

        let received = log.lock().expect("not poisoned").clone();
        assert_eq!(received.len(), 2, "{received:?}");
        let host = url.trim_start_matches("http://");
        for request in &received {
            assert_eq!(request.request_line, "POST / HTTP/1.1");
            assert_eq!(request.header("host"), Some(host));
            assert_eq!(
                request.header("x-amz-target"),
                Some("secretsmanager.GetSecretValue")
            );
            assert_eq!(
                request.header("content-type"),
                Some("application/x-amz-json-1.1")
            );
            assert_eq!(request.header("x-amz-security-token"), Some(TOKEN));
            let authorization = request.header("authorization").unwrap_or_default();
            assert!(
                authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
                "{authorization}"
            );
            assert!(authorization.contains("/eu-west-1/secretsmanager/aws4_request"));
        }
        let mut ids: Vec<&str> = received.iter().map(|r| r.body.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            [
                format!(r#"{{"SecretId":"{DB_ARN}"}}"#),
                format!(r#"{{"SecretId":"{JWT_ARN}"}}"#)
            ]
        );
    }

    #[tokio::test]
    async fn an_aws_error_comes_back_typed_and_is_not_retried() {
        let (url, log) = stand_in(two_secrets).await;
        let reader = SecretsManager::from_lookup(lookup(url)).expect("valid");
        let err = reader
            .get_secret_value("arn:aws:secretsmanager:eu-west-1:111122223333:secret:gone")
            .await
            .expect_err("not found");
        assert!(
            matches!(&err, SecretsManagerError::Service { status: 400, code, .. } if code == "ResourceNotFoundException"),
            "{err:?}"
        );
        assert_eq!(log.lock().expect("not poisoned").len(), 1);

        // Through `resolve`, the error names the variable and keeps AWS's code.
        let config = |name: &str| (name == super::super::JWT_SECRET_ARN).then(|| "gone".to_owned());
        let err = super::super::resolve(config, &reader)
            .await
            .expect_err("not found");
        let message = err.to_string();
        assert!(message.contains("JWT_SECRET_ARN"), "{message}");
        assert!(
            message.contains("HTTP 400: ResourceNotFoundException"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_fault_at_aws_is_tried_again() {
        fn flaky(request: &Received, count: usize) -> (u16, String) {
            match count {
                0 => (
                    500,
                    r#"{"__type":"InternalServiceError","message":"oops"}"#.to_owned(),
                ),
                _ => two_secrets(request, count),
            }
        }
        let (url, log) = stand_in(flaky).await;
        let reader = SecretsManager::from_lookup(lookup(url)).expect("valid");
        let value = reader.get_secret_value(JWT_ARN).await.expect("second try");
        assert_eq!(
            value.expose_secret(),
            "k7Qe0vY3mZ8rT2wL5nB9xC4hJ6pF1sD0gA3uE8iO2yR5tW7q"
        );
        assert_eq!(log.lock().expect("not poisoned").len(), 2);
    }

    #[tokio::test]
    async fn a_closed_port_is_a_transport_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        drop(listener);
        let reader = SecretsManager::from_lookup(lookup(url)).expect("valid");
        let err = reader.get_secret_value(JWT_ARN).await.expect_err("refused");
        assert!(matches!(err, SecretsManagerError::Transport(_)), "{err:?}");
    }
}
