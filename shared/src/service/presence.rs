//! Presence and typing: who is online, what they chose, and who is writing.

use std::time::Duration;

use sqlx::PgPool;

use crate::db;
use crate::domain::{Caller, StatusChoice};
use crate::error::{Error, Result};
use crate::service::access::{Member, chat_not_found};
use crate::service::users::{require_self, user_not_found};
use crate::service::{Audience, Outcome};
use crate::views::{Event, StatusUpdate, StatusView};

/// A user's presence: online while a WebSocket is open, unless they chose away or offline.
#[tracing::instrument(skip_all, fields(user_id = user_id))]
pub async fn get(db: &PgPool, user_id: i64) -> Result<StatusView> {
    let row = db::users::find(db, user_id)
        .await?
        .ok_or_else(user_not_found)?;
    Ok(row.into())
}

/// The `user.status` event for a presence.
fn status_event(view: &StatusView) -> Event {
    Event::UserStatus {
        user_id: view.user_id,
        status: view.status,
        last_seen: view.last_seen,
    }
}

/// Chooses one's own presence; everyone who shares a chat with the caller hears of it.
#[tracing::instrument(skip_all, fields(caller = caller.id, user_id = user_id))]
pub async fn set(
    db: &PgPool,
    caller: Caller,
    user_id: i64,
    body: StatusUpdate,
) -> Result<Outcome<StatusView>> {
    require_self(db, caller, user_id, "you can only set your own status").await?;
    let row = db::users::set_status_choice(db, user_id, StatusChoice::from(body.status))
        .await?
        .ok_or_else(user_not_found)?;
    let view = StatusView::from(row);
    let event = status_event(&view);
    Ok(Outcome::quiet(view).notify(
        Audience::Contacts {
            user_id,
            except: None,
        },
        event,
    ))
}

/// Tells everyone who shares a chat with `user_id` what their presence is now, but the
/// connection `except`. A failure to read it is logged: the connection stands either way.
async fn announce(db: &PgPool, user_id: i64, except: Option<&str>) -> Outcome<()> {
    let row = match db::users::find(db, user_id).await {
        Ok(Some(row)) => row,
        Ok(None) => return Outcome::quiet(()),
        Err(e) => {
            tracing::error!(error = %e.chain(), "could not read presence");
            return Outcome::quiet(());
        }
    };
    let event = status_event(&StatusView::from(row));
    Outcome::quiet(()).notify(
        Audience::Contacts {
            user_id,
            except: except.map(str::to_owned),
        },
        event,
    )
}

/// Why a connection was refused.
#[derive(Debug)]
pub enum Refusal {
    /// A chat scope the user is not a member of.
    NotAMember,
    /// The account was deleted since the token was issued.
    AccountGone,
    /// The token's session has ended (or it names none).
    SessionEnded,
    Failed(Error),
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        match e {
            Error::Database(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                Refusal::AccountGone
            }
            other => Refusal::Failed(other),
        }
    }
}

/// Stores a new WebSocket connection of a live session, optionally scoped to one chat the user
/// is in. The user's first connection makes them online, which their contacts hear of.
///
/// A user holds at most `max_connections`: opening one more closes the oldest.
#[tracing::instrument(skip_all, fields(user_id = caller.id, chat_id = chat_id))]
pub async fn connect(
    db: &PgPool,
    caller: Caller,
    connection_id: &str,
    chat_id: Option<i64>,
    max_connections: i64,
) -> Result<Outcome<()>, Refusal> {
    if let Some(chat_id) = chat_id {
        match Member::load(db, chat_id, caller.id).await {
            Ok(_) => {}
            Err(Error::NotFound(_)) => return Err(Refusal::NotAMember),
            Err(e) => return Err(Refusal::Failed(e)),
        }
    }
    let swept = db::connections::sweep_stale(db).await?;
    if !swept.is_empty() {
        tracing::info!(count = swept.len(), "swept stale connections");
    }
    let Some(session_id) = caller.session else {
        return Err(Refusal::SessionEnded);
    };
    let Some(first) =
        db::connections::insert(db, connection_id, caller.id, session_id, chat_id).await?
    else {
        return Err(Refusal::SessionEnded);
    };
    let evicted =
        db::connections::evict_oldest(db, caller.id, connection_id, max_connections).await?;
    if !evicted.is_empty() {
        tracing::info!(count = evicted.len(), "closing the oldest connections");
    }
    db::users::touch_last_seen(db, caller.id).await?;
    tracing::info!(user_id = caller.id, ?chat_id, "connected");
    if !first {
        return Ok(Outcome::quiet(()).close(evicted));
    }
    Ok(announce(db, caller.id, Some(connection_id)).await)
}

/// Forgets a connection. A user whose last connection closed is offline, which their contacts
/// hear of. Failures are logged, not raised: API Gateway does not listen to the answer.
#[tracing::instrument(skip_all)]
pub async fn disconnect(db: &PgPool, connection_id: &str) -> Outcome<()> {
    let gone = match db::connections::delete(db, connection_id).await {
        Ok(gone) => gone,
        Err(e) => {
            tracing::error!(error = %e.chain(), "disconnect failed");
            return Outcome::quiet(());
        }
    };
    let Some((user_id, last)) = gone else {
        return Outcome::quiet(());
    };
    tracing::info!(user_id, "disconnected");
    if !last {
        return Outcome::quiet(());
    }
    if let Err(e) = db::users::touch_last_seen(db, user_id).await {
        tracing::error!(error = %e.chain(), "could not record last_seen");
    }
    announce(db, user_id, None).await
}

/// Tells the chat's other members that the caller is typing, at most once per `interval`
/// (later frames are dropped silently), and not those who blocked the caller.
#[tracing::instrument(skip_all, fields(user_id = caller.id, chat_id = chat_id))]
pub async fn typing(
    db: &PgPool,
    caller: Caller,
    chat_id: i64,
    interval: Duration,
) -> Result<Outcome<()>> {
    let forwarded = db::members::typing(db, chat_id, caller.id, interval)
        .await?
        .ok_or_else(chat_not_found)?;
    if !forwarded {
        return Ok(Outcome::quiet(()));
    }
    let event = Event::Typing {
        chat_id,
        user_id: caller.id,
    };
    Ok(Outcome::quiet(()).notify(
        Audience::ChatExcept {
            chat_id,
            user_id: caller.id,
        },
        event,
    ))
}
