//! Delivery of what the use cases cause: fan-out through the API Gateway management API
//! (`PostToConnection`), concurrently and bounded. The same code talks to AWS and to the local
//! gateway's `@connections` endpoint.
//!
//! Below the transports and `state`, above `service`: [`Push::deliver`] is how a transport
//! gets a use case's result, after its notices are pushed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_config::environment::{
    EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
};
use aws_config::meta::region::ProvideRegion;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::{
    BehaviorVersion, Credentials, Region, SharedHttpClient,
};
use aws_sdk_apigatewaymanagement::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use futures::StreamExt;
use sqlx::PgPool;
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::db;
use crate::service::{Audience, Notice, Outcome};
use crate::views::{Event, MAX_FRAME_BYTES, Reply};

/// The first pause before a post is tried again; it doubles with each retry, up to
/// [`BACKOFF_MAX`], and each pause is drawn at random from its upper half (jitter), so that the
/// posts of one fan-out that were throttled together do not come back together.
const BACKOFF_BASE: Duration = Duration::from_millis(25);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often a post that met a server error (5xx) or no answer at all (connection refused or
/// reset) is tried again. Throttled posts are retried for as long as the post's time allows.
const SERVER_ERROR_RETRIES: u32 = 2;

/// What pushes did: one fan-out's, or (from [`Push::totals`]) everything since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    pub delivered: usize,
    /// Connections that answered 410 Gone and were deleted.
    pub gone: usize,
    /// Posts given up on: refused for good, out of retries, or out of time.
    pub failed: usize,
    /// Attempts made again after a throttle (429) or a server error; a post that was retried
    /// and then delivered counts once in `delivered` and once here per retry.
    pub retried: usize,
}

impl PushReport {
    fn add(&mut self, posted: Posted) {
        match posted.result {
            Delivery::Delivered => self.delivered += 1,
            Delivery::Gone => self.gone += 1,
            Delivery::Failed => self.failed += 1,
        }
        self.retried += posted.retries as usize;
    }

    /// Posts that came to an end, one way or another.
    fn settled(&self) -> usize {
        self.delivered + self.gone + self.failed
    }
}

/// [`PushReport`]s added up as pushes finish, for logs, the soak program and tests.
#[derive(Debug, Default)]
struct Totals {
    delivered: AtomicUsize,
    gone: AtomicUsize,
    failed: AtomicUsize,
    retried: AtomicUsize,
}

impl Totals {
    fn add(&self, report: &PushReport) {
        self.delivered
            .fetch_add(report.delivered, Ordering::Relaxed);
        self.gone.fetch_add(report.gone, Ordering::Relaxed);
        self.failed.fetch_add(report.failed, Ordering::Relaxed);
        self.retried.fetch_add(report.retried, Ordering::Relaxed);
    }

