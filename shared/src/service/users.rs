//! Profiles: search, read, change, and delete one's own account.

use sqlx::PgPool;

use crate::auth::password;
use crate::config::Limits;
use crate::db;
use crate::db::users::ProfileChange;
use crate::domain::{Caller, DisplayName, Email, Page, Password, Username};
use crate::error::{Checks, Error, Result};
use crate::service::chats::{Removal, leave_group, record_removal};
use crate::service::{Audience, Outcome, attempts, sessions};
use crate::views::{AccountDeletion, ProfileUpdate, UserView};

pub(crate) fn user_not_found() -> Error {
    Error::NotFound("user not found")
}

/// 404 for an absent user, then 403 unless it is the caller: the order the API answers in.
pub(crate) async fn require_self(
    db: &PgPool,
    caller: Caller,
    user_id: i64,
    what: &'static str,
) -> Result<()> {
    if db::users::find(db, user_id).await?.is_none() {
        return Err(user_not_found());
    }
    if caller.id != user_id {
        return Err(Error::Forbidden("not_yourself", what));
    }
    Ok(())
}

/// A page of users by id, optionally those whose username starts with `q`.
#[tracing::instrument(skip_all)]
pub async fn list(
    db: &PgPool,
    q: Option<&str>,
    page: Page,
) -> Result<(Vec<UserView>, Option<String>)> {
    let q = q.map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > 32 || q.contains('\0')) {
        return Err(Error::validation(
            "q",
            "must be at most 32 characters, without NUL",
        ));
    }
    let rows = db::users::list(db, q, page.after, page.skip, page.limit).await?;
    let next = page.next(rows.len(), rows.last().map(|r| r.id));
    Ok((rows.into_iter().map(UserView::public).collect(), next))
}

/// One user's profile; the caller's own includes the email.
#[tracing::instrument(skip_all, fields(caller = caller.id, user_id = user_id))]
pub async fn find(db: &PgPool, caller: Caller, user_id: i64) -> Result<UserView> {
    if user_id == caller.id {
        let (row, add_to_groups) = db::users::find_own(db, user_id, None)
            .await?
            .ok_or_else(user_not_found)?;
        return Ok(UserView::own(row, add_to_groups));
    }
    let row = db::users::find(db, user_id)
        .await?
        .ok_or_else(user_not_found)?;
    Ok(UserView::public(row))
}

fn current_password_required(what: &str) -> Error {
    Error::validation("current_password", format!("is required to {what}"))
}

/// Checks the caller's current password as a login would: counted under the account's budget
/// (the one logins use) and the client address before it is verified; 403 when wrong, 429 once
/// the budget is spent.
async fn verify_current_password(
    db: &PgPool,
    limits: &Limits,
    ip: &str,
    user_id: i64,
    current: String,
) -> Result<()> {
    let attempt = attempts::password(db, limits, &attempts::account_key(user_id), ip).await?;
    let stored = db::users::password_hash(db, user_id).await?;
    if !password::verify(current, stored).await? {
        tracing::info!(user_id, "wrong current password");
        return Err(Error::Forbidden(
            "wrong_password",
            "the current password is not correct",
        ));
    }
    attempt.succeeded(db).await
}

/// Changes one's own profile. A new password or email needs the current password; a new
/// password ends every other session and closes their connections.
#[tracing::instrument(skip_all, fields(caller = caller.id, user_id = user_id))]
pub async fn update(
    db: &PgPool,
    limits: &Limits,
    ip: &str,
    caller: Caller,
    user_id: i64,
    body: ProfileUpdate,
) -> Result<Outcome<UserView>> {
    require_self(db, caller, user_id, "you can only change your own profile").await?;
    let mut checks = Checks::new();
    let username = checks.check_some(body.username.map(Username::parse));
    let email = checks.check_some(body.email.map(Email::parse));
    let display_name = checks.check_some(body.display_name.map(DisplayName::parse));
    let new_password = checks.check_some(body.password.map(Password::parse));
    let sensitive = new_password.is_some() || email.is_some();
    if sensitive && body.current_password.is_none() {
        checks.fail(current_password_required(
            "change the password or the email",
        ));
    }
    checks.finish()?;
    if let (true, Some(current)) = (sensitive, body.current_password) {
        verify_current_password(db, limits, ip, user_id, current).await?;
    }
    let new_hash = match &new_password {
        Some(new_password) => Some(password::hash(new_password).await?),
        None => None,
    };
    let mut tx = db.begin().await?;
    let change = ProfileChange {
        username: username.as_ref().map(Username::as_str),
        email: email.as_ref().map(Email::as_str),
        display_name: display_name.as_ref().map(DisplayName::as_str),
        password_hash: new_hash.as_deref(),
    };
    db::users::update(&mut *tx, user_id, change)
        .await?
        .ok_or_else(user_not_found)?;
    if let Some(add_to_groups) = body.add_to_groups {
        db::users::set_add_to_groups(&mut *tx, user_id, add_to_groups).await?;
    }
    let close = match new_hash {
        Some(_) => sessions::end_others(&mut tx, user_id, caller.session).await?,
        None => Vec::new(),
    };
    let (row, add_to_groups) = db::users::find_own(&mut *tx, user_id, None)
        .await?
        .ok_or_else(user_not_found)?;
    tx.commit().await?;
    Ok(Outcome::quiet(UserView::own(row, add_to_groups)).close(close))
}

/// Deletes one's own account. Sessions, connections and memberships go; messages stay, shown
/// as from a deleted account. Groups are left the way a member leaves them: where the account
/// was the last admin, admin passes on (and the events name the new admin); groups it was
/// alone in go. It takes the current password, checked as for a password change.
#[tracing::instrument(skip_all, fields(caller = caller.id, user_id = user_id))]
pub async fn delete(
    db: &PgPool,
    limits: &Limits,
    ip: &str,
    caller: Caller,
    user_id: i64,
    body: AccountDeletion,
) -> Result<Outcome<()>> {
    require_self(db, caller, user_id, "you can only delete your own account").await?;
    let Some(current) = body.current_password else {
        return Err(current_password_required("delete the account"));
    };
    verify_current_password(db, limits, ip, user_id, current).await?;
    let connections = db::connections::of_user(db, user_id).await?;
    let chats = db::members::chats_of(db, user_id).await?;
    let mut tx = db.begin().await?;
    let mut removals = Vec::new();
    for chat_id in db::members::groups_where_sole_admin(&mut *tx, user_id).await? {
        removals.push((chat_id, leave_group(&mut tx, chat_id, user_id).await?));
    }
    let gone = db::chats::delete_groups_only_member(&mut *tx, user_id).await?;
    // The other chats lose the member with the account; their members hear of it.
    for &chat_id in &chats {
        if gone.contains(&chat_id) || removals.iter().any(|(id, _)| *id == chat_id) {
            continue;
        }
        let pos = record_removal(&mut tx, chat_id, user_id, None).await?;
        let removal = Removal {
            pos,
            ..Removal::default()
        };
        removals.push((chat_id, removal));
    }
    db::users::delete(&mut *tx, user_id).await?;
    tx.commit().await?;
    tracing::info!(user_id, "account deleted");
    let mut outcome = Outcome::quiet(()).close(connections);
    for (chat_id, removal) in removals {
        outcome = outcome.notify(Audience::Chat(chat_id), removal.event(chat_id, user_id));
    }
    Ok(outcome)
}
