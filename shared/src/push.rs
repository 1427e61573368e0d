//! Delivery of what the use cases cause: fan-out through the API Gateway management API
//! (`PostToConnection`), concurrently and bounded. The same code talks to AWS and to the local
//! gateway's `@connections` endpoint.
//!
//! Below the transports and `state`, above `service`: [`Push::deliver`] is how a transport
//! gets a use case's result, after its notices are pushed.

use std::time::Duration;

use aws_config::environment::{
    EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
};
use aws_config::meta::region::ProvideRegion;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::{
    BehaviorVersion, Credentials, Region, SharedHttpClient,
};
use aws_sdk_apigatewaymanagement::error::{ProvideErrorMetadata, SdkError};
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

/// How often a throttled post (429) is tried again, with doubling pauses from 50 ms.
const THROTTLE_RETRIES: u32 = 3;

/// What a fan-out did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    pub delivered: usize,
    /// Connections that answered 410 Gone and were deleted.
    pub gone: usize,
    pub failed: usize,
}

enum Posted {
    Delivered,
    Gone,
    Failed,
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
        }
    }

    pub fn enabled(&self) -> bool {
        self.endpoint.is_some()
    }

    /// The management API client, built on first use; `None` when pushes are off.
    async fn client(&self) -> Option<&Client> {
        let endpoint = self.endpoint.as_deref()?;
        Some(
            self.client
                .get_or_init(|| build_client(endpoint, self.source))
                .await,
        )
    }

    /// Pushes an outcome's notices in order, closes the connections it ends, and only then
    /// hands back its result: a transport answers with what this returns, so every push is
    /// done before the answer (Lambda freezes a function once it has answered).
    pub async fn deliver<T>(&self, outcome: Outcome<T>) -> T {
        let (value, notices, close) = outcome.into_parts();
        for notice in notices {
            self.notify(notice).await;
        }
        self.close(&close).await;
        value
    }

    /// Sends one notice to its audience.
    pub async fn notify(&self, notice: Notice) -> PushReport {
        if !self.enabled() {
            return PushReport::default();
        }
        let Notice { audience, event } = notice;
        let audience = match audience {
            Audience::Connections(ids) => return self.to_connections(&ids, &event).await,
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
        self.to_audience(audience, &event).await
    }

    /// Posts to the connections a lookup found; a failed lookup is logged, never raised: the
    /// change it reports on is committed already.
    async fn to_audience(&self, audience: crate::Result<Vec<String>>, event: &Event) -> PushReport {
        match audience {
            Ok(ids) => self.to_connections(&ids, event).await,
            Err(e) => {
                tracing::error!(error = %e.chain(), "push: could not list connections");
                PushReport::default()
            }
        }
    }

    /// Posts one frame to many connections, at most `push_concurrency` at a time. A connection
    /// that is gone is deleted; no connection's failure stops the others.
    pub async fn to_connections(&self, ids: &[String], event: &Event) -> PushReport {
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
            return PushReport {
                failed: ids.len(),
                ..PushReport::default()
            };
        }
        let payload = bytes::Bytes::from(payload);
        let mut report = PushReport::default();
        let mut posts = futures::stream::iter(ids.to_vec())
            .map(|id| post(client.clone(), self.db.clone(), id, payload.clone()))
            .buffer_unordered(self.concurrency.max(1));
        while let Some(outcome) = posts.next().await {
            match outcome {
                Posted::Delivered => report.delivered += 1,
                Posted::Gone => report.gone += 1,
                Posted::Failed => report.failed += 1,
            }
        }
        tracing::debug!(?report, "push done");
        report
    }

    /// Answers one connection (acks, pongs, errors).
    pub async fn reply(&self, connection_id: &str, reply: &Reply) {
        if let Some(client) = self.client().await {
            let payload = bytes::Bytes::from(reply.to_bytes());
            post(
                client.clone(),
                self.db.clone(),
                connection_id.to_owned(),
                payload,
            )
            .await;
        }
    }

    /// Closes connections at API Gateway (when their account or chat is gone).
    pub async fn close(&self, ids: &[String]) {
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
            .buffer_unordered(self.concurrency.max(1));
        closes.collect::<Vec<()>>().await;
    }
}

/// The HTTPS client every management API call goes through: rustls over `ring`, trusting the
/// system's root certificates (loaded when the first SDK client using it is built).
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

async fn build_client(endpoint: &str, source: CredentialsSource) -> Client {
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
        .operation_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .build();
    Client::from_conf(
        builder
            .endpoint_url(endpoint)
            .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
            .timeout_config(timeouts)
            .build(),
    )
}

/// Posts one frame; deletes the connection when API Gateway says it is gone.
async fn post(client: Client, db: PgPool, id: String, payload: bytes::Bytes) -> Posted {
    let mut pause = Duration::from_millis(50);
    for attempt in 0..=THROTTLE_RETRIES {
        let result = client
            .post_to_connection()
            .connection_id(&id)
            .data(Blob::new(payload.to_vec()))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Posted::Delivered,
            Err(err) => err,
        };
        match &err {
            SdkError::ServiceError(e) => match e.err() {
                PostToConnectionError::GoneException(_) => {
                    if let Err(e) = db::connections::delete(&db, &id).await {
                        tracing::error!(error = %e.chain(), connection_id = %id, "push: could not delete a gone connection");
                    }
                    tracing::info!(connection_id = %id, "push: connection gone, deleted");
                    return Posted::Gone;
                }
                PostToConnectionError::LimitExceededException(_) if attempt < THROTTLE_RETRIES => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    continue;
                }
                PostToConnectionError::PayloadTooLargeException(_) => {
                    tracing::error!(connection_id = %id, bytes = payload.len(), "push: payload too large");
                    return Posted::Failed;
                }
                other => {
                    tracing::warn!(error = %other, code = ?other.code(), connection_id = %id, "push: post failed");
                    return Posted::Failed;
                }
            },
            other => {
                tracing::warn!(error = %other, connection_id = %id, "push: post failed");
                return Posted::Failed;
            }
        }
    }
    Posted::Failed
}
