//! What checking the session costs, each side through sqlx from as many tasks on a pool as large
//! as the gateway's: `/me`'s read with the session folded in beside the same read without it,
//! and a send's statements (the session's primary-key lookup, then the insert) beside the insert
//! alone. The HTTP rows include the check; these isolate it.

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
