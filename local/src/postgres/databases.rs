//! Databases inside a cluster: create (as a copy of a template), drop, list, migrate.
//!
//! These statements stay checked at run time, not by `sqlx::query!`: they administer whatever
//! cluster they are given (its catalog, not the product's schema), and `CREATE`/`DROP DATABASE`
//! take identifiers, which cannot be bind parameters (they are quoted with [`quote_ident`]).

use sqlx::PgConnection;
use sqlx::postgres::PgPool;

/// Creates `name` (optionally as a copy of `template`) unless it exists; `true` when created.
pub async fn create_database(
    conn: &mut PgConnection,
    name: &str,
    template: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_some() {
        return Ok(false);
    }
    let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
    if let Some(template) = template {
        sql.push_str(" TEMPLATE ");
        sql.push_str(&quote_ident(template));
    }
    match sqlx::raw_sql(&sql).execute(&mut *conn).await {
        Ok(_) => Ok(true),
        // Someone else created it between our look and our create.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Drops `name` if it exists, ending any sessions still connected to it.
pub async fn drop_database(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    sqlx::raw_sql(&sql).execute(&mut *conn).await?;
    Ok(())
}

/// The databases whose names start with `prefix`.
pub async fn databases_with_prefix(
    conn: &mut PgConnection,
    prefix: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1 ORDER BY datname",
    )
    .bind(prefix)
    .fetch_all(&mut *conn)
    .await
}

/// Applies the product's migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    blockchat::MIGRATOR.run(pool).await
}

/// An SQL identifier, quoted.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("test_1"), "\"test_1\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
