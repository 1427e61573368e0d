//! `bench-hello`: the cold-start baseline, a Lambda function that only answers `{}`.
//!
//! Built with the same profile and the same `lambda_runtime` as the product's functions, it is
//! what the runtime and the process cost before any code of ours runs.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async {
        Ok::<Value, Error>(Value::Object(serde_json::Map::new()))
    }))
    .await
}
