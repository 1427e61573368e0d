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
            // Boxed: the handler's future is deep, and nesting it in the runtime's own future
            // overflows rustc's layout depth limit in optimised builds.
            let handled = Box::pin(blockchat::realtime::websocket::handle(state, event.payload));
            Ok::<ApiGatewayProxyResponse, lambda_runtime::Error>(handled.await)
        },
    ))
    .await
}
