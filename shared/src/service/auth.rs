//! Accounts: register, log in, and who am I. Sessions (refresh, log out) are in
//! [`crate::service::sessions`].

use sqlx::PgPool;

use crate::auth::password;
use crate::auth::tokens::JwtKeys;
use crate::config::Config;
use crate::db;
use crate::domain::{Caller, Email, GroupAdds, Password, Username};
use crate::error::{Checks, Error, Result};
use crate::service::{attempts, sessions};
use crate::views::{LoginForm, NewUser, TokenPair, UserView};

/// Creates an account; every invalid field is named in one 422. Registrations are counted per
/// client address before anything else (429 once the window's budget is spent).
#[tracing::instrument(skip_all)]
pub async fn register(db: &PgPool, config: &Config, ip: &str, body: NewUser) -> Result<UserView> {
    attempts::registration(db, &config.limits, ip).await?;
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

/// Exchanges a username (or email) and password for tokens of a new session. The attempt is
/// counted per account (username and email share one budget) and per client address before the
/// password is checked, so parallel guesses count too.
#[tracing::instrument(skip_all)]
pub async fn login(
    db: &PgPool,
    keys: &JwtKeys,
    config: &Config,
    ip: &str,
    form: LoginForm,
) -> Result<TokenPair> {
    let login = form.username.trim().to_lowercase();
    // No account is named like this (emails stop at 254 bytes; text cannot hold NUL): such a
    // login fails like any other, without reaching a query.
    let plausible = !login.is_empty() && login.len() <= 254 && !login.contains('\0');
    let account = match plausible {
        true => db::users::credentials(db, &login).await?,
        false => None,
    };
    let budget = match &account {
        Some((id, _)) => attempts::account_key(*id),
        None if plausible => attempts::unknown_login_key(&login),
        None => attempts::unknown_login_key(""),
    };
    let attempt = attempts::password(db, &config.limits, &budget, ip).await?;
    let (user_id, hash) = match account {
        Some((id, hash)) => (Some(id), Some(hash)),
        None => (None, None),
    };
    let ok = password::verify(form.password, hash).await?;
    let Some(user_id) = user_id.filter(|_| ok) else {
        tracing::info!("login failed");
        return Err(Error::Unauthorized(
            "invalid_credentials",
            "incorrect username or password",
        ));
    };
    attempt.succeeded(db).await?;
    db::users::touch_last_seen(db, user_id).await?;
    tracing::info!(user_id, "logged in");
    sessions::start(db, keys, config, user_id).await
}

/// The caller's own user. The session check is folded into the read: a token of an ended
/// session, or of an account deleted since, is no longer valid.
#[tracing::instrument(skip_all, fields(user_id = caller.id))]
pub async fn me(db: &PgPool, caller: Caller) -> Result<UserView> {
    let Some(session_id) = caller.session else {
        return Err(sessions::ended());
    };
    if let Some((row, add_to_groups)) = db::users::find_own(db, caller.id, Some(session_id)).await?
    {
        return Ok(UserView::own(row, add_to_groups));
    }
    // Only on the way out: say which of the two it was.
    match db::users::find(db, caller.id).await? {
        Some(_) => Err(sessions::ended()),
        None => Err(Error::Unauthorized(
            "account_deleted",
            "this account no longer exists",
        )),
    }
}
