//! Chats and their members: list, create, read, rename, delete, add, remove and leave.

use std::collections::{BTreeSet, HashMap};

use sqlx::{PgConnection, PgPool};

use crate::db;
use crate::db::changes::{Fields, Kind};
use crate::db::chats::MemberChatRow;
use crate::db::members::MemberStats;
use crate::domain::{Caller, ChatCursor, ChatName, Role};
use crate::error::{Error, Result};
use crate::service::access::{Member, chat_not_found};
use crate::service::consent;
use crate::service::{Audience, Outcome, Stored};
use crate::views::chats::name_for;
use crate::views::{
    ChatSummary, ChatUpdate, ChatView, Event, MemberList, MemberView, MessageView, NewChat,
    ReadCursors,
};

/// The most members a chat may have, its creator included.
pub const MAX_MEMBERS: usize = 1000;

fn too_many_members() -> Error {
    Error::validation(
        "user_ids",
        format!("a chat has at most {MAX_MEMBERS} members"),
    )
}

/// How many members each chat of the chat list embeds: all of a direct chat's, and enough of a
/// group's for a preview. The list's size stays bounded whatever the groups' sizes.
pub const PREVIEW_MEMBERS: i64 = 3;

/// Which members a chat view lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Members {
    /// Every member: one chat's own answers (at most `MAX_MEMBERS`).
    All,
    /// The first [`PREVIEW_MEMBERS`]: the chat list.
    Preview,
}

/// Views of `rows` in a fixed number of queries, whatever their count: the members of all of
/// them (and, for previews, their counts and read state), and their newest messages.
async fn views(
    db: &PgPool,
    viewer: i64,
    rows: Vec<MemberChatRow>,
    which: Members,
) -> Result<Vec<ChatView>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.chat.id).collect();
    let (members, latest, stats) = match which {
        Members::All => {
            let (members, latest) = tokio::try_join!(
                db::members::for_chats(db, &ids),
                db::messages::latest_of(db, &ids),
            )?;
            (members, latest, Vec::new())
        }
        Members::Preview => tokio::try_join!(
            db::members::pages(db, &ids, 0, PREVIEW_MEMBERS),
            db::messages::latest_of(db, &ids),
            db::members::stats(db, &ids),
        )?,
    };
    let mut members_of: HashMap<i64, Vec<_>> = HashMap::new();
    for m in members {
        members_of.entry(m.chat_id).or_default().push(m);
    }
    let stats_of: HashMap<i64, MemberStats> = stats.into_iter().map(|s| (s.chat_id, s)).collect();
    let mut latest_of: HashMap<i64, _> = latest.into_iter().map(|m| (m.chat_id, m)).collect();
    Ok(rows
        .into_iter()
        .map(|row| {
            let id = row.chat.id;
            let members = members_of.remove(&id).unwrap_or_default();
            let (member_count, newest_read) = match stats_of.get(&id) {
                Some(stats) => (stats.member_count, Some(stats.newest_read)),
                None => (members.len() as i64, None),
            };
            let last_message = latest_of.remove(&id).map(|m| {
                let read = newest_read.unwrap_or_else(|| {
                    ReadCursors::new(members.iter().map(|m| (m.user.id, m.last_read_seq)))
                        .is_read(m.seq, m.user_id)
                });
                MessageView::new(m, read)
            });
            ChatView::new(viewer, row, members, member_count, last_message)
        })
        .collect())
}

/// The chat as `user_id` sees it; 404 unless they are a member.
async fn view_for(db: &PgPool, chat_id: i64, user_id: i64) -> Result<ChatView> {
    let row = db::chats::find_for_member(db, chat_id, user_id)
        .await?
        .ok_or_else(chat_not_found)?;
    views(db, user_id, vec![row], Members::All)
        .await?
        .pop()
        .ok_or_else(chat_not_found)
}

