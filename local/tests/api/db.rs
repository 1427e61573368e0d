//! The invariants the `blockchat::db` functions keep, called directly on a fresh database of
//! each test's own.

use std::collections::BTreeSet;
use std::sync::Arc;

use blockchat::db;
use blockchat::db::messages::{MessageRow, Sent};
use blockchat::domain::Role;
use sqlx::PgPool;
use tokio::sync::Barrier;

use crate::common::TestDatabase;

/// Connections enough for every contender of a race to hold one at once.
const RACE_CONNECTIONS: u32 = 16;

async fn user(pool: &PgPool, name: &str) -> i64 {
    db::users::insert(pool, name, &format!("{name}@example.com"), "not a hash")
        .await
        .expect("insert user")
        .id
}

/// A group of `owner` (admin) and `members`, who join in the order given.
async fn group(pool: &PgPool, owner: i64, members: &[i64]) -> i64 {
    let chat = db::chats::insert_group(pool, "team", owner)
        .await
        .expect("insert chat")
        .id;
    db::members::add(pool, chat, &[owner], Role::Admin)
        .await
        .expect("add admin");
    for member in members {
        db::members::add(pool, chat, &[*member], Role::Member)
            .await
            .expect("add member");
    }
    chat
}

/// Alice (admin) and Bob in a group, and Eve in none: `(alice, bob, eve, chat)`.
async fn two_members_and_a_stranger(pool: &PgPool) -> (i64, i64, i64, i64) {
    let alice = user(pool, "alice").await;
    let bob = user(pool, "bob").await;
    let eve = user(pool, "eve").await;
    (alice, bob, eve, group(pool, alice, &[bob]).await)
}

async fn send(pool: &PgPool, chat: i64, user: i64, client_id: Option<&str>) -> Option<Sent> {
    db::messages::insert(pool, chat, user, "hello", client_id, None)
        .await
        .expect("insert message")
}

/// The message of a send that must have stored one.
#[track_caller]
fn created(sent: Option<Sent>) -> MessageRow {
    match sent {
        Some(Sent::Created { row, .. }) => row,
        Some(Sent::Duplicate(row)) => panic!("a duplicate of {row:?}, not a new message"),
        None => panic!("refused as from a non-member"),
    }
}

async fn stored_seqs(pool: &PgPool, chat: i64) -> Vec<i64> {
    sqlx::query_scalar("SELECT seq FROM messages WHERE chat_id = $1 ORDER BY seq")
        .bind(chat)
        .fetch_all(pool)
        .await
        .expect("seqs")
}

async fn last_seq(pool: &PgPool, chat: i64) -> i64 {
    sqlx::query_scalar("SELECT last_seq FROM chats WHERE id = $1")
        .bind(chat)
        .fetch_one(pool)
        .await
        .expect("last_seq")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inserts_into_one_chat_take_every_seq_once_without_gaps() {
    let database = TestDatabase::create(RACE_CONNECTIONS).await;
    let pool = &database.pool;
    let mut senders = Vec::new();
    for i in 0..8 {
        senders.push(user(pool, &format!("sender{i}")).await);
    }
    let chat = group(pool, senders[0], &senders[1..]).await;

    let start = Arc::new(Barrier::new(senders.len()));
    let tasks = senders.iter().map(|&sender| {
        let pool = pool.clone();
        let start = start.clone();
        tokio::spawn(async move {
            start.wait().await;
            let mut seqs = Vec::new();
            for _ in 0..25 {
                seqs.push(created(send(&pool, chat, sender, None).await).seq);
            }
            seqs
        })
    });
    let mut answered: Vec<i64> = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        answered.extend(task.await.expect("sender task"));
    }
    answered.sort_unstable();
    let expected: Vec<i64> = (1..=200).collect();
    assert_eq!(answered, expected, "each insert answered its own seq");
    assert_eq!(stored_seqs(pool, chat).await, expected);
    assert_eq!(last_seq(pool, chat).await, 200);
}

