//! Sessions: one per login. Refresh rotates its token under the session's lock; logout, a
//! password change, a refresh-token replay and account deletion end sessions, and with them
//! their access tokens (refused from that moment) and WebSocket connections (closed).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::auth::refresh;
use crate::auth::tokens::JwtKeys;
use crate::config::Config;
use crate::db;
use crate::domain::Caller;
use crate::error::{Error, Result};
use crate::service::Outcome;
use crate::views::TokenPair;

/// The 401 of an access token whose session has ended.
pub fn ended() -> Error {
    Error::Unauthorized(
        "session_ended",
        "the session has ended (logged out, password changed or expired); log in again",
    )
}

fn invalid_refresh() -> Error {
    Error::Unauthorized("invalid_refresh_token", "the refresh token is not valid")
}

fn later(duration: std::time::Duration) -> Result<DateTime<Utc>> {
    Ok(Utc::now() + chrono::Duration::from_std(duration).map_err(Error::internal)?)
}

/// A refresh token for the session and an access token naming it. A refresh token never
/// outlives its session.
async fn issue(
    db: &mut PgConnection,
    keys: &JwtKeys,
    config: &Config,
    user_id: i64,
    session_id: i64,
    session_expires: DateTime<Utc>,
) -> Result<TokenPair> {
    let refresh_token = refresh::generate()?;
    let expires_at = later(config.refresh_token_ttl)?.min(session_expires);
    db::refresh_tokens::insert(
        db,
        user_id,
        session_id,
        &refresh::hash(&refresh_token),
        expires_at,
    )
    .await?;
    Ok(TokenPair {
        access_token: keys.issue_access(user_id, Some(session_id))?,
        token_type: "bearer",
        expires_in: keys.ttl_secs(),
        refresh_token,
    })
}

/// Starts a session for a user who just proved their password.
pub(crate) async fn start(
    db: &PgPool,
    keys: &JwtKeys,
    config: &Config,
    user_id: i64,
) -> Result<TokenPair> {
    let expires = later(config.session_ttl)?;
    let mut tx = db.begin().await?;
    let session_id = db::sessions::insert(&mut *tx, user_id, expires).await?;
    let pair = issue(&mut tx, keys, config, user_id, session_id, expires).await?;
    tx.commit().await?;
    tracing::info!(user_id, session_id, "session started");
    Ok(pair)
}

/// The check of every authenticated request that has no query of its own to fold it into: the
/// token's session is the user's and neither revoked nor expired (which also fails once the
/// account is deleted, its sessions with it). One primary-key lookup.
pub async fn check(db: &PgPool, caller: Caller) -> Result<()> {
    let Some(session_id) = caller.session else {
        return Err(ended());
    };
    match db::sessions::is_live(db, session_id, caller.id).await? {
        true => Ok(()),
        false => Err(ended()),
    }
}

/// Rotates a refresh token into a new pair, in one transaction under the session's lock: the
/// session is checked, the token marked used and its successor stored before any other refresh
/// of the session looks. A token works once; presenting one that was rotated already ends the
/// session (its tokens, its connections), and the answer is 401 either way. So among parallel
/// refreshes of one token, one wins and the others end the session the winner holds.
///
/// The outer `Result` is a failure to do any of it; the inner one is the answer, with the
/// sockets to close delivered either way.
#[tracing::instrument(skip_all)]
pub async fn refresh(
    db: &PgPool,
    keys: &JwtKeys,
    config: &Config,
    refresh_token: &str,
) -> Result<Outcome<Result<TokenPair>>> {
    let hash = refresh::hash(refresh_token.trim());
    let mut tx = db.begin().await?;
    let Some(session) = db::sessions::lock_by_refresh_token(&mut tx, &hash).await? else {
        return Ok(Outcome::quiet(Err(invalid_refresh())));
    };
    if session.revoked_at.is_some() {
        return Ok(Outcome::quiet(Err(invalid_refresh())));
    }
    // Read under the lock, in a statement of its own: it sees every rotation committed before.
    let Some(token) = db::refresh_tokens::find(&mut *tx, &hash).await? else {
        return Ok(Outcome::quiet(Err(invalid_refresh())));
    };
    if token.replaced_at.is_some() {
        let close = end(&mut tx, &[session.id]).await?;
        tx.commit().await?;
        tracing::warn!(
            user_id = session.user_id,
            session_id = session.id,
            "refresh token reused; session revoked"
        );
        return Ok(Outcome::quiet(Err(Error::Unauthorized(
            "refresh_token_reused",
            "the refresh token was already used; the session has been revoked",
        )))
        .close(close));
    }
    let now = Utc::now();
    if session.expires_at <= now {
        return Ok(Outcome::quiet(Err(Error::Unauthorized(
            "session_expired",
            "the session has reached its maximum lifetime; log in again",
        ))));
    }
    if token.expires_at <= now {
        return Ok(Outcome::quiet(Err(Error::Unauthorized(
            "refresh_token_expired",
            "the refresh token has expired",
        ))));
    }
    db::refresh_tokens::mark_replaced(&mut *tx, token.id).await?;
    db::sessions::touch_refreshed(&mut *tx, session.id).await?;
    let pair = issue(
        &mut tx,
        keys,
        config,
        session.user_id,
        session.id,
        session.expires_at,
    )
    .await?;
    tx.commit().await?;
    Ok(Outcome::quiet(Ok(pair)))
}

/// Ends the session of a refresh token (any token it ever had) and closes its connections.
/// Unknown tokens are accepted too: the outcome, no usable session, is the same.
#[tracing::instrument(skip_all)]
pub async fn logout(db: &PgPool, refresh_token: &str) -> Result<Outcome<()>> {
    let hash = refresh::hash(refresh_token.trim());
    let Some(session_id) = db::refresh_tokens::session_of(db, &hash).await? else {
        return Ok(Outcome::quiet(()));
    };
    let mut tx = db.begin().await?;
    let close = end(&mut tx, &[session_id]).await?;
    tx.commit().await?;
    tracing::info!(session_id, "logged out");
    Ok(Outcome::quiet(()).close(close))
}

/// Ends every session of the user but `keep`; answers the connections to close.
pub(crate) async fn end_others(
    tx: &mut PgConnection,
    user_id: i64,
    keep: Option<i64>,
) -> Result<Vec<String>> {
    let ended = db::sessions::revoke_others(&mut *tx, user_id, keep).await?;
    if ended.is_empty() {
        return Ok(Vec::new());
    }
    tracing::info!(user_id, count = ended.len(), "other sessions ended");
    db::connections::delete_of_sessions(&mut *tx, &ended).await
}

/// Revokes sessions and forgets their connections (the revocation first: a connection being
/// opened holds its session's row, so it is either refused or deleted here); answers the
/// connections to close at API Gateway.
async fn end(tx: &mut PgConnection, sessions: &[i64]) -> Result<Vec<String>> {
    for &id in sessions {
        db::sessions::revoke(&mut *tx, id).await?;
    }
    db::connections::delete_of_sessions(&mut *tx, sessions).await
}

/// Forgets a connection whose session has ended (a frame found it so) and closes it.
pub async fn end_connection(db: &PgPool, connection_id: &str) -> Outcome<()> {
    if let Err(e) = db::connections::delete(db, connection_id).await {
        tracing::error!(error = %e.chain(), "could not forget a connection of an ended session");
    }
    Outcome::quiet(()).close(vec![connection_id.to_owned()])
}