/// The chat's summary as `viewer` sees it now; `None` unless they are a member.
pub(crate) async fn summary_for(
    db: &PgPool,
    chat_id: i64,
    viewer: i64,
) -> Result<Option<ChatSummary>> {
    match view_for(db, chat_id, viewer).await {
        Ok(view) => Ok(Some(ChatSummary::from(&view))),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A page of the caller's chats, most recent activity first, and the cursor of the next page
/// when this one is full.
#[tracing::instrument(skip_all, fields(user_id = caller.id))]
pub async fn list(
    db: &PgPool,
    caller: Caller,
    after: Option<ChatCursor>,
    skip: i64,
    limit: i64,
) -> Result<(Vec<ChatView>, Option<ChatCursor>)> {
    let rows = db::chats::list_for_member(db, caller.id, after, skip, limit).await?;
    let next = rows
        .last()
        .filter(|_| rows.len() as i64 >= limit)
        .map(|last| ChatCursor {
            at: last.chat.last_activity_at,
            id: last.chat.id,
        });
    Ok((views(db, caller.id, rows, Members::Preview).await?, next))
}

/// One chat; members only.
#[tracing::instrument(skip_all, fields(user_id = caller.id, chat_id = chat_id))]
pub async fn get(db: &PgPool, caller: Caller, chat_id: i64) -> Result<ChatView> {
    view_for(db, chat_id, caller.id).await
}

/// A page of a chat's members, longest-standing first; members only.
#[tracing::instrument(skip_all, fields(user_id = caller.id, chat_id = chat_id))]
pub async fn members(
    db: &PgPool,
    caller: Caller,
    chat_id: i64,
    skip: i64,
    limit: i64,
) -> Result<Vec<MemberView>> {
    Member::load(db, chat_id, caller.id).await?;
    let rows = db::members::pages(db, &[chat_id], skip, limit).await?;
    Ok(rows.into_iter().map(MemberView::from).collect())
}

/// Checks that every id names an account; 422 lists those that do not.
async fn check_users_exist(db: &PgPool, ids: &[i64]) -> Result<()> {
    let found: BTreeSet<i64> = db::users::existing_ids(db, ids)
        .await?
        .into_iter()
        .collect();
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !found.contains(id))
        .map(i64::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(Error::validation(
            "user_ids",
            format!("unknown user ids: {}", missing.join(", ")),
        ));
    }
    Ok(())
}

/// Starts a direct chat or a group. Asking for a direct chat that exists returns it; the
/// database makes sure that a pair of users has one direct chat, even under concurrent
/// requests.
#[tracing::instrument(skip_all, fields(user_id = caller.id))]
pub async fn create(
    db: &PgPool,
    caller: Caller,
    body: NewChat,
) -> Result<Outcome<Stored<ChatView>>> {
    let others: Vec<i64> = body
        .user_ids
        .iter()
        .copied()
        .filter(|id| *id != caller.id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if others.len() + 1 > MAX_MEMBERS {
        return Err(too_many_members());
    }
    let is_group = body.is_group_chat.unwrap_or(others.len() != 1);
    if !is_group && others.len() != 1 {
        return Err(Error::validation(
            "user_ids",
            "a direct chat needs exactly one other user",
        ));
    }
    // A group needs a name; a direct chat may be given one, which both members then see.
    let name = match body.name {
        None if !is_group => None,
        Some(name) if !is_group && name.trim().is_empty() => None,
        name => Some(ChatName::parse(name.unwrap_or_default())?),
    };
    check_users_exist(db, &others).await?;
    if is_group {
        consent::require_adds_allowed(db, caller, &others, None).await?;
    } else {
        consent::require_direct_allowed(db, caller, others[0]).await?;
    }

    let mut tx = db.begin().await?;
    let (chat, created) = match name {
        Some(name) if is_group => {
            let chat = db::chats::insert_group(&mut *tx, name.as_str(), caller.id).await?;
            db::members::add(&mut *tx, chat.id, &[caller.id], Role::Admin).await?;
            db::members::add(&mut *tx, chat.id, &others, Role::Member).await?;
            (chat, true)
        }
        name => {
            let key = db::chats::direct_key(caller.id, others[0]);
            let name = name.as_ref().map(ChatName::as_str);
            match db::chats::insert_direct(&mut *tx, &key, name, caller.id).await? {
                Some(chat) => {
                    db::members::add(&mut *tx, chat.id, &[caller.id, others[0]], Role::Member)
                        .await?;
                    (chat, true)
                }
                None => {
                    let chat = db::chats::find_direct(&mut *tx, &key)
                        .await?
                        .ok_or_else(|| Error::internal("direct chat vanished"))?;
                    (chat, false)
                }
            }
        }
    };
    let pos = if created {
        let mut joined = others.clone();
        joined.push(caller.id);
        let fields = Fields {
            joined: &joined,
            ..Fields::default()
        };
        db::changes::record(&mut *tx, chat.id, Kind::ChatCreated, fields)
            .await?
            .ok_or_else(|| Error::internal("new chat vanished"))?
    } else {
        0
    };
    tx.commit().await?;
    let view = view_for(db, chat.id, caller.id).await?;
    if !created {
        return Ok(Outcome::quiet(Stored {
            item: view,
            created,
        }));
    }
    tracing::info!(
        chat_id = chat.id,
        is_group,
        members = view.users.len(),
        "chat created"
    );
    let notices: Vec<(Audience, Event)> = if is_group {
        let event = Event::ChatCreated {
            chat_id: chat.id,
            pos,
            chat: ChatSummary::from(&view),
        };
        vec![(Audience::Chat(chat.id), event)]
    } else {
        // Each member of a direct chat sees it named after the other one.
        view.users
            .iter()
            .map(|member| {
                let summary = ChatSummary {
                    name: name_for(chat.name.as_deref(), &view.users, member.id),
                    ..ChatSummary::from(&view)
                };
                let audience = Audience::Member {
                    chat_id: chat.id,
                    user_id: member.id,
                };
                let event = Event::ChatCreated {
                    chat_id: chat.id,
                    pos,
                    chat: summary,
                };
                (audience, event)
            })
            .collect()
    };
    let mut outcome = Outcome::quiet(Stored {
        item: view,
        created,
    });
    for (audience, event) in notices {
        outcome = outcome.notify(audience, event);
    }
    Ok(outcome)
}

/// Renames a group; its admins only.
#[tracing::instrument(skip_all, fields(user_id = caller.id, chat_id = chat_id))]
pub async fn rename(
    db: &PgPool,
    caller: Caller,
    chat_id: i64,
    body: ChatUpdate,
) -> Result<Outcome<ChatView>> {
    let member = Member::load(db, chat_id, caller.id).await?;
    member.require_admin("only the group's admins can rename it")?;
    let name = ChatName::parse(body.name)?;
    let mut tx = db.begin().await?;
    db::chats::rename(&mut *tx, chat_id, name.as_str()).await?;
    let pos = db::changes::record(&mut *tx, chat_id, Kind::ChatUpdated, Fields::default())
        .await?
        .ok_or_else(chat_not_found)?;
    tx.commit().await?;
    let view = view_for(db, chat_id, caller.id).await?;
    let event = Event::ChatUpdated {
        chat_id,
        pos,
        chat: ChatSummary::from(&view),
    };
    Ok(Outcome::quiet(view).notify(Audience::Chat(chat_id), event))
}

/// Deletes a chat and its messages: a group's admins, or either member of a direct chat.
#[tracing::instrument(skip_all, fields(user_id = caller.id, chat_id = chat_id))]
pub async fn delete(db: &PgPool, caller: Caller, chat_id: i64) -> Result<Outcome<()>> {
    Member::load(db, chat_id, caller.id)
        .await?
        .require_owner()?;
    // The connections must be found before the memberships go with the chat.
    let audience = db::connections::for_chat(db, chat_id).await?;
    let scoped = db::connections::scoped_to(db, chat_id).await?;
    let mut tx = db.begin().await?;
    let pos = db::changes::record_deletion(&mut *tx, chat_id, &[])
        .await?
        .ok_or_else(chat_not_found)?;
    db::chats::delete(&mut *tx, chat_id).await?;
    tx.commit().await?;
    tracing::info!(chat_id, "chat deleted");
    Ok(Outcome::quiet(())
        .notify(
            Audience::Connections(audience),
            Event::ChatDeleted { chat_id, pos },
        )
        // Connections scoped to the chat have nothing more to receive.
        .close(scoped))
}

/// Adds members to a group; its admins only. Users who are members already are left as they
/// are.
#[tracing::instrument(skip_all, fields(user_id = caller.id, chat_id = chat_id))]
pub async fn add_members(
    db: &PgPool,
    caller: Caller,
    chat_id: i64,
    body: MemberList,
) -> Result<Outcome<ChatView>> {
    let ids: Vec<i64> = body
        .into_ids()
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if ids.is_empty() {
        return Err(Error::validation("user_ids", "must name at least one user"));
    }
    let member = Member::load(db, chat_id, caller.id).await?;
    member.require_admin("only the group's admins can add members")?;
    if ids.len() > MAX_MEMBERS {
        return Err(too_many_members());
    }
    check_users_exist(db, &ids).await?;
    consent::require_adds_allowed(db, caller, &ids, Some(chat_id)).await?;
    let mut tx = db.begin().await?;
    // Serializes concurrent additions to one chat, so the member cap holds.
    db::chats::lock(&mut *tx, chat_id).await?;
    let added = db::members::add(&mut *tx, chat_id, &ids, Role::Member).await?;
    if db::members::count(&mut *tx, chat_id).await? > MAX_MEMBERS as i64 {
        return Err(too_many_members());
    }
    let mut pos = None;
    if !added.is_empty() {
        db::chats::touch(&mut *tx, chat_id).await?;
        let fields = Fields {
            joined: &added,
            ..Fields::default()
        };
        pos = db::changes::record(&mut *tx, chat_id, Kind::MemberAdded, fields).await?;
    }
    tx.commit().await?;
    tracing::info!(chat_id, added = added.len(), "members added");
    let view = view_for(db, chat_id, caller.id).await?;
    let Some(pos) = pos else {
        return Ok(Outcome::quiet(view));
    };
    let event = Event::MemberAdded {
        chat_id,
        pos,
        user_ids: added,
        chat: ChatSummary::from(&view),
    };
    Ok(Outcome::quiet(view).notify(Audience::Chat(chat_id), event))
}

/// What a member's leaving did, for the events that follow it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removal {
    /// The chat went with its last member.
    pub chat_deleted: bool,
    /// The member who became admin because the last admin left.
    pub new_admin: Option<i64>,
    /// The change's position in the chat.
    pub pos: i64,
}

impl Removal {
    /// The event that tells the chat's members about it.
    pub fn event(self, chat_id: i64, user_id: i64) -> Event {
        if self.chat_deleted {
            Event::ChatDeleted {
                chat_id,
                pos: self.pos,
            }
        } else {
            Event::MemberRemoved {
                chat_id,
                pos: self.pos,
                user_id,
                new_admin: self.new_admin,
            }
        }
    }
}

/// Removes `user_id` from a group, hands admin on when the last admin leaves, and deletes the
/// chat when nobody is left: a leave, a removal and an account's deletion all go through here.
/// The caller holds the transaction.
pub(crate) async fn leave_group(
    tx: &mut PgConnection,
    chat_id: i64,
    user_id: i64,
) -> Result<Removal> {
    db::chats::lock(&mut *tx, chat_id).await?;
    if !db::members::remove(&mut *tx, chat_id, user_id).await? {
        return Err(Error::NotFound("that user is not a member of this chat"));
    }
    if db::members::count(&mut *tx, chat_id).await? == 0 {
        // The one who left hears of the deletion too.
        let pos = db::changes::record_deletion(&mut *tx, chat_id, &[user_id])
            .await?
            .ok_or_else(chat_not_found)?;
        db::chats::delete(&mut *tx, chat_id).await?;
        return Ok(Removal {
            chat_deleted: true,
            new_admin: None,
            pos,
        });
    }
    let new_admin = db::members::ensure_admin(&mut *tx, chat_id).await?;
    db::chats::touch(&mut *tx, chat_id).await?;
    let pos = record_removal(tx, chat_id, user_id, new_admin).await?;
    Ok(Removal {
        chat_deleted: false,
        new_admin,
        pos,
    })
}

/// Logs that `user_id` is no longer a member (they can still read that change).
pub(crate) async fn record_removal(
    tx: &mut PgConnection,
    chat_id: i64,
    user_id: i64,
    new_admin: Option<i64>,
) -> Result<i64> {
    let fields = Fields {
        user_id: Some(user_id),
        value: new_admin,
        audience: &[user_id],
        ..Fields::default()
    };
    db::changes::record(&mut *tx, chat_id, Kind::MemberRemoved, fields)
        .await?
        .ok_or_else(chat_not_found)
}

/// An admin removes a member, or a member leaves. The last admin to leave hands admin to the
/// longest-standing member; the last member to leave deletes the chat.
#[tracing::instrument(skip_all, fields(user_id = caller.id, chat_id = chat_id, member_id = member_id))]
pub async fn remove_member(
    db: &PgPool,
    caller: Caller,
    chat_id: i64,
    member_id: i64,
) -> Result<Outcome<()>> {
    let member = Member::load(db, chat_id, caller.id).await?;
    if member_id != caller.id {
        member.require_admin("only the group's admins can remove other members")?;
    } else if !member.is_group {
        return Err(Error::conflict(
            "direct_chat",
            "a direct chat's members are fixed; delete the chat instead",
        ));
    }
    // The removed member hears of it too, so the audience is found before the removal.
    let audience = db::connections::for_chat(db, chat_id).await?;
    let mut tx = db.begin().await?;
    let removal = leave_group(&mut tx, chat_id, member_id).await?;
    tx.commit().await?;
    tracing::info!(
        chat_id,
        member_id,
        chat_deleted = removal.chat_deleted,
        "member removed"
    );
    // A connection scoped to a chat its user has left has nothing more to receive.
    let scoped = db::connections::scoped(db, member_id, chat_id).await?;
    Ok(Outcome::quiet(())
        .notify(
            Audience::Connections(audience),
            removal.event(chat_id, member_id),
        )
        .close(scoped))
}