    fn get(&self) -> PushReport {
        PushReport {
            delivered: self.delivered.load(Ordering::Relaxed),
            gone: self.gone.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    Delivered,
    Gone,
    Failed,
}

/// How one post ended, and after how many retries.
#[derive(Clone, Copy, Debug)]
struct Posted {
    result: Delivery,
    retries: u32,
}

/// Where the management API client takes its credentials and region from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialsSource {
    /// The function's environment, as Lambda sets it: the role's keys (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and `AWS_REGION`.
    Environment,
    /// Fixed placeholder keys, for the local gateway's `@connections` endpoint, which checks none.
    Local,
}

pub struct Push {
    endpoint: Option<String>,
    source: CredentialsSource,
    /// Built on the first push, so that a cold start does not pay for loading the SDK's
    /// configuration or the HTTPS client's trust roots before its first request.
    client: OnceCell<Client>,
    db: PgPool,
    concurrency: usize,
    /// The longest one delivery (all of an outcome's pushes) holds its answer.
    timeout: Duration,
    /// The longest one post may take, its retries included.
    post_timeout: Duration,
    /// How long a new connection may still be in its `$connect` (see [`Gone`]).
    connect_window: Duration,
    totals: Totals,
}

impl Push {
    /// A pusher for `config.ws_endpoint`; without one, pushes do nothing.
    pub fn new(db: PgPool, config: &Config, source: CredentialsSource) -> Self {
        Self {
            endpoint: config
                .ws_endpoint
                .as_ref()
                .map(|e| e.trim_end_matches('/').to_owned()),
            source,
            client: OnceCell::new(),
            db,
            concurrency: config.limits.push_concurrency,
            timeout: config.limits.push_timeout,
            post_timeout: config.limits.push_post_timeout,
            connect_window: config.limits.connect_window,
            totals: Totals::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.endpoint.is_some()
    }

    /// Everything pushed since this pusher was made (fan-outs and replies), added up.
    pub fn totals(&self) -> PushReport {
        self.totals.get()
    }

    /// The management API client, built on first use; `None` when pushes are off.
    async fn client(&self) -> Option<&Client> {
        let endpoint = self.endpoint.as_deref()?;
        Some(
            self.client
                .get_or_init(|| build_client(endpoint, self.source, self.post_timeout))
                .await,
        )
    }

    /// Pushes an outcome's notices in order, closes the connections it ends, and only then
    /// hands back its result: a transport answers with what this returns, so every push is
    /// done before the answer (Lambda freezes a function once it has answered).
    ///
    /// However the management API behaves, this takes at most `push_timeout`: what is not
    /// done by then is logged and given up (the change itself is committed already; clients
    /// catch up with `after_seq`). A push never fails the request that caused it.
    pub async fn deliver<T>(&self, outcome: Outcome<T>) -> T {
        let (value, notices, close) = outcome.into_parts();
        let deadline = Instant::now() + self.timeout;
        for notice in notices {
            self.notify_until(notice, deadline).await;
        }
        self.close_until(&close, deadline).await;
        value
    }

    /// Sends one notice to its audience, within `push_timeout`.
    pub async fn notify(&self, notice: Notice) -> PushReport {
        self.notify_until(notice, Instant::now() + self.timeout)
            .await
    }

    async fn notify_until(&self, notice: Notice, deadline: Instant) -> PushReport {
        if !self.enabled() {
            return PushReport::default();
        }
        let Notice { audience, event } = notice;
        let audience = match audience {
            Audience::Connections(ids) => {
                return self.to_connections_until(&ids, &event, deadline).await;
            }
            Audience::Chat(chat_id) => db::connections::for_chat(&self.db, chat_id).await,
            Audience::Member { chat_id, user_id } => {
                db::connections::for_member(&self.db, chat_id, user_id).await
            }
            Audience::ChatExcept { chat_id, user_id } => {
                db::connections::for_chat_except(&self.db, chat_id, user_id).await
            }
            Audience::Contacts { user_id, except } => {
                db::connections::for_contacts(&self.db, user_id, except.as_deref()).await
            }
        };
        match audience {
            Ok(ids) => self.to_connections_until(&ids, &event, deadline).await,
            // Logged, never raised: the change it reports on is committed already.
            Err(e) => {
                tracing::error!(error = %e.chain(), "push: could not list connections");
                PushReport::default()
            }
        }
    }

    /// Posts one frame to many connections, at most `push_concurrency` at a time and within
    /// `push_timeout`. A connection that is gone is deleted; no connection's failure stops the
    /// others.
    pub async fn to_connections(&self, ids: &[String], event: &Event) -> PushReport {
        self.to_connections_until(ids, event, Instant::now() + self.timeout)
            .await
    }

    async fn to_connections_until(
        &self,
        ids: &[String],
        event: &Event,
        deadline: Instant,
    ) -> PushReport {
        if ids.is_empty() {
            return PushReport::default();
        }
        let Some(client) = self.client().await else {
            return PushReport::default();
        };
        let payload = event.to_bytes();
        if payload.len() > MAX_FRAME_BYTES {
            tracing::error!(
                bytes = payload.len(),
                "push: event over the 128 KiB frame limit, not sent"
            );
            let report = PushReport {
                failed: ids.len(),
                ..PushReport::default()
            };
            self.totals.add(&report);
            return report;
        }
        let payload = bytes::Bytes::from(payload);
        let mut report = PushReport::default();
        let mut posts = futures::stream::iter(ids.iter().cloned())
            .map(|id| {
                let post_deadline = deadline.min(Instant::now() + self.post_timeout);
                let gone = Gone {
                    db: &self.db,
                    connect_window: self.connect_window,
                };
                post(client, gone, id, payload.clone(), post_deadline)
            })
            .buffer_unordered(self.concurrency.max(1));
        loop {
            match tokio::time::timeout_at(deadline.into(), posts.next()).await {
                Ok(Some(posted)) => report.add(posted),
                Ok(None) => break,
                Err(_) => {
                    let abandoned = ids.len().saturating_sub(report.settled());
                    tracing::warn!(
                        abandoned,
                        timeout_ms = self.timeout.as_millis() as u64,
                        "push: out of time, the remaining posts are given up"
                    );
                    report.failed += abandoned;
                    break;
                }
            }
        }
        self.totals.add(&report);
        if report.failed > 0 {
            tracing::warn!(?report, "push done, with failures");
        } else {
            tracing::debug!(?report, "push done");
        }
        report
    }

    /// Answers one connection (acks, pongs, errors), within the time of one post.
    pub async fn reply(&self, connection_id: &str, reply: &Reply) {
        if let Some(client) = self.client().await {
            let payload = bytes::Bytes::from(reply.to_bytes());
            let deadline = Instant::now() + self.post_timeout.min(self.timeout);
            let gone = Gone {
                db: &self.db,
                connect_window: self.connect_window,
            };
            let posted = post(client, gone, connection_id.to_owned(), payload, deadline).await;
            let mut report = PushReport::default();
            report.add(posted);
            self.totals.add(&report);
        }
    }

    /// Closes connections at API Gateway (when their account or chat is gone), within
    /// `push_timeout`.
    pub async fn close(&self, ids: &[String]) {
        self.close_until(ids, Instant::now() + self.timeout).await;
    }

    async fn close_until(&self, ids: &[String], deadline: Instant) {
        if ids.is_empty() {
            return;
        }
        let Some(client) = self.client().await else {
            return;
        };
        let closes = futures::stream::iter(ids.to_vec())
            .map(|id| {
                let client = client.clone();
                async move {
                    if let Err(e) = client.delete_connection().connection_id(&id).send().await
                        && e.as_service_error().and_then(|s| s.code()) != Some("GoneException")
                    {
                        tracing::warn!(error = %e, connection_id = %id, "push: close failed");
                    }
                }
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect::<Vec<()>>();
        if tokio::time::timeout_at(deadline.into(), closes)
            .await
            .is_err()
        {
            tracing::warn!(
                connections = ids.len(),
                "push: out of time, closes given up (those sockets end at their next frame)"
            );
        }
    }
}

/// The HTTPS client every management API call goes through: rustls over `ring`, trusting the
/// system's root certificates (loaded when the first SDK client using it is built).
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

async fn build_client(endpoint: &str, source: CredentialsSource, post_timeout: Duration) -> Client {
    let http = http_client();
    let builder = match source {
        // Lambda hands a function its role's keys and its region in the environment. The
        // SDK's whole default chain (profiles, SSO, STS web identity, ECS, IMDS) serves other
        // hosts and would link about a megabyte of code Lambda never runs.
        CredentialsSource::Environment => aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http)
            .region(EnvironmentVariableRegionProvider::new().region().await)
            .credentials_provider(EnvironmentVariableCredentialsProvider::new()),
        CredentialsSource::Local => aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "local",
                "local",
                None,
                None,
                "blockchat-local",
            )),
    };
    let timeouts = aws_smithy_types::timeout::TimeoutConfig::builder()
        .operation_timeout(post_timeout)
        .connect_timeout(Duration::from_secs(2))
        .build();
    Client::from_conf(
        builder
            .endpoint_url(endpoint)
            // The SDK's own retries are off, and [`post`] retries instead: the standard
            // strategy would retry throttles and 5xx up to three attempts with its own backoff
            // and a client-wide retry quota, out of sight of the per-post time bound, of the
            // report's counts and of the 410 clean-up. With them off, each attempt's answer
            // comes back here.
            .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
            .timeout_config(timeouts)
            .build(),
    )
}

/// What an attempt's answer calls for.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// The connection is gone (410): delete it.
    Gone,
    /// Throttled (429): try again after a pause, for as long as the post's time allows.
    Throttled,
    /// A server error (5xx) or no answer (connection refused or reset): try again, a few times.
    Transient,
    /// Refused for good, or no answer in time (the frame may have arrived: not sent twice).
    GiveUp,
}

