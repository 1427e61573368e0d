//! The `websocket` Lambda function: the WebSocket API's `$connect`, `$disconnect` and
//! `$default` routes, handled by the library.
//!
//! `lambda_runtime` with the WebSocket event type, not `lambda_http`: the latter reads some
//! WebSocket events as REST ones and loses the connection id.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    blockchat::telemetry::init();
    let state = blockchat::AppState::from_env().await?;
    let state = &state;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<ApiGatewayProxyResponse, lambda_runtime::Error>(
                blockchat::realtime::websocket::handle(state, event.payload).await,
            )
        },
    ))
    .await
}