#[tokio::test]
async fn a_refused_insert_uses_up_no_seq() {
    let database = TestDatabase::create(2).await;
    let pool = &database.pool;
    let (alice, bob, eve, chat) = two_members_and_a_stranger(pool).await;

    assert_eq!(created(send(pool, chat, alice, None).await).seq, 1);
    assert!(send(pool, chat, eve, None).await.is_none(), "not a member");
    assert!(
        send(pool, 987_654_321, alice, None).await.is_none(),
        "no such chat"
    );
    assert_eq!(last_seq(pool, chat).await, 1);
    assert_eq!(created(send(pool, chat, bob, None).await).seq, 2);
    assert_eq!(stored_seqs(pool, chat).await, [1, 2]);
}

#[tokio::test]
async fn a_repeated_client_id_returns_the_first_message_per_sender_and_chat() {
    let database = TestDatabase::create(2).await;
    let pool = &database.pool;
    let alice = user(pool, "alice").await;
    let bob = user(pool, "bob").await;
    let chat = group(pool, alice, &[bob]).await;
    let other = group(pool, alice, &[bob]).await;

    let first = created(send(pool, chat, alice, Some("k-1")).await);
    assert_eq!(first.client_id.as_deref(), Some("k-1"));
    // Straight to the insert, without the lookup a send makes first: the unique constraint
    // catches it.
    match send(pool, chat, alice, Some("k-1")).await {
        Some(Sent::Duplicate(row)) => {
            assert_eq!(row.id, first.id);
            assert_eq!(row.seq, 1);
        }
        _ => panic!("the second insert of k-1 must answer the first message"),
    }
    let found = db::messages::find_by_client_id(pool, chat, alice, "k-1")
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.id, first.id);

    assert_eq!(
        created(send(pool, chat, bob, Some("k-1")).await).seq,
        2,
        "another sender's k-1 is new"
    );
    assert_eq!(
        created(send(pool, other, alice, Some("k-1")).await).seq,
        1,
        "k-1 in another chat is new"
    );
    assert_eq!(
        created(send(pool, chat, alice, Some("k-2")).await).seq,
        3,
        "the duplicate used up no seq"
    );
    assert_eq!(stored_seqs(pool, chat).await, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inserts_of_one_client_id_store_one_message() {
    let database = TestDatabase::create(RACE_CONNECTIONS).await;
    let pool = &database.pool;
    let alice = user(pool, "alice").await;
    let bob = user(pool, "bob").await;
    let chat = group(pool, alice, &[bob]).await;

    let contenders = 10;
    let start = Arc::new(Barrier::new(contenders));
    let tasks: Vec<_> = (0..contenders)
        .map(|_| {
            let pool = pool.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                send(&pool, chat, alice, Some("retry-me")).await
            })
        })
        .collect();
    let mut created_ids = Vec::new();
    let mut duplicate_ids = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Some(Sent::Created { row, .. }) => created_ids.push(row.id),
            Some(Sent::Duplicate(row)) => duplicate_ids.push(row.id),
            None => panic!("alice is a member"),
        }
    }
    assert_eq!(created_ids.len(), 1, "one stores it");
    assert_eq!(duplicate_ids.len(), contenders - 1, "the rest find it");
    assert!(duplicate_ids.iter().all(|id| *id == created_ids[0]));
    assert_eq!(stored_seqs(pool, chat).await, [1]);
    assert_eq!(last_seq(pool, chat).await, 1, "the losers left no gap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pair_has_one_direct_chat_whoever_asks_and_however_many_at_once() {
    let database = TestDatabase::create(RACE_CONNECTIONS).await;
    let pool = &database.pool;
    let alice = user(pool, "alice").await;
    let bob = user(pool, "bob").await;
    let key = db::chats::direct_key(alice, bob);
    assert_eq!(key, db::chats::direct_key(bob, alice));
    assert_ne!(key, db::chats::direct_key(alice, alice));

    let contenders = 8;
    let start = Arc::new(Barrier::new(contenders));
    let tasks: Vec<_> = (0..contenders)
        .map(|i| {
            let pool = pool.clone();
            let start = start.clone();
            let (me, other) = if i % 2 == 0 {
                (alice, bob)
            } else {
                (bob, alice)
            };
            tokio::spawn(async move {
                start.wait().await;
                db::chats::insert_direct(&pool, &db::chats::direct_key(me, other), None, me)
                    .await
                    .expect("insert direct")
            })
        })
        .collect();
    let mut made = Vec::new();
    for task in tasks {
        made.extend(task.await.expect("task"));
    }
    assert_eq!(made.len(), 1, "exactly one insert made it");
    let found = db::chats::find_direct(pool, &key)
        .await
        .expect("find")
        .expect("the chat");
    assert_eq!(found.id, made[0].id);
    assert!(!found.is_group);
    let chats: i64 = sqlx::query_scalar("SELECT count(*) FROM chats")
        .fetch_one(pool)
        .await
        .expect("count");
    assert_eq!(chats, 1);
}

