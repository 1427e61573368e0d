//! Every SQL statement of the product, one module per table. All values are bind parameters.

pub mod blocks;
pub mod changes;
pub mod chats;
pub mod connections;
pub mod members;
pub mod messages;
pub mod rate_limits;
pub mod refresh_tokens;
pub mod sessions;
pub mod users;

/// Checks that the database answers: a connection from the pool (pinged before it is handed
/// out, or newly opened) and one round trip on it.
pub async fn ping(db: &sqlx::PgPool) -> crate::error::Result<()> {
    use sqlx::Connection;
    let mut conn = db.acquire().await?;
    conn.ping().await?;
    Ok(())
}

/// Escapes `%`, `_` and `\` for a `LIKE` pattern that matches a literal prefix.
pub fn like_prefix(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 1);
    for c in raw.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_prefix_escapes_wildcards() {
        assert_eq!(super::like_prefix("a_b%"), "a\\_b\\%%");
    }
}