fn next_step(err: &SdkError<PostToConnectionError>) -> Next {
    match err {
        SdkError::ServiceError(e) => match e.err() {
            PostToConnectionError::GoneException(_) => Next::Gone,
            PostToConnectionError::LimitExceededException(_) => Next::Throttled,
            PostToConnectionError::PayloadTooLargeException(_)
            | PostToConnectionError::ForbiddenException(_) => Next::GiveUp,
            // API Gateway's front door answers a throttle as `TooManyRequestsException`, an
            // error the model does not name, so the status decides.
            _ => match e.raw().status().as_u16() {
                410 => Next::Gone,
                429 => Next::Throttled,
                500..=599 => Next::Transient,
                _ => Next::GiveUp,
            },
        },
        SdkError::DispatchFailure(e) if !e.is_timeout() && !e.is_user() => Next::Transient,
        _ => Next::GiveUp,
    }
}

/// A pause of about `ceiling`: drawn from its upper half.
fn jittered(ceiling: Duration) -> Duration {
    let mut bytes = [0u8; 4];
    let fraction = match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    };
    ceiling.mul_f64(0.5 + fraction / 2.0)
}

/// What to do with a connection API Gateway calls gone (410). It answers so for a connection
/// whose `$connect` has not returned yet, too: the row is stored during `$connect`, and another
/// device of the user opening at the same moment, or an event of a chat, may reach it first.
/// Such a connection is kept while it may still be opening (`connect_window`, longer than
/// API Gateway's 29 s integration timeout); older ones are deleted.
#[derive(Clone, Copy)]
struct Gone<'a> {
    db: &'a PgPool,
    connect_window: Duration,
}

