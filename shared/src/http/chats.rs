//! `/api/chats`: direct and group chats and their members.

use std::collections::{BTreeSet, HashMap};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::db;
use crate::db::chats::MemberChatRow;
use crate::domain::ChatName;
use crate::error::{Error, Result};
use crate::extract::{AuthUser, Json, Path, Query};
use crate::http::pagination::{NEXT_CURSOR, PageQuery, limit};
use crate::http::views::ChatView;
use crate::realtime::Event;
use crate::realtime::events::ChatSummary;
use crate::state::AppState;

/// The most members a chat may have, its creator included.
pub const MAX_MEMBERS: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/chats", get(list_chats).post(create_chat))
        .route(
            "/api/chats/{chat_id}",
            get(get_chat).put(rename_chat).delete(delete_chat),
        )
        .route("/api/chats/{chat_id}/members", post(add_members))
        .route(
            "/api/chats/{chat_id}/members/{user_id}",
            delete(remove_member),
        )
}

pub(crate) fn chat_not_found() -> Error {
    Error::NotFound("chat not found")
}

/// Views of `rows` in a fixed number of queries, whatever their count: one for the members of
/// all of them, one for their newest messages.
pub async fn views(state: &AppState, rows: Vec<MemberChatRow>) -> Result<Vec<ChatView>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.chat.id).collect();
    let (members, latest) = tokio::try_join!(
        db::members::for_chats(&state.db, &ids),
        db::messages::latest_of(&state.db, &ids),
    )?;
    let mut members_of: HashMap<i64, Vec<_>> = HashMap::new();
    for m in members {
        members_of.entry(m.chat_id).or_default().push(m);
    }
    let mut latest_of: HashMap<i64, _> = latest.into_iter().map(|m| (m.chat_id, m)).collect();
    Ok(rows
        .into_iter()
        .map(|row| {
            let id = row.chat.id;
            ChatView::new(
                row,
                members_of.remove(&id).unwrap_or_default(),
                latest_of.remove(&id),
            )
        })
        .collect())
}

/// The chat as `user` sees it; 404 unless they are a member.
pub async fn view_for(state: &AppState, chat_id: i64, user_id: i64) -> Result<ChatView> {
    let row = db::chats::find_for_member(&state.db, chat_id, user_id)
        .await?
        .ok_or_else(chat_not_found)?;
    views(state, vec![row])
        .await?
        .pop()
        .ok_or_else(chat_not_found)
}

fn chat_cursor(raw: Option<&str>) -> Result<Option<(DateTime<Utc>, i64)>> {
    let Some(raw) = raw.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let bad = || Error::validation("cursor", "is not a cursor this API gave out");
    let (micros, id) = raw.split_once('.').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let id: i64 = id.parse().map_err(|_| bad())?;
    let at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok(Some((at, id)))
}

