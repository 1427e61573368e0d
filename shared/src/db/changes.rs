//! `changes`: the change log that `GET /api/sync` reads. Sends, edits, deletions and read
//! cursors write theirs inside their own statements (`db::messages`, `db::members`); the rarer
//! changes to chats and members go through [`record`].

use sqlx::PgExecutor;

use crate::error::Result;

/// What a change was; the socket event's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ChatCreated,
    ChatUpdated,
    MemberAdded,
    MemberRemoved,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ChatCreated => "chat.created",
            Kind::ChatUpdated => "chat.updated",
            Kind::MemberAdded => "member.added",
            Kind::MemberRemoved => "member.removed",
        }
    }
}

/// One logged change, as the feed reads it.
#[derive(Clone, Debug)]
pub struct ChangeRow {
    pub id: i64,
    pub chat_id: i64,
    pub pos: i64,
    pub xid: i64,
    pub kind: String,
    pub message_id: Option<i64>,
    pub user_id: Option<i64>,
    pub value: Option<i64>,
    pub user_ids: Option<Vec<i64>>,
}

/// What a change names besides its chat.
#[derive(Clone, Debug, Default)]
pub struct Fields<'a> {
    /// member.removed: who left.
    pub user_id: Option<i64>,
    /// member.removed: who became admin.
    pub value: Option<i64>,
    /// chat.created, member.added: who joined; their membership starts at this change.
    pub joined: &'a [i64],
    /// member.removed: who may read the change once no longer a member.
    pub audience: &'a [i64],
}

/// Logs a change of `chat_id` at the chat's next position, taken under its row lock, and
/// starts the memberships of `fields.joined` there; a change of members moves `members_pos`. `None` when the chat is gone.
pub async fn record(
    db: impl PgExecutor<'_>,
    chat_id: i64,
    kind: Kind,
    fields: Fields<'_>,
) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar!(
        r#"WITH p AS (UPDATE chats SET last_pos = last_pos + 1,
                          members_pos = CASE WHEN $2 IN ('member.added', 'member.removed')
                                             THEN last_pos + 1 ELSE members_pos END
                      WHERE id = $1 RETURNING last_pos),
                j AS (UPDATE chat_members SET joined_pos = p.last_pos FROM p
                      WHERE chat_members.chat_id = $1 AND chat_members.user_id = ANY($5))
           INSERT INTO changes (chat_id, pos, kind, user_id, value, user_ids, audience)
           SELECT $1, p.last_pos, $2, $3, $4, NULLIF($5::bigint[], '{}'),
                  NULLIF($6::bigint[], '{}') FROM p
           RETURNING pos"#,
        chat_id,
        kind.as_str(),
        fields.user_id,
        fields.value,
        fields.joined,
        fields.audience,
    )
    .fetch_optional(db)
    .await?)
}

/// Logs a chat's deletion for everyone who is a member now and for `also` (who just left);
/// call it just before the delete, in the same transaction.
pub async fn record_deletion(
    db: impl PgExecutor<'_>,
    chat_id: i64,
    also: &[i64],
) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar!(
        r#"WITH p AS (UPDATE chats SET last_pos = last_pos + 1 WHERE id = $1 RETURNING last_pos)
           INSERT INTO changes (chat_id, pos, kind, audience)
           SELECT $1, p.last_pos, 'chat.deleted',
                  ARRAY(SELECT user_id FROM chat_members WHERE chat_id = $1) || $2::bigint[]
           FROM p RETURNING pos"#,
        chat_id,
        also,
    )
    .fetch_optional(db)
    .await?)
}

/// A page of the feed and the snapshot it was read in.
pub struct Page {
    /// Every transaction with a smaller id had finished when the page was read.
    pub xmin: i64,
    pub rows: Vec<ChangeRow>,
}