#[tokio::test]
async fn a_read_cursor_moves_forward_only_and_never_past_the_newest_message() {
    let database = TestDatabase::create(2).await;
    let pool = &database.pool;
    let (alice, bob, eve, chat) = two_members_and_a_stranger(pool).await;
    for _ in 0..3 {
        send(pool, chat, alice, None).await;
    }
    let cursor = |user| async move {
        db::members::cursors(pool, chat)
            .await
            .expect("cursors")
            .into_iter()
            .find(|c| c.user_id == user)
            .expect("a member's cursor")
    };
    assert_eq!(cursor(alice).await.last_read_seq, 3, "sending reads");
    assert_eq!(cursor(bob).await.last_read_seq, 0);
    assert!(cursor(bob).await.last_read_at.is_none());

    let mark = |up_to| async move {
        db::members::mark_read(pool, chat, bob, up_to)
            .await
            .map(|m| m.map(|m| (m.last_read_seq, m.last_seq, m.pos.is_some())))
    };
    assert_eq!(mark(Some(2)).await.expect("mark"), Some((2, 3, true)));
    let read_at = cursor(bob).await.last_read_at.expect("read at");
    assert_eq!(
        mark(Some(1)).await.expect("mark"),
        Some((2, 3, false)),
        "never back"
    );
    assert_eq!(
        cursor(bob).await.last_read_at,
        Some(read_at),
        "a refused move is not a read"
    );
    assert_eq!(
        mark(Some(99)).await.expect("mark"),
        Some((3, 3, true)),
        "no further than the newest"
    );
    assert_eq!(mark(None).await.expect("mark"), Some((3, 3, false)));
    assert_eq!(
        db::members::mark_read(pool, chat, eve, None)
            .await
            .expect("mark"),
        None,
        "not a member"
    );

    // A member who joins later has read what came before.
    let carol = user(pool, "carol").await;
    db::members::add(pool, chat, &[carol], Role::Member)
        .await
        .expect("add");
    assert_eq!(cursor(carol).await.last_read_seq, 3);
}

