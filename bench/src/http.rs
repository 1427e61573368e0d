//! The HTTP workloads, each beside its baseline: sending, listing, `GET /api/auth/me` and
//! logging in.

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context as _, bail, ensure};
use blockchat::auth::password;
use blockchat::db;
use http::StatusCode;
use http::header::{AUTHORIZATION, CONTENT_TYPE};

use crate::Bench;
use crate::load::{Sample, Summary, Window, closed_loop, paired};
use crate::setup::{PASSWORD, User};

/// Reads the whole answer (so the connection goes back to the pool) and checks its status.
async fn expect(response: reqwest::Response, status: StatusCode) -> anyhow::Result<()> {
    let got = response.status();
    let body = response.bytes().await?;
    if got != status {
        bail!(
            "expected {status}, got {got}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

fn bearer(bench: &Bench, user: &User) -> anyhow::Result<String> {
    Ok(format!("Bearer {}", bench.token(user.id)?))
}

/// Which chat client `client` sends to on its `iteration`-th message: with `chats` chats and
/// `clients` clients the clients walk the chats in step, so that no two write to one chat at a
/// time unless there are more clients than chats.
pub fn chat_index(client: usize, iteration: u64, clients: usize, chats: usize) -> usize {
    let step = usize::try_from(iteration)
        .unwrap_or(0)
        .wrapping_mul(clients);
    client.wrapping_add(step) % chats.max(1)
}

/// `POST /api/chats/{id}/messages` from `clients` senders over `chats` chats, beside the
/// library's own insert driven through sqlx at the same concurrency.
pub async fn send(
    bench: &Bench,
    clients: usize,
    chats: usize,
) -> anyhow::Result<(Summary, Summary)> {
    let chat_ids: Arc<Vec<i64>> = Arc::new(bench.seeded.send_chats[..chats].to_vec());
    let senders: Arc<Vec<User>> = Arc::new(bench.seeded.senders[..clients].to_vec());
    let tokens: Arc<Vec<String>> = Arc::new(
        senders
            .iter()
            .map(|u| bearer(bench, u))
            .collect::<anyhow::Result<_>>()?,
    );
    let urls: Arc<Vec<String>> = Arc::new(
        chat_ids
            .iter()
            .map(|c| format!("{}/api/chats/{c}/messages", bench.api))
            .collect(),
    );
    let window = bench.plan.window;
    let over_http = || {
        let (client, urls, tokens) = (bench.http.clone(), urls.clone(), tokens.clone());
        closed_loop(clients, window, &bench.meter, move |c, i| {
            let request = client
                .post(&urls[chat_index(c, i, clients, urls.len())])
                .header(AUTHORIZATION, &tokens[c])
                .header(CONTENT_TYPE, "application/json")
                .body(format!(r#"{{"content":"over http {c} {i}"}}"#));
            async move { expect(request.send().await?, StatusCode::CREATED).await }
        })
    };
    let straight = || {
        let (pool, chat_ids, senders) = (bench.pool.clone(), chat_ids.clone(), senders.clone());
        closed_loop(clients, window, &bench.meter, move |c, i| {
            let (pool, user) = (pool.clone(), senders[c].id);
            let chat = chat_ids[chat_index(c, i, clients, chat_ids.len())];
            async move {
                let content = format!("straight {c} {i}");
                db::messages::insert(&pool, chat, user, &content, None, None)
                    .await?
                    .context("the sender is not a member")?;
                Ok(())
            }
        })
    };
    paired(bench.plan.runs, bench.cores, over_http, straight).await
}

/// The newest 50 messages of the big chat, beside the same request on the small table.
pub async fn list(bench: &Bench, clients: usize) -> anyhow::Result<(Summary, Summary)> {
    let big_url = format!(
        "{}/api/chats/{}/messages?limit=50",
        bench.api, bench.seeded.big_chat
    );
    let small_url = format!(
        "{}/api/chats/{}/messages?limit=50",
        bench.small_api, bench.small.chat
    );
    let big_token = bearer(bench, &bench.seeded.reader)?;
    let small_token = format!("Bearer {}", bench.small_token);
    for (url, token, newest) in [
        (&big_url, &big_token, bench.plan.sizes.big_chat_messages),
        (
            &small_url,
            &small_token,
            bench.plan.sizes.small_table_messages,
        ),
    ] {
        check_page(bench, url, token, newest).await?;
    }
    let window = bench.plan.window;
    let run = |url: &String, token: &String| {
        let (client, url, token) = (bench.http.clone(), url.clone(), token.clone());
        closed_loop(clients, window, &bench.meter, move |_, _| {
            let request = client.get(&url).header(AUTHORIZATION, &token);
            async move { expect(request.send().await?, StatusCode::OK).await }
        })
    };
    paired(
        bench.plan.runs,
        bench.cores,
        || run(&big_url, &big_token),
        || run(&small_url, &small_token),
    )
    .await
}

/// The page is the newest 50, newest first: a benchmark of the wrong answer proves nothing.
async fn check_page(bench: &Bench, url: &str, token: &str, newest: i64) -> anyhow::Result<()> {
    let response = bench
        .http
        .get(url)
        .header(AUTHORIZATION, token)
        .send()
        .await?;
    ensure!(
        response.status() == StatusCode::OK,
        "{url}: {}",
        response.status()
    );
    let page: Vec<serde_json::Value> = response.json().await?;
    let seqs: Vec<i64> = page.iter().filter_map(|m| m["seq"].as_i64()).collect();
    let expected: Vec<i64> = (0..50).map(|k| newest - k).collect();
    ensure!(seqs == expected, "{url} listed seq {seqs:?}");
    Ok(())
}

/// `GET /api/auth/me`, beside a constant answered by an axum route on the same kind of server.
pub async fn me(
    bench: &Bench,
    clients: usize,
    window: Window,
) -> anyhow::Result<(Summary, Summary)> {
    let url = format!("{}/api/auth/me", bench.api);
    let tokens: Arc<Vec<String>> = Arc::new(
        bench.seeded.senders[..clients]
            .iter()
            .map(|u| bearer(bench, u))
            .collect::<anyhow::Result<_>>()?,
    );
    let me = || {
        let (client, url, tokens) = (bench.http.clone(), url.clone(), tokens.clone());
        closed_loop(clients, window, &bench.meter, move |c, _| {
            let request = client.get(&url).header(AUTHORIZATION, &tokens[c]);
            async move { expect(request.send().await?, StatusCode::OK).await }
        })
    };
    let constant = || {
        let (client, url) = (bench.http.clone(), bench.static_url.clone());
        closed_loop(clients, window, &bench.meter, move |_, _| {
            let request = client.get(&url);
            async move { expect(request.send().await?, StatusCode::OK).await }
        })
    };
    paired(bench.plan.runs, bench.cores, me, constant).await
}

/// `POST /api/auth/login` from `clients` clients, each its own account, back to back.
fn logins(bench: &Bench, clients: usize) -> impl Future<Output = anyhow::Result<Sample>> + '_ {
    let url = format!("{}/api/auth/login", bench.api);
    let users: Arc<Vec<User>> = Arc::new(bench.seeded.login_users.clone());
    let client = bench.http.clone();
    closed_loop(
        clients.min(users.len()),
        bench.plan.window,
        &bench.meter,
        move |c, _| {
            let body = serde_json::json!({"username": users[c].username, "password": PASSWORD});
            let request = client.post(&url).json(&body);
            async move { expect(request.send().await?, StatusCode::OK).await }
        },
    )
}

/// Logins from one client per core, beside one argon2 verification per core with the product's
/// own parameters, back to back: the same parallelism on both sides, as a Lambda instance
/// verifies one password at a time.
pub async fn login(bench: &Bench) -> anyhow::Result<(Summary, Summary)> {
    let hashes = || {
        let hash = bench.seeded.hash.clone();
        closed_loop(bench.cores, bench.plan.window, &bench.meter, move |_, _| {
            let hash = hash.clone();
            async move {
                ensure!(
                    password::verify(PASSWORD.to_owned(), Some(hash)).await?,
                    "the password does not verify"
                );
                Ok(())
            }
        })
    };
    paired(
        bench.plan.runs,
        bench.cores,
        || logins(bench, bench.cores),
        hashes,
    )
    .await
}

/// One run with two logins per core, to show what running more hashes than cores costs.
pub async fn login_oversubscribed(bench: &Bench) -> anyhow::Result<Sample> {
    logins(bench, bench.cores * 2).await
}

/// A single run, for figures that only explain others (latency without queueing).
pub async fn me_alone(bench: &Bench) -> anyhow::Result<(Sample, Sample)> {
    let url = format!("{}/api/auth/me", bench.api);
    let token = bearer(bench, &bench.seeded.senders[0])?;
    let window = bench.plan.window;
    let client = bench.http.clone();
    let me = closed_loop(1, window, &bench.meter, move |_, _| {
        let request = client.get(&url).header(AUTHORIZATION, &token);
        async move { expect(request.send().await?, StatusCode::OK).await }
    })
    .await?;
    let (client, url) = (bench.http.clone(), bench.static_url.clone());
    let constant = closed_loop(1, window, &bench.meter, move |_, _| {
        let request = client.get(&url);
        async move { expect(request.send().await?, StatusCode::OK).await }
    })
    .await?;
    Ok((me, constant))
}
