//! The `maintenance` Lambda function: run by an EventBridge schedule, it purges the change log
//! (`GET /api/sync`) of entries past the retention. Whatever the event, the work is the same.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    blockchat::telemetry::init();
    let state = blockchat::AppState::from_env().await?;
    let state = &state;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let retention = state.config.limits.sync_retention;
        let deleted = blockchat::service::sync::purge(&state.db, retention).await?;
        Ok::<Value, lambda_runtime::Error>(json!({ "deleted": deleted }))
    }))
    .await
}
