//! What checking the session and logging the change cost, each side through sqlx from as many
//! tasks on a pool as large as the gateway's: `/me`'s read with the session folded in beside the
//! same read without it; a send's statement with its session check beside the same statement
//! without it; and a send's statement as the product runs it (the change log's position and row
//! folded in) beside the statement as it was before the log. The HTTP rows include both; these
//! isolate them.

use std::sync::Arc;

use anyhow::Context as _;
use blockchat::db;

use crate::Bench;
use crate::http::chat_index;
use crate::load::{Summary, closed_loop, paired};
use crate::setup::SEND_CHATS;

/// `(user id, session id)` of the first `clients` senders.
fn callers(bench: &Bench, clients: usize) -> anyhow::Result<Arc<Vec<(i64, i64)>>> {
    let callers = bench.seeded.senders[..clients]
        .iter()
        .map(|u| Ok((u.id, bench.session(u.id)?)))
        .collect::<anyhow::Result<_>>()?;
    Ok(Arc::new(callers))
}

/// `/me`'s read as the product makes it (`db::users::find_own` with the session), beside the
/// same statement told to skip the session.
pub async fn me_read(bench: &Bench, clients: usize) -> anyhow::Result<(Summary, Summary)> {
    let callers = callers(bench, clients)?;
    let window = bench.plan.window;
    let read = |checked: bool| {
        let (pool, callers) = (bench.pool.clone(), callers.clone());
        closed_loop(clients, window, &bench.meter, move |c, _| {
            let (pool, (user, session)) = (pool.clone(), callers[c]);
            async move {
                db::users::find_own(&pool, user, checked.then_some(session))
                    .await?
                    .context("the user or the session is gone")?;
                Ok(())
            }
        })
    };
    paired(bench.plan.runs, bench.cores, || read(true), || read(false)).await
}

/// A send's statement, `db::messages::insert`, with the session check folded in as the product
/// runs it, beside the same statement told to skip it. Clients walk the send chats in step as
/// the HTTP send does.
pub async fn send(bench: &Bench, clients: usize) -> anyhow::Result<(Summary, Summary)> {
    let callers = callers(bench, clients)?;
    let chat_ids: Arc<Vec<i64>> = Arc::new(bench.seeded.send_chats[..SEND_CHATS].to_vec());
    let window = bench.plan.window;
    let send = |checked: bool| {
        let (pool, callers, chat_ids) = (bench.pool.clone(), callers.clone(), chat_ids.clone());
        closed_loop(clients, window, &bench.meter, move |c, i| {
            let (pool, (user, session)) = (pool.clone(), callers[c]);
            let chat = chat_ids[chat_index(c, i, clients, chat_ids.len())];
            async move {
                let content = format!("session {checked} {c} {i}");
                db::messages::insert(
                    &pool,
                    chat,
                    user,
                    &content,
                    None,
                    checked.then_some(session),
                )
                .await?
                .context("the sender is not a member")?;
                Ok(())
            }
        })
    };
    paired(bench.plan.runs, bench.cores, || send(true), || send(false)).await
}

/// A send's statement before the change log: the product's `db::messages::insert` without the
/// chat's change position and the `changes` row, kept here as the baseline.
const SEND_WITHOUT_LOG: &str = r#"WITH s AS (
        UPDATE chats SET last_seq = last_seq + 1, last_activity_at = now()
        WHERE id = $1
          AND EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2)
          AND ($5::bigint IS NULL
               OR EXISTS (SELECT 1 FROM sessions WHERE id = $5 AND user_id = $2
                            AND revoked_at IS NULL AND expires_at > now()))
        RETURNING last_seq),
    m AS (
        INSERT INTO messages (chat_id, seq, user_id, content, client_id)
        SELECT $1, s.last_seq, $2, $3, $4 FROM s RETURNING *),
    r AS (
        UPDATE chat_members SET last_read_seq = m.seq, last_read_at = now()
        FROM m WHERE chat_members.chat_id = $1 AND chat_members.user_id = $2)
    SELECT m.id, m.chat_id, m.seq, m.user_id, u.username, m.content, m.client_id,
        m.created_at, m.updated_at, m.edited_at, m.deleted_at,
        NOT EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id <> $2) AS alone,
        ARRAY(SELECT wc.connection_id FROM chat_members cm
              JOIN ws_connections wc ON wc.user_id = cm.user_id
              WHERE cm.chat_id = $1 AND (wc.chat_id IS NULL OR wc.chat_id = $1)) AS audience
    FROM m JOIN users u ON u.id = m.user_id"#;

/// A send's statement with the change log (`db::messages::insert`, session checked, as the
/// product runs it) beside the same send without it.
pub async fn send_log(bench: &Bench, clients: usize) -> anyhow::Result<(Summary, Summary)> {
    let callers = callers(bench, clients)?;
    let chat_ids: Arc<Vec<i64>> = Arc::new(bench.seeded.send_chats[..SEND_CHATS].to_vec());
    let window = bench.plan.window;
    let send = |logged: bool| {
        let (pool, callers, chat_ids) = (bench.pool.clone(), callers.clone(), chat_ids.clone());
        closed_loop(clients, window, &bench.meter, move |c, i| {
            let (pool, (user, session)) = (pool.clone(), callers[c]);
            let chat = chat_ids[chat_index(c, i, clients, chat_ids.len())];
            async move {
                let content = format!("log {logged} {c} {i}");
                if logged {
                    db::messages::insert(&pool, chat, user, &content, None, Some(session))
                        .await?
                        .context("the sender is not a member")?;
                } else {
                    sqlx::query(SEND_WITHOUT_LOG)
                        .bind(chat)
                        .bind(user)
                        .bind(&content)
                        .bind(None::<&str>)
                        .bind(Some(session))
                        .fetch_optional(&pool)
                        .await?
                        .context("the sender is not a member")?;
                }
                Ok(())
            }
        })
    };
    paired(bench.plan.runs, bench.cores, || send(true), || send(false)).await
}