#[tokio::test]
async fn connection_rows_tell_the_first_and_the_last_of_a_user_and_who_sees_what() {
    let database = TestDatabase::create(2).await;
    let pool = &database.pool;
    let alice = user(pool, "alice").await;
    let bob = user(pool, "bob").await;
    let carol = user(pool, "carol").await;
    let chat = group(pool, alice, &[bob]).await;
    let elsewhere = group(pool, bob, &[]).await;

    let connect = |id: &'static str, user, scope| async move {
        let session =
            db::sessions::insert(pool, user, chrono::Utc::now() + chrono::Duration::days(1))
                .await
                .expect("session");
        db::connections::insert(pool, id, user, session, scope)
            .await
            .expect("insert connection")
            .expect("a live session")
    };
    assert!(connect("alice-phone", alice, None).await, "the first");
    assert!(!connect("alice-laptop", alice, None).await, "not the first");
    assert!(connect("bob-scoped", bob, Some(chat)).await);
    assert!(!connect("bob-elsewhere", bob, Some(elsewhere)).await);
    assert!(connect("carol", carol, None).await);

    let sorted = |ids: Vec<String>| ids.into_iter().collect::<BTreeSet<_>>();
    assert_eq!(
        sorted(
            db::connections::for_chat(pool, chat)
                .await
                .expect("for chat")
        ),
        BTreeSet::from([
            "alice-phone".into(),
            "alice-laptop".into(),
            "bob-scoped".into()
        ]),
        "members' unscoped connections and those scoped to the chat"
    );
    assert_eq!(
        sorted(
            db::connections::for_chat_except(pool, chat, alice)
                .await
                .expect("except")
        ),
        BTreeSet::from(["bob-scoped".to_owned()])
    );
    assert_eq!(
        sorted(
            db::connections::for_contacts(pool, bob, None)
                .await
                .expect("contacts")
        ),
        BTreeSet::from(["alice-phone".into(), "alice-laptop".into()]),
        "unscoped connections of those who share a chat; not Carol's"
    );
    assert_eq!(
        sorted(
            db::connections::for_contacts(pool, carol, None)
                .await
                .expect("contacts")
        ),
        BTreeSet::from(["carol".to_owned()]),
        "one who shares no chat reaches only themselves"
    );

    let gone = |id: &'static str| async move {
        db::connections::delete(pool, id)
            .await
            .expect("delete connection")
    };
    assert_eq!(gone("alice-phone").await, Some((alice, false)));
    assert_eq!(gone("alice-laptop").await, Some((alice, true)), "the last");
    assert_eq!(gone("alice-laptop").await, None, "deleted once");

    sqlx::query(
        "UPDATE ws_connections SET connected_at = now() - interval '2 hours 1 minute' \
         WHERE connection_id = 'carol'",
    )
    .execute(pool)
    .await
    .expect("age a connection");
    assert_eq!(
        db::connections::sweep_stale(pool).await.expect("sweep"),
        [carol]
    );
    assert_eq!(
        db::connections::of_user(pool, carol).await.expect("of"),
        Vec::<String>::new()
    );
    assert_eq!(
        db::connections::of_user(pool, bob).await.expect("of").len(),
        2
    );
}

#[tokio::test]
async fn when_a_group_loses_its_admin_the_longest_standing_member_is_promoted_once() {
    let database = TestDatabase::create(2).await;
    let pool = &database.pool;
    let alice = user(pool, "alice").await;
    // Carol's account is older, but Bob joins first.
    let carol = user(pool, "carol").await;
    let bob = user(pool, "bob").await;
    let chat = group(pool, alice, &[bob, carol]).await;
    let alone = group(pool, alice, &[]).await;

    assert_eq!(
        db::members::groups_where_sole_admin(pool, alice)
            .await
            .expect("groups"),
        [chat],
        "a group without others needs no successor"
    );
    assert_eq!(
        db::members::ensure_admin(pool, chat).await.expect("ensure"),
        None,
        "it has one"
    );
    assert!(
        db::members::remove(pool, chat, alice)
            .await
            .expect("remove")
    );
    assert_eq!(
        db::members::ensure_admin(pool, chat).await.expect("ensure"),
        Some(bob)
    );
    assert_eq!(
        db::members::ensure_admin(pool, chat).await.expect("ensure"),
        None,
        "once"
    );
    assert!(
        !db::members::remove(pool, chat, alice)
            .await
            .expect("remove")
    );
    assert_eq!(
        db::chats::delete_groups_only_member(pool, alice)
            .await
            .expect("delete"),
        [alone]
    );
}