/// Posts one frame by `deadline`, retrying throttles and server errors with backoff; deletes
/// the connection when API Gateway says it is gone (see [`Gone`]).
async fn post(
    client: &Client,
    gone: Gone<'_>,
    id: String,
    payload: bytes::Bytes,
    deadline: Instant,
) -> Posted {
    let mut retries = 0;
    let result = attempts(client, gone, &id, &payload, deadline, &mut retries).await;
    Posted { result, retries }
}

async fn attempts(
    client: &Client,
    gone: Gone<'_>,
    id: &str,
    payload: &bytes::Bytes,
    deadline: Instant,
    retries: &mut u32,
) -> Delivery {
    let mut pause = BACKOFF_BASE;
    let mut server_errors = 0;
    loop {
        let attempt = client
            .post_to_connection()
            .connection_id(id)
            .data(Blob::new(payload.to_vec()))
            .send();
        let err = match tokio::time::timeout_at(deadline.into(), attempt).await {
            Ok(Ok(_)) => return Delivery::Delivered,
            Ok(Err(err)) => err,
            Err(_) => {
                tracing::warn!(connection_id = %id, retries, "push: post out of time");
                return Delivery::Failed;
            }
        };
        let next = next_step(&err);
        match next {
            Next::Gone => {
                match db::connections::delete_gone(gone.db, id, gone.connect_window).await {
                    Ok(true) => {
                        tracing::info!(connection_id = %id, "push: connection gone, deleted")
                    }
                    Ok(false) => {
                        tracing::info!(connection_id = %id, "push: connection gone or still opening, kept")
                    }
                    Err(e) => {
                        tracing::error!(error = %e.chain(), connection_id = %id, "push: could not delete a gone connection")
                    }
                }
                return Delivery::Gone;
            }
            Next::GiveUp => {
                tracing::warn!(error = %DisplayErrorContext(&err), connection_id = %id, bytes = payload.len(), "push: post failed");
                return Delivery::Failed;
            }
            Next::Transient if server_errors >= SERVER_ERROR_RETRIES => {
                tracing::warn!(error = %DisplayErrorContext(&err), connection_id = %id, retries, "push: post failed, out of retries");
                return Delivery::Failed;
            }
            Next::Transient => server_errors += 1,
            Next::Throttled => {}
        }
        let wait = jittered(pause);
        if Instant::now() + wait >= deadline {
            tracing::warn!(error = %DisplayErrorContext(&err), connection_id = %id, retries, "push: post failed, out of time for retries");
            return Delivery::Failed;
        }
        tracing::debug!(error = %DisplayErrorContext(&err), connection_id = %id, wait_ms = wait.as_millis() as u64, "push: trying again");
        tokio::time::sleep(wait).await;
        pause = (pause * 2).min(BACKOFF_MAX);
        *retries += 1;
    }
}
