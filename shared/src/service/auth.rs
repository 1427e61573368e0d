//! Accounts and sessions: register, log in, refresh, log out.

use chrono::Utc;
use sqlx::PgPool;

use crate::auth::password;
use crate::auth::refresh;
use crate::auth::tokens::JwtKeys;
use crate::config::Config;
use crate::db;
use crate::domain::{Caller, Email, GroupAdds, Password, Username};
use crate::error::{Checks, Error, Result};
use crate::views::{LoginForm, NewUser, TokenPair, UserView};

/// Creates an account; every invalid field is named in one 422.
#[tracing::instrument(skip_all)]
pub async fn register(db: &PgPool, body: NewUser) -> Result<UserView> {
    let mut checks = Checks::new();
    let username = checks.check(Username::parse(body.username));
    let email = checks.check(Email::parse(body.email));
    let password = checks.check(Password::parse(body.password));
    checks.finish()?;
    let (Some(username), Some(email), Some(password)) = (username, email, password) else {
        return Err(Error::internal("a parsed field is missing"));
    };
    let hash = password::hash(&password).await?;
    let user = db::users::insert(db, username.as_str(), email.as_str(), &hash).await?;
    tracing::info!(user_id = user.id, "registered");
    Ok(UserView::own(user, GroupAdds::default()))
}

async fn issue_pair(
    db: &PgPool,
    keys: &JwtKeys,
    config: &Config,
    user_id: i64,
    family: Option<i64>,
) -> Result<TokenPair> {
    let refresh_token = refresh::generate()?;
    let expires_at = Utc::now()
        + chrono::Duration::from_std(config.refresh_token_ttl).map_err(Error::internal)?;
    let family = db::refresh_tokens::insert(
        db,
        user_id,
        family,
        &refresh::hash(&refresh_token),
        expires_at,
    )
    .await?;
    Ok(TokenPair {
        access_token: keys.issue_access(user_id, Some(family))?,
        token_type: "bearer",
        expires_in: keys.ttl_secs(),
        refresh_token,
    })
}

/// Exchanges a username (or email) and password for tokens. Failures are counted per account
/// and per client address before the password is checked, so parallel guesses count too.
#[tracing::instrument(skip_all)]
pub async fn login(
    db: &PgPool,
    keys: &JwtKeys,
    config: &Config,
    ip: &str,
    form: LoginForm,
) -> Result<TokenPair> {
    let limits = &config.limits;
    let login = form.username.trim().to_lowercase();
    // No account is named like this (emails stop at 254 bytes; text cannot hold NUL): such a
    // login fails like any other, without reaching a query or a rate-limit key.
    let plausible = !login.is_empty() && login.len() <= 254 && !login.contains('\0');
    let login = if plausible { login } else { String::new() };
    let account_key = format!("account:{login}");
    let address_key = format!("address:{ip}");
    for (key, max) in [
        (&account_key, limits.login_failures_per_account),
        (&address_key, limits.login_failures_per_address),
    ] {
        if let Some(retry_after) =
            db::login_failures::locked_for(db, key, max, limits.login_window).await?
        {
            tracing::warn!(retry_after, "login refused: too many failures");
            return Err(Error::TooManyRequests { retry_after });
        }
    }
    let account = match plausible {
        true => db::users::credentials(db, &login).await?,
        false => None,
    };
    let (user_id, hash) = match account {
        Some((id, hash)) => (Some(id), Some(hash)),
        None => (None, None),
    };
    let ok = password::verify(form.password, hash).await?;
    let Some(user_id) = user_id.filter(|_| ok) else {
        db::login_failures::record(db, &account_key, limits.login_window).await?;
        db::login_failures::record(db, &address_key, limits.login_window).await?;
        tracing::info!("login failed");
        return Err(Error::Unauthorized(
            "invalid_credentials",
            "incorrect username or password",
        ));
    };
    db::login_failures::clear(db, &account_key).await?;
    db::users::touch_last_seen(db, user_id).await?;
    tracing::info!(user_id, "logged in");
    issue_pair(db, keys, config, user_id, None).await
}

fn invalid_refresh() -> Error {
    Error::Unauthorized("invalid_refresh_token", "the refresh token is not valid")
}

/// Rotates a refresh token into a new pair. A token works once; presenting one that was
/// rotated already revokes its whole family.
#[tracing::instrument(skip_all)]
pub async fn refresh(
    db: &PgPool,
    keys: &JwtKeys,
    config: &Config,
    refresh_token: &str,
) -> Result<TokenPair> {
    let hash = refresh::hash(refresh_token.trim());
    let mut tx = db.begin().await?;
    let Some(row) = db::refresh_tokens::find_for_update(&mut tx, &hash).await? else {
        return Err(invalid_refresh());
    };
    if row.revoked_at.is_some() {
        return Err(invalid_refresh());
    }
    if row.replaced_at.is_some() {
        db::refresh_tokens::revoke_family(&mut *tx, row.family_id).await?;
        tx.commit().await?;
        tracing::warn!(
            user_id = row.user_id,
            family = row.family_id,
            "refresh token reused; session revoked"
        );
        return Err(Error::Unauthorized(
            "refresh_token_reused",
            "the refresh token was already used; the session has been revoked",
        ));
    }
    if row.expires_at <= Utc::now() {
        return Err(Error::Unauthorized(
            "refresh_token_expired",
            "the refresh token has expired",
        ));
    }
    db::refresh_tokens::mark_replaced(&mut *tx, row.id).await?;
    tx.commit().await?;
    issue_pair(db, keys, config, row.user_id, Some(row.family_id)).await
}

/// Revokes the session of a refresh token. Unknown tokens are accepted too: the outcome, no
/// usable session, is the same.
#[tracing::instrument(skip_all)]
pub async fn logout(db: &PgPool, refresh_token: &str) -> Result<()> {
    let hash = refresh::hash(refresh_token.trim());
    if let Some(family) = db::refresh_tokens::find_family(db, &hash).await? {
        db::refresh_tokens::revoke_family(db, family).await?;
    }
    Ok(())
}

/// The caller's own user; a token for an account deleted since is no longer valid.
#[tracing::instrument(skip_all, fields(user_id = caller.id))]
pub async fn me(db: &PgPool, caller: Caller) -> Result<UserView> {
    db::users::find_own(db, caller.id)
        .await?
        .map(|(row, add_to_groups)| UserView::own(row, add_to_groups))
        .ok_or(Error::Unauthorized(
            "account_deleted",
            "this account no longer exists",
        ))
}
