//! Tracing setup shared by the functions and the local gateway.

use tracing_subscriber::EnvFilter;

/// Installs a subscriber. In Lambda (`AWS_LAMBDA_FUNCTION_NAME` is set) logs are JSON and honour
/// `AWS_LAMBDA_LOG_LEVEL`; elsewhere they are human-readable and honour `RUST_LOG`.
pub fn init() {
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    let filter =
        EnvFilter::try_new(level.to_lowercase()).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = in_lambda
        && std::env::var("AWS_LAMBDA_LOG_FORMAT")
            .map(|f| !f.eq_ignore_ascii_case("text"))
            .unwrap_or(true);
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if json {
        builder
            .json()
            .with_current_span(false)
            .with_target(false)
            .without_time()
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
    // A second init (tests, or a host that installed its own subscriber) is not an error.
    let _ = result;
}