/// `GET /api/chats` — the caller's chats, most recent activity first.
#[utoipa::path(get, path = "/api/chats", tag = "chats", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of chats; `X-Next-Cursor` names the next page when there is one", body = [ChatView],
            headers(("x-next-cursor" = String, description = "Pass as `cursor` for the next page"))),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_chats(
    user: AuthUser,
    State(state): State<AppState>,
    Query(page): Query<PageQuery>,
) -> Result<impl IntoResponse> {
    let limit = limit(page.limit)?;
    let after = chat_cursor(page.cursor.as_deref())?;
    let skip = page.skip.unwrap_or(0);
    if skip < 0 {
        return Err(Error::validation("skip", "must not be negative"));
    }
    let rows = db::chats::list_for_member(&state.db, user.id, after, skip, limit).await?;
    let mut headers = axum::http::HeaderMap::new();
    if rows.len() as i64 >= limit
        && let Some(last) = rows.last()
        && let Ok(value) = format!(
            "{}.{}",
            last.chat.last_activity_at.timestamp_micros(),
            last.chat.id
        )
        .parse()
    {
        headers.insert(NEXT_CURSOR, value);
    }
    Ok((headers, axum::Json(views(&state, rows).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewChat {
    /// Required for a group (1–100 characters, not only white space); ignored for a direct chat.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: Option<String>,
    /// Left out: one other user makes a direct chat, more make a group.
    pub is_group_chat: Option<bool>,
    /// The other members (ids of existing users); the caller is always a member.
    #[serde(default)]
    #[schema(max_items = 999)]
    pub user_ids: Vec<i64>,
}

/// Checks that every id names an account; 422 lists those that do not.
async fn check_users_exist(state: &AppState, ids: &[i64]) -> Result<()> {
    let found: BTreeSet<i64> = db::users::existing_ids(&state.db, ids)
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

/// `POST /api/chats` — start a direct chat or a group.
///
/// Asking for a direct chat that exists returns it with 200; the database makes sure that a
/// pair of users has one direct chat, even under concurrent requests.
#[utoipa::path(post, path = "/api/chats", tag = "chats", security(("bearer" = [])),
    request_body = NewChat,
    responses(
        (status = 201, description = "The new chat", body = ChatView),
        (status = 200, description = "The existing direct chat", body = ChatView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing name, wrong member count, or unknown user ids", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_chat(
    user: AuthUser,
    State(state): State<AppState>,
    Json(body): Json<NewChat>,
) -> Result<impl IntoResponse> {
    let others: Vec<i64> = body
        .user_ids
        .iter()
        .copied()
        .filter(|id| *id != user.id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if others.len() + 1 > MAX_MEMBERS {
        return Err(Error::validation(
            "user_ids",
            format!("a chat has at most {MAX_MEMBERS} members"),
        ));
    }
    let is_group = body.is_group_chat.unwrap_or(others.len() != 1);
    if !is_group && others.len() != 1 {
        return Err(Error::validation(
            "user_ids",
            "a direct chat needs exactly one other user",
        ));
    }
    let name = if is_group {
        Some(ChatName::parse(body.name.unwrap_or_default())?)
    } else {
        None
    };
    check_users_exist(&state, &others).await?;

    let mut tx = state.db.begin().await?;
    let (chat, created) = match name {
        Some(name) => {
            let chat = db::chats::insert_group(&mut *tx, name.as_str(), user.id).await?;
            db::members::add(&mut *tx, chat.id, &[user.id], "admin").await?;
            db::members::add(&mut *tx, chat.id, &others, "member").await?;
            (chat, true)
        }
        None => {
            let key = db::chats::direct_key(user.id, others[0]);
            match db::chats::insert_direct(&mut *tx, &key, user.id).await? {
                Some(chat) => {
                    db::members::add(&mut *tx, chat.id, &[user.id, others[0]], "member").await?;
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
    tx.commit().await?;
    let view = view_for(&state, chat.id, user.id).await?;
    if created {
        tracing::info!(
            chat_id = chat.id,
            is_group,
            members = view.users.len(),
            "chat created"
        );
        let event = Event::ChatCreated {
            chat_id: chat.id,
            chat: ChatSummary::from(&view),
        };
        state.push.to_chat(chat.id, &event).await;
        Ok((StatusCode::CREATED, axum::Json(view)))
    } else {
        Ok((StatusCode::OK, axum::Json(view)))
    }
}

/// `GET /api/chats/{chat_id}` — one chat; members only.
#[utoipa::path(get, path = "/api/chats/{chat_id}", tag = "chats", security(("bearer" = [])),
    params(("chat_id" = i64, Path)),
    responses(
        (status = 200, description = "The chat", body = ChatView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_chat(
    user: AuthUser,
    State(state): State<AppState>,
    Path(chat_id): Path<i64>,
) -> Result<axum::Json<ChatView>> {
    view_for(&state, chat_id, user.id).await.map(axum::Json)
}

/// The caller's membership, which every chat route checks first.
pub async fn membership(state: &AppState, chat_id: i64, user_id: i64) -> Result<MemberChatRow> {
    db::chats::find_for_member(&state.db, chat_id, user_id)
        .await?
        .ok_or_else(chat_not_found)
}

fn require_group_admin(member: &MemberChatRow, what: &'static str) -> Result<()> {
    if !member.chat.is_group {
        return Err(Error::conflict(
            "direct_chat",
            "a direct chat has no name or admins, and its two members are fixed",
        ));
    }
    if member.role != "admin" {
        return Err(Error::Forbidden("not_admin", what));
    }
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatUpdate {
    /// 1–100 characters, not only white space.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: String,
}

/// `PUT /api/chats/{chat_id}` — rename a group; its admins only.
#[utoipa::path(put, path = "/api/chats/{chat_id}", tag = "chats", security(("bearer" = [])),
    params(("chat_id" = i64, Path)), request_body = ChatUpdate,
    responses(
        (status = 200, description = "The renamed chat", body = ChatView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A direct chat", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn rename_chat(
    user: AuthUser,
    State(state): State<AppState>,
    Path(chat_id): Path<i64>,
    Json(body): Json<ChatUpdate>,
) -> Result<axum::Json<ChatView>> {
    let member = membership(&state, chat_id, user.id).await?;
    require_group_admin(&member, "only the group's admins can rename it")?;
    let name = ChatName::parse(body.name)?;
    db::chats::rename(&state.db, chat_id, name.as_str()).await?;
    let view = view_for(&state, chat_id, user.id).await?;
    let event = Event::ChatUpdated {
        chat_id,
        chat: ChatSummary::from(&view),
    };
    state.push.to_chat(chat_id, &event).await;
    Ok(axum::Json(view))
}

/// `DELETE /api/chats/{chat_id}` — delete a chat and its messages: a group's admins, or
/// either member of a direct chat.
#[utoipa::path(delete, path = "/api/chats/{chat_id}", tag = "chats", security(("bearer" = [])),
    params(("chat_id" = i64, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin of the group", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_chat(
    user: AuthUser,
    State(state): State<AppState>,
    Path(chat_id): Path<i64>,
) -> Result<StatusCode> {
    let member = membership(&state, chat_id, user.id).await?;
    if member.chat.is_group && member.role != "admin" {
        return Err(Error::Forbidden(
            "not_admin",
            "only the group's admins can delete it",
        ));
    }
    // The connections must be found before the memberships go with the chat.
    let audience = db::connections::for_chat(&state.db, chat_id).await?;
    let scoped = db::connections::scoped_to(&state.db, chat_id).await?;
    db::chats::delete(&state.db, chat_id).await?;
    tracing::info!(chat_id, "chat deleted");
    state
        .push
        .to_connections(&audience, &Event::ChatDeleted { chat_id })
        .await;
    // Connections scoped to the chat have nothing more to receive.
    state.push.close(&scoped).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"user_ids": [..]}`, or the bare array older clients send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MemberList {
    Object { user_ids: Vec<i64> },
    Bare(Vec<i64>),
}

/// `POST /api/chats/{chat_id}/members` — add members to a group; its admins only. Users who
/// are members already are left as they are.
#[utoipa::path(post, path = "/api/chats/{chat_id}/members", tag = "chats", security(("bearer" = [])),
    params(("chat_id" = i64, Path)), request_body = MemberList,
    responses(
        (status = 200, description = "The chat with its members", body = ChatView),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat, or not a member", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A direct chat", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown user ids, or over 1,000 members", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_members(
    user: AuthUser,
    State(state): State<AppState>,
    Path(chat_id): Path<i64>,
    Json(body): Json<MemberList>,
) -> Result<axum::Json<ChatView>> {
    let ids = match body {
        MemberList::Object { user_ids } | MemberList::Bare(user_ids) => user_ids,
    };
    let ids: Vec<i64> = ids
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if ids.is_empty() {
        return Err(Error::validation("user_ids", "must name at least one user"));
    }
    let member = membership(&state, chat_id, user.id).await?;
    require_group_admin(&member, "only the group's admins can add members")?;
    if ids.len() > MAX_MEMBERS {
        return Err(Error::validation(
            "user_ids",
            format!("a chat has at most {MAX_MEMBERS} members"),
        ));
    }
    check_users_exist(&state, &ids).await?;
    let mut tx = state.db.begin().await?;
    // Serializes concurrent additions to one chat, so the member cap holds.
    db::chats::lock(&mut *tx, chat_id).await?;
    let added = db::members::add(&mut *tx, chat_id, &ids, "member").await?;
    if db::members::count(&mut *tx, chat_id).await? > MAX_MEMBERS as i64 {
        return Err(Error::validation(
            "user_ids",
            format!("a chat has at most {MAX_MEMBERS} members"),
        ));
    }
    if !added.is_empty() {
        db::chats::touch(&mut *tx, chat_id).await?;
    }
    tx.commit().await?;
    tracing::info!(chat_id, added = added.len(), "members added");
    let view = view_for(&state, chat_id, user.id).await?;
    if !added.is_empty() {
        let event = Event::MemberAdded {
            chat_id,
            user_ids: added,
            chat: ChatSummary::from(&view),
        };
        state.push.to_chat(chat_id, &event).await;
    }
    Ok(axum::Json(view))
}

/// What a removal did, for the caller and for the events that follow it.
pub struct Removal {
    /// The chat went with its last member.
    pub chat_deleted: bool,
    /// The member who became admin because the last admin left.
    pub new_admin: Option<i64>,
}

/// Removes `user_id` from a group, hands admin on when the last admin leaves, and deletes the
/// chat when nobody is left. The caller holds the transaction.
pub async fn remove_from_group(
    tx: &mut sqlx::PgConnection,
    chat_id: i64,
    user_id: i64,
) -> Result<Removal> {
    db::chats::lock(&mut *tx, chat_id).await?;
    if !db::members::remove(&mut *tx, chat_id, user_id).await? {
        return Err(Error::NotFound("that user is not a member of this chat"));
    }
    if db::members::count(&mut *tx, chat_id).await? == 0 {
        db::chats::delete(&mut *tx, chat_id).await?;
        return Ok(Removal {
            chat_deleted: true,
            new_admin: None,
        });
    }
    let new_admin = db::members::ensure_admin(&mut *tx, chat_id).await?;
    db::chats::touch(&mut *tx, chat_id).await?;
    Ok(Removal {
        chat_deleted: false,
        new_admin,
    })
}

/// `DELETE /api/chats/{chat_id}/members/{user_id}` — an admin removes a member, or a member
/// leaves. The last admin to leave hands admin to the longest-standing member; the last member
/// to leave deletes the chat.
#[utoipa::path(delete, path = "/api/chats/{chat_id}/members/{user_id}", tag = "chats", security(("bearer" = [])),
    params(("chat_id" = i64, Path), ("user_id" = i64, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing or invalid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, and not leaving", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat or member", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A direct chat", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove_member(
    user: AuthUser,
    State(state): State<AppState>,
    Path((chat_id, member_id)): Path<(i64, i64)>,
) -> Result<StatusCode> {
    let member = membership(&state, chat_id, user.id).await?;
    if member_id != user.id {
        require_group_admin(&member, "only the group's admins can remove other members")?;
    } else if !member.chat.is_group {
        return Err(Error::conflict(
            "direct_chat",
            "a direct chat's members are fixed; delete the chat instead",
        ));
    }
    // The removed member hears of it too, so the audience is found before the removal.
    let audience = db::connections::for_chat(&state.db, chat_id).await?;
    let mut tx = state.db.begin().await?;
    let removal = remove_from_group(&mut tx, chat_id, member_id).await?;
    tx.commit().await?;
    tracing::info!(
        chat_id,
        member_id,
        chat_deleted = removal.chat_deleted,
        "member removed"
    );
    let event = if removal.chat_deleted {
        Event::ChatDeleted { chat_id }
    } else {
        Event::MemberRemoved {
            chat_id,
            user_id: member_id,
            new_admin: removal.new_admin,
        }
    };
    state.push.to_connections(&audience, &event).await;
    // A connection scoped to a chat its user has left has nothing more to receive.
    let scoped = db::connections::scoped(&state.db, member_id, chat_id).await?;
    state.push.close(&scoped).await;
    Ok(StatusCode::NO_CONTENT)
}
