//! The `chats` Lambda function: the `/api/chats` endpoints, served by the library's router.

use blockchat::http::{Group, app};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    blockchat::telemetry::init();
    let state = blockchat::AppState::from_env().await?;
    lambda_http::run(app(Group::Chats, state)).await
}
