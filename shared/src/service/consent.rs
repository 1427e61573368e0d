//! Consent: blocks, and who may put a user into a chat. A blocked user cannot open a direct
//! chat with the blocker or add them to a group (and their typing does not reach the blocker,
//! see `db::connections::for_chat_except`); a user's `add_to_groups` setting says who else may
//! add them.

use sqlx::PgPool;

use crate::db;
use crate::domain::{Caller, Page};
use crate::error::{Error, Result};
use crate::views::UserView;

/// 404 for an account that does not exist, 403 for the caller themselves (a request the schema
/// cannot tell apart from a good one, about a user the caller sees but cannot block).
async fn require_other(db: &PgPool, caller: Caller, user_id: i64) -> Result<()> {
    if user_id == caller.id {
        return Err(Error::Forbidden(
            "cannot_block_self",
            "you cannot block or unblock yourself",
        ));
    }
    if db::users::find(db, user_id).await?.is_none() {
        // (Not `users::user_not_found`: `users` builds on `chats`, which builds on this.)
        return Err(Error::NotFound("user not found"));
    }
    Ok(())
}

/// Blocks `user_id`; blocking again changes nothing.
#[tracing::instrument(skip_all, fields(caller = caller.id, user_id = user_id))]
pub async fn block(db: &PgPool, caller: Caller, user_id: i64) -> Result<()> {
    require_other(db, caller, user_id).await?;
    if db::blocks::insert(db, caller.id, user_id).await? {
        tracing::info!(user_id, "user blocked");
    }
    Ok(())
}

/// Lifts a block; lifting one that is not there changes nothing.
#[tracing::instrument(skip_all, fields(caller = caller.id, user_id = user_id))]
pub async fn unblock(db: &PgPool, caller: Caller, user_id: i64) -> Result<()> {
    require_other(db, caller, user_id).await?;
    if db::blocks::delete(db, caller.id, user_id).await? {
        tracing::info!(user_id, "user unblocked");
    }
    Ok(())
}

/// A page of the users the caller blocked, by id.
#[tracing::instrument(skip_all, fields(caller = caller.id))]
pub async fn blocks(
    db: &PgPool,
    caller: Caller,
    page: Page,
) -> Result<(Vec<UserView>, Option<String>)> {
    let rows = db::blocks::list(db, caller.id, page.after, page.skip, page.limit).await?;
    let next = page.next(rows.len(), rows.last().map(|r| r.id));
    Ok((rows.into_iter().map(UserView::public).collect(), next))
}

/// 403 `blocked` when `other` blocked the caller: no direct chat with them.
pub(crate) async fn require_direct_allowed(db: &PgPool, caller: Caller, other: i64) -> Result<()> {
    if db::blocks::exists(db, other, caller.id).await? {
        return Err(Error::Refused {
            code: "blocked",
            detail: "this user does not accept a chat with you".to_owned(),
            user_ids: vec![other],
        });
    }
    Ok(())
}

/// 403 unless every user of `user_ids` lets the caller add them to a group (to `chat_id`, whose
/// members are not asked again): `blocked` when one of them blocked the caller, otherwise
/// `not_allowed_to_add`. The whole request is refused; `user_ids` in the problem names them.
pub(crate) async fn require_adds_allowed(
    db: &PgPool,
    caller: Caller,
    user_ids: &[i64],
    chat_id: Option<i64>,
) -> Result<()> {
    let refused = db::blocks::refused_adds(db, caller.id, user_ids, chat_id).await?;
    if refused.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = refused.iter().map(|r| r.user_id).collect();
    let listed = ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let (code, detail) = if refused.iter().any(|r| r.blocked) {
        (
            "blocked",
            format!("these users do not accept being added by you: {listed}"),
        )
    } else {
        (
            "not_allowed_to_add",
            format!("these users' privacy settings do not let you add them to a group: {listed}"),
        )
    };
    Err(Error::Refused {
        code,
        detail,
        user_ids: ids,
    })
}