#[tokio::test]
async fn a_connection_needs_a_live_session_and_its_frames_see_the_session_end() {
    let database = TestDatabase::create(2).await;
    let pool = &database.pool;
    let alice = user(pool, "alice").await;
    let bob = user(pool, "bob").await;
    let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);
    let session = db::sessions::insert(pool, alice, tomorrow)
        .await
        .expect("session");
    assert!(
        db::sessions::is_live(pool, session, alice)
            .await
            .expect("live")
    );
    assert!(
        !db::sessions::is_live(pool, session, bob)
            .await
            .expect("live"),
        "a session is its user's only"
    );
    assert_eq!(
        db::connections::insert(pool, "bobs", bob, session, None)
            .await
            .expect("insert"),
        None,
        "another user's session opens nothing"
    );
    db::connections::insert(pool, "phone", alice, session, None)
        .await
        .expect("insert")
        .expect("a live session");
    let window = std::time::Duration::from_secs(10);
    let found = db::connections::find(pool, "phone", window)
        .await
        .expect("find")
        .expect("stored");
    assert!(found.live);
    assert_eq!(found.session_id, Some(session));
    assert_eq!(
        found.connection.frames, 1,
        "a live session's frame is counted"
    );

    assert!(db::sessions::revoke(pool, session).await.expect("revoke"));
    let found = db::connections::find(pool, "phone", window)
        .await
        .expect("find")
        .expect("still stored");
    assert!(!found.live, "a frame sees the session end");
    assert_eq!(
        found.connection.frames, 1,
        "an ended session's frame is not counted"
    );
    assert!(
        !db::sessions::is_live(pool, session, alice)
            .await
            .expect("live")
    );
    assert_eq!(
        db::connections::insert(pool, "laptop", alice, session, None)
            .await
            .expect("insert"),
        None,
        "an ended session opens no connection"
    );
    assert_eq!(
        db::connections::delete_of_sessions(pool, &[session])
            .await
            .expect("delete"),
        ["phone".to_owned()]
    );

    let expired = db::sessions::insert(
        pool,
        alice,
        chrono::Utc::now() - chrono::Duration::seconds(1),
    )
    .await
    .expect("session");
    assert!(
        !db::sessions::is_live(pool, expired, alice)
            .await
            .expect("live")
    );
}

#[tokio::test]
async fn rate_limit_counts_are_atomic_per_key_and_expired_rows_are_purged() {
    let database = TestDatabase::create(8).await;
    let pool = &database.pool;
    let window = std::time::Duration::from_secs(60);
    let key = db::rate_limits::hashed("account:1");
    let mut hits = Vec::new();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let pool = pool.clone();
            let key = key.clone();
            tokio::spawn(async move { db::rate_limits::hit(&pool, &[(key, window)]).await })
        })
        .collect();
    for task in tasks {
        hits.push(task.await.expect("task").expect("hit")[0].hits);
    }
    hits.sort_unstable();
    assert_eq!(
        hits,
        (1..=20).collect::<Vec<_>>(),
        "every attempt sees its own count"
    );

    sqlx::query("INSERT INTO rate_limits (key, hits, expires_at) VALUES ('\\x00', 5, now() - interval '1 second')")
        .execute(pool)
        .await
        .expect("an expired row");
    db::rate_limits::hit(pool, &[(key.clone(), window)])
        .await
        .expect("hit");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM rate_limits WHERE expires_at < now()")
        .fetch_one(pool)
        .await
        .expect("count");
    assert_eq!(left, 0, "expired rows go on the next hit");
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT key FROM rate_limits")
        .fetch_all(pool)
        .await
        .expect("keys");
    assert!(
        stored
            .iter()
            .all(|k| k.len() == 32 && !k.starts_with(b"account"))
    );
}