/// The changes `user_id` may read that a token `(after_xid, seen)` has not delivered: those
/// written by transactions from `after_xid` on, less those of chats up to the positions in
/// `seen`. The first `limit` in transaction order, and with them whatever of their chats comes
/// before them (a transaction with a smaller id can take a chat's lock after a larger one), so
/// that each chat's part of a page is all it has up to its last change there.
///
/// A member reads their chats' changes from the one that added them; a former member only
/// those addressed to them (their removal, the chat's deletion).
pub async fn page(
    db: impl PgExecutor<'_>,
    user_id: i64,
    after_xid: i64,
    seen_chats: &[i64],
    seen_pos: &[i64],
    limit: i64,
) -> Result<Page> {
    let rows = sqlx::query!(
        r#"WITH my AS (SELECT chat_id, joined_pos FROM chat_members WHERE user_id = $1),
                seen AS (SELECT * FROM unnest($3::bigint[], $4::bigint[]) AS s(chat_id, pos)),
                pending AS (
                    SELECT c.* FROM my JOIN changes c
                        ON c.chat_id = my.chat_id AND c.pos >= my.joined_pos AND c.xid >= $2
                    UNION ALL
                    SELECT c.* FROM changes c
                    WHERE c.audience @> ARRAY[$1::bigint] AND c.xid >= $2
                      AND NOT EXISTS (SELECT 1 FROM my
                                      WHERE my.chat_id = c.chat_id AND c.pos >= my.joined_pos)),
                fresh AS (
                    SELECT p.* FROM pending p LEFT JOIN seen s ON s.chat_id = p.chat_id
                    WHERE s.pos IS NULL OR p.pos > s.pos),
                head AS (SELECT * FROM fresh ORDER BY xid, id LIMIT $5),
                top AS (SELECT chat_id, max(pos) AS pos FROM head GROUP BY chat_id),
                rows AS (
                    SELECT * FROM head
                    UNION
                    SELECT f.* FROM fresh f JOIN top ON top.chat_id = f.chat_id AND f.pos < top.pos)
           SELECT w.xmin AS "xmin!", r.id AS "id?", r.chat_id AS "chat_id?", r.pos AS "pos?",
                  r.xid AS "xid?", r.kind AS "kind?", r.message_id, r.user_id, r.value,
                  r.user_ids
           FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin) w
           LEFT JOIN rows r ON true
           ORDER BY r.xid, r.id"#,
        user_id,
        after_xid,
        seen_chats,
        seen_pos,
        limit,
    )
    .fetch_all(db)
    .await?;
    let xmin = rows.first().map_or(0, |r| r.xmin);
    let rows = rows
        .into_iter()
        .filter_map(|r| {
            Some(ChangeRow {
                id: r.id?,
                chat_id: r.chat_id?,
                pos: r.pos?,
                xid: r.xid?,
                kind: r.kind?,
                message_id: r.message_id,
                user_id: r.user_id,
                value: r.value,
                user_ids: r.user_ids,
            })
        })
        .collect();
    Ok(Page { xmin, rows })
}

/// The oldest transaction still running (or the next one), below which every change is final.
pub async fn horizon(db: impl PgExecutor<'_>) -> Result<i64> {
    Ok(sqlx::query_scalar!(
        r#"SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS "xmin!""#
    )
    .fetch_one(db)
    .await?)
}

/// Of the chats in `(chats, pos)`, those with a change up to that position written from
/// `from_xid` on: a token must still name them, or a reader would get those changes again.
pub async fn still_needed(
    db: impl PgExecutor<'_>,
    from_xid: i64,
    chats: &[i64],
    pos: &[i64],
) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT s.chat_id AS "chat_id!"
           FROM unnest($2::bigint[], $3::bigint[]) AS s(chat_id, pos)
           WHERE EXISTS (SELECT 1 FROM changes c
                         WHERE c.chat_id = s.chat_id AND c.xid >= $1 AND c.pos <= s.pos)"#,
        from_xid,
        chats,
        pos,
    )
    .fetch_all(db)
    .await?)
}

/// Deletes the changes logged before `cutoff_secs` seconds ago, at most `batch` at a time (so
/// a purge never holds many locks); returns how many went.
pub async fn purge(db: impl PgExecutor<'_>, cutoff_secs: i64, batch: i64) -> Result<u64> {
    let done = sqlx::query!(
        r#"DELETE FROM changes WHERE id IN (
               SELECT id FROM changes
               WHERE created_at < now() - make_interval(secs => $1::bigint::double precision)
               LIMIT $2)"#,
        cutoff_secs,
        batch,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
