//! API Gateway's HTTP API, as the functions see it.
//!
//! Every request becomes the payload-2.0 event that API Gateway would send, goes through
//! `lambda_http`'s own adapter into the very service the endpoint group's Lambda function runs,
//! and the function's response JSON becomes the HTTP response, as API Gateway would make it. So a
//! handler cannot tell the gateway from AWS, and a difference between the two shows up here first.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body as EventBody;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use blockchat::AppState;
use blockchat::http::{App, Group};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use http::header::{CONTENT_TYPE, COOKIE, HOST, SET_COOKIE, USER_AGENT};
use http::{HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use lambda_http::request::LambdaRequest;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::{Service, ServiceExt};

use crate::web::{WebClient, is_api_path};

/// API Gateway refuses request payloads above 10 MB before any function runs.
pub const MAX_PAYLOAD_BYTES: usize = 10 * 1024 * 1024;

/// The longest an HTTP API waits for an integration; then the client gets 503.
pub const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The account and API the events claim to come from; the same placeholders SAM uses locally.
pub const ACCOUNT_ID: &str = "123456789012";
pub const API_ID: &str = "1234567890";
pub const REGION: &str = "us-east-1";

/// The endpoint groups' services, one per Lambda function, built once as a cold start would.
#[derive(Clone)]
pub struct HttpApi {
    functions: Arc<Vec<(Group, App)>>,
    /// Served at every path outside `/api`, when set.
    web: Option<WebClient>,
}

impl HttpApi {
    pub fn new(state: &AppState) -> Self {
        let functions = Group::ALL
            .iter()
            .map(|group| (*group, blockchat::http::app(*group, state.clone())))
            .collect();
        Self {
            functions: Arc::new(functions),
            web: None,
        }
    }

    /// Also serves the web client at every path outside `/api`.
    pub fn with_web_client(mut self, web: WebClient) -> Self {
        self.web = Some(web);
        self
    }

    /// An axum router that answers every method and path, bound to the listener's port (API
    /// Gateway tells functions the port the client used, in `x-forwarded-port`).
    pub fn router(self, port: u16) -> axum::Router {
        axum::Router::new()
            .fallback(handle)
            .with_state(Served { api: self, port })
    }

    /// Answers one request as API Gateway would.
    pub async fn handle(&self, request: Request, client: SocketAddr, port: u16) -> Response {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        if let Some(web) = self.web.as_ref().filter(|_| !is_api_path(&path)) {
            let response = web.respond(&method, &path, request.headers());
            tracing::debug!(%method, path, status = response.status().as_u16(), "web client");
            return response;
        }
        let request_id = apigw_request_id();
        let group = Group::for_path(&percent_decode(&path));
        let origin = request.headers().contains_key(http::header::ORIGIN);
        if origin
            && method == http::Method::OPTIONS
            && request
                .headers()
                .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return cors_preflight();
        }

        let mut response = match self
            .dispatch(request, group, client, port, &request_id)
            .await
        {
            Ok(response) => response,
            Err(rejection) => {
                match &rejection {
                    Rejection::Function(cause) => {
                        tracing::error!(%method, path, function = group.name(), error = %cause, "function failed")
                    }
                    Rejection::Timeout => {
                        tracing::error!(%method, path, function = group.name(), "function timed out")
                    }
                    _ => {}
                }
                rejection.into_response()
            }
        };
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("apigw-requestid", value);
        }
        if origin {
            response.headers_mut().insert(
                http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        tracing::info!(
            %method,
            path,
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            function = group.name(),
            request_id,
            "http"
        );
        response
    }

    async fn dispatch(
        &self,
        request: Request,
        group: Group,
        client: SocketAddr,
        port: u16,
        request_id: &str,
    ) -> Result<Response, Rejection> {
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > MAX_PAYLOAD_BYTES as u64) {
            return Err(Rejection::TooLarge);
        }
        let body = match Limited::new(body, MAX_PAYLOAD_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => return Err(Rejection::TooLarge),
            Err(_) => return Err(Rejection::BadRequest),
        };

        let now = Utc::now();
        let trace_id = parts
            .headers
            .get("x-amzn-trace-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| trace_id(now));
        let event = api_gateway_event(
            &parts,
            &body,
            &EventSource {
                client,
                port,
                request_id,
                trace_id: &trace_id,
                time: now,
            },
        );
        let event: LambdaRequest = serde_json::from_value(event)
            .map_err(|e| Rejection::Function(format!("the event does not deserialize: {e}")))?;

        let function = self
            .functions
            .iter()
            .find(|(g, _)| *g == group)
            .map(|(_, app)| app.clone())
            .ok_or_else(|| Rejection::Function(format!("no function for {}", group.name())))?;
        let context = lambda_context(group, &trace_id, now);
        let response = tokio::time::timeout(INTEGRATION_TIMEOUT, invoke(function, event, context))
            .await
            .map_err(|_| Rejection::Timeout)?
            .map_err(Rejection::Function)?;
        http_response(response).map_err(Rejection::Function)
    }
}

#[derive(Clone)]
struct Served {
    api: HttpApi,
    port: u16,
}

async fn handle(
    State(served): State<Served>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    served.api.handle(request, client, served.port).await
}

/// Serves the HTTP API on `listener` until `shutdown` resolves, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    api: HttpApi,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let port = listener.local_addr()?.port();
    let app = api.router(port);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// What API Gateway answers itself, without (or instead of) the function's answer.
#[derive(Debug)]
enum Rejection {
    TooLarge,
    BadRequest,
    Timeout,
    Function(String),
}

impl Rejection {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Rejection::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
            Rejection::BadRequest => (StatusCode::BAD_REQUEST, "Bad Request"),
            Rejection::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
            Rejection::Function(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        };
        gateway_message(status, message)
    }
}

/// The HTTP API's CORS configuration (`CorsConfiguration` in template.yaml): API Gateway answers
/// preflight requests itself, without invoking a function.
pub const CORS_ALLOW_HEADERS: &str = "authorization,content-type";
pub const CORS_ALLOW_METHODS: &str = "GET,POST,PUT,PATCH,DELETE,OPTIONS";

fn cors_preflight() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        http::header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(CORS_ALLOW_HEADERS),
    );
    headers.insert(
        http::header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(CORS_ALLOW_METHODS),
    );
    response
}

fn gateway_message(status: StatusCode, message: &str) -> Response {
    let mut response = Response::new(Body::from(json!({ "message": message }).to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Where a request came from and when, for its event.
#[derive(Clone, Copy, Debug)]
pub struct EventSource<'a> {
    pub client: SocketAddr,
    /// The port the client connected to.
    pub port: u16,
    pub request_id: &'a str,
    pub trace_id: &'a str,
    pub time: DateTime<Utc>,
}

/// The payload-2.0 event API Gateway's HTTP API sends for this request on a `$default` route.
///
/// As API Gateway does: header names are lower case and repeated headers are joined with commas;
/// cookies move from the `cookie` header to `cookies`; `rawPath` and `requestContext.http.path`
/// are percent-decoded while `rawQueryString` is left as sent; `queryStringParameters` holds the
/// decoded values, repeated ones joined with commas; a body that is not UTF-8 is base64-encoded.
pub fn api_gateway_event(parts: &http::request::Parts, body: &[u8], source: &EventSource) -> Value {
    let path = percent_decode(parts.uri.path());
    let raw_query = parts.uri.query().unwrap_or("");

    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        if name == COOKIE {
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            );
            continue;
        }
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push(',');
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let client_ip = source.client.ip().to_string();
    let forwarded_for = match headers.get("x-forwarded-for") {
        Some(earlier) => format!("{earlier}, {client_ip}"),
        None => client_ip.clone(),
    };
    headers.insert("x-forwarded-for".into(), forwarded_for);
    headers.insert("x-forwarded-port".into(), source.port.to_string());
    headers.insert("x-forwarded-proto".into(), "http".into());
    headers.insert("x-amzn-trace-id".into(), source.trace_id.to_owned());
    let domain_name = headers
        .get(HOST.as_str())
        .cloned()
        .unwrap_or_else(|| format!("localhost:{}", source.port));
    headers
        .entry(HOST.as_str().to_owned())
        .or_insert_with(|| domain_name.clone());
    let domain_prefix = domain_name
        .split(['.', ':'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let user_agent = parts
        .headers
        .get(USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();

    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": domain_name,
            "domainPrefix": domain_prefix,
            "http": {
                "method": parts.method.as_str(),
                "path": path,
                "protocol": protocol(parts.version),
                "sourceIp": client_ip,
                "userAgent": user_agent,
            },
            "requestId": source.request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": source.time.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": source.time.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !raw_query.is_empty() {
        event["queryStringParameters"] = json!(query_parameters(raw_query));
    }
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => event["body"] = json!(text),
            Err(_) => {
                event["body"] = json!(STANDARD.encode(body));
                event["isBase64Encoded"] = json!(true);
            }
        }
    }
    event
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Decoded query parameters, repeated names joined with commas.
fn query_parameters(raw: &str) -> BTreeMap<String, String> {
    let mut parameters: BTreeMap<String, String> = BTreeMap::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(&name.replace('+', " "));
        let value = percent_decode(&value.replace('+', " "));
        parameters
            .entry(name)
            .and_modify(|joined| {
                joined.push(',');
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    parameters
}

/// `%XX` sequences decoded (malformed ones kept as they are), invalid UTF-8 replaced.
fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| char::from(b).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Lambda context of one invocation of `group`'s function.
fn lambda_context(group: Group, trace_id: &str, now: DateTime<Utc>) -> Context {
    let function_name = format!("blockchat-{}", group.name());
    let mut context = Context::default();
    context.request_id = uuid_v4();
    context.deadline = u64::try_from(
        (now + chrono::Duration::from_std(INTEGRATION_TIMEOUT).unwrap_or_default())
            .timestamp_millis(),
    )
    .unwrap_or(0);
    context.invoked_function_arn =
        format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}");
    context.xray_trace_id = Some(trace_id.to_owned());
    context.env_config = Arc::new(lambda_runtime::Config {
        function_name,
        memory: 128,
        version: "$LATEST".into(),
        log_stream: String::new(),
        log_group: String::new(),
    });
    context
}

/// Runs `function` on `event` through `lambda_http`'s adapter, as `lambda_http::run` does, and
/// reads its answer back the way API Gateway reads it: as JSON.
///
/// An error, a panic or an answer that does not serialize comes back as `Err`, as a failed
/// invocation does in Lambda.
pub async fn invoke<S, R>(
    function: S,
    event: LambdaRequest,
    context: Context,
) -> Result<ApiGatewayV2httpResponse, String>
where
    S: Service<lambda_http::Request, Response = R> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
    R: lambda_http::IntoResponse,
{
    // The adapter itself is not `Send` (it names the response type, and axum's body is not
    // `Sync`), so it is used up before the first await; only its future lives on.
    let call = {
        let mut adapter = lambda_http::Adapter::from(function);
        match adapter.ready().now_or_never() {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("the function is not ready".into()),
        }
        adapter.call(LambdaEvent::new(event, context))
    };
    let response = AssertUnwindSafe(call)
        .catch_unwind()
        .await
        .map_err(|panic| format!("the function panicked: {}", panic_message(&*panic)))?
        .map_err(|e| e.to_string())?;
    let json = serde_json::to_value(&response)
        .map_err(|e| format!("the response does not serialize: {e}"))?;
    serde_json::from_value(json)
        .map_err(|e| format!("the response is not an HTTP API response: {e}"))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The HTTP response API Gateway makes of a function's payload-2.0 answer.
pub fn http_response(answer: ApiGatewayV2httpResponse) -> Result<Response, String> {
    let status = u16::try_from(answer.status_code)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| format!("the function answered status {}", answer.status_code))?;
    let body = match answer.body {
        None | Some(EventBody::Empty) => Bytes::new(),
        Some(EventBody::Text(text)) if answer.is_base64_encoded => STANDARD
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(|e| format!("the function's base64 body is invalid: {e}"))?,
        Some(EventBody::Text(text)) => Bytes::from(text),
        Some(EventBody::Binary(bytes)) => Bytes::from(bytes),
        Some(_) => Bytes::new(),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in answer
        .headers
        .iter()
        .chain(answer.multi_value_headers.iter())
    {
        headers.append(name.clone(), value.clone());
    }
    for cookie in &answer.cookies {
        let value = HeaderValue::from_str(cookie)
            .map_err(|_| format!("the function set an invalid cookie: {cookie:?}"))?;
        headers.append(SET_COOKIE, value);
    }
    // The length is the body's own; a function's claim is not passed on.
    headers.remove(http::header::CONTENT_LENGTH);
    headers.remove(HeaderName::from_static("transfer-encoding"));
    Ok(response)
}

/// API Gateway's request ids look like `LV7fzho-PHcEJPw=`.
fn apigw_request_id() -> String {
    URL_SAFE.encode(random::<11>())
}

/// An X-Ray trace id: `Root=1-<epoch seconds in hex>-<96 random bits in hex>`.
fn trace_id(now: DateTime<Utc>) -> String {
    format!("Root=1-{:08x}-{}", now.timestamp(), hex(&random::<12>()))
}

fn uuid_v4() -> String {
    let mut b = random::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Ids only need to be unique, so a failing system RNG degrades to a time-based filler rather
/// than failing the request.
fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .to_le_bytes();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = nanos[i % nanos.len()] ^ (i as u8);
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(request: http::Request<()>) -> http::request::Parts {
        request.into_parts().0
    }

    fn source() -> EventSource<'static> {
        EventSource {
            client: "10.1.2.3:50000".parse().expect("address"),
            port: 3000,
            request_id: "LV7fzho-PHcEJPw=",
            trace_id: "Root=1-5e9f0c65-1de4d666d4dd26aced652b6c",
            time: DateTime::from_timestamp_millis(1_587_481_701_067).expect("time"),
        }
    }

    #[test]
    fn event_has_the_shape_api_gateway_sends() {
        let request = http::Request::builder()
            .method("POST")
            .uri("/api/a%20b/c?x=1&x=2&y=a%2Bb+c&flag")
            .header("Host", "127.0.0.1:3000")
            .header("User-Agent", "test/1.0")
            .header("X-Multi", "one")
            .header("X-Multi", "two")
            .header("Cookie", "a=1; b=2")
            .body(())
            .expect("request");
        let event = api_gateway_event(&parts(request), b"{\"k\":1}", &source());

        assert_eq!(event["version"], "2.0");
        assert_eq!(event["routeKey"], "$default");
        assert_eq!(event["rawPath"], "/api/a b/c");
        assert_eq!(event["rawQueryString"], "x=1&x=2&y=a%2Bb+c&flag");
        assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(event["headers"]["x-multi"], "one,two");
        assert_eq!(event["headers"]["host"], "127.0.0.1:3000");
        assert_eq!(event["headers"]["x-forwarded-for"], "10.1.2.3");
        assert_eq!(event["headers"]["x-forwarded-port"], "3000");
        assert!(event["headers"].get("cookie").is_none());
        assert_eq!(
            event["queryStringParameters"],
            json!({"x": "1,2", "y": "a+b c", "flag": ""})
        );
        let context = &event["requestContext"];
        assert_eq!(context["http"]["method"], "POST");
        assert_eq!(context["http"]["path"], "/api/a b/c");
        assert_eq!(context["http"]["protocol"], "HTTP/1.1");
        assert_eq!(context["http"]["sourceIp"], "10.1.2.3");
        assert_eq!(context["http"]["userAgent"], "test/1.0");
        assert_eq!(context["requestId"], "LV7fzho-PHcEJPw=");
        assert_eq!(context["stage"], "$default");
        assert_eq!(context["time"], "21/Apr/2020:15:08:21 +0000");
        assert_eq!(context["timeEpoch"], 1_587_481_701_067_i64);
        assert_eq!(context["accountId"], ACCOUNT_ID);
        assert_eq!(context["apiId"], API_ID);
        assert_eq!(context["domainName"], "127.0.0.1:3000");
        assert_eq!(event["body"], "{\"k\":1}");
        assert_eq!(event["isBase64Encoded"], false);

        let parsed: LambdaRequest = serde_json::from_value(event).expect("lambda_http reads it");
        assert!(matches!(parsed, LambdaRequest::ApiGatewayV2(_)));
    }

    #[test]
    fn binary_bodies_are_base64_and_empty_ones_absent() {
        let request = http::Request::builder()
            .uri("/api/x")
            .body(())
            .expect("request");
        let p = parts(request);
        let event = api_gateway_event(&p, &[0xff, 0x00, 0xfe], &source());
        assert_eq!(event["body"], STANDARD.encode([0xff, 0x00, 0xfe]));
        assert_eq!(event["isBase64Encoded"], true);

        let event = api_gateway_event(&p, b"", &source());
        assert!(event.get("body").is_none());
        assert!(event.get("queryStringParameters").is_none());
        assert!(event.get("cookies").is_none());
    }

    async fn echo(request: lambda_http::Request) -> Result<http::Response<String>, String> {
        use lambda_http::RequestExt;
        let query = request.query_string_parameters();
        let body = String::from_utf8_lossy(request.body().as_ref()).into_owned();
        Ok(http::Response::builder()
            .status(StatusCode::CREATED)
            .header("content-type", "application/json")
            .header("set-cookie", "session=abc; HttpOnly")
            .header("x-path", request.uri().path())
            .header("x-q", query.first("q").unwrap_or(""))
            .body(body)
            .expect("response"))
    }

    #[tokio::test]
    async fn a_function_answer_becomes_the_http_response() {
        let request = http::Request::builder()
            .method("PUT")
            .uri("/api/echo?q=hello%20there")
            .header("host", "localhost:3000")
            .body(())
            .expect("request");
        let event = api_gateway_event(&parts(request), b"payload", &source());
        let event: LambdaRequest = serde_json::from_value(event).expect("event");
        let answer = invoke(
            tower::service_fn(echo),
            event,
            lambda_context(Group::ALL[0], "Root=1-0-0", Utc::now()),
        )
        .await
        .expect("invocation");
        let response = http_response(answer).expect("response");
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()["x-path"], "/api/echo");
        assert_eq!(response.headers()["x-q"], "hello there");
        assert_eq!(response.headers()[SET_COOKIE], "session=abc; HttpOnly");
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(&body[..], b"payload");
    }

    #[tokio::test]
    async fn a_panicking_function_is_a_failed_invocation() {
        async fn boom(_: lambda_http::Request) -> Result<http::Response<String>, String> {
            panic!("boom")
        }
        let request = http::Request::builder()
            .uri("/api/x")
            .body(())
            .expect("request");
        let event = api_gateway_event(&parts(request), b"", &source());
        let event: LambdaRequest = serde_json::from_value(event).expect("event");
        let error = invoke(tower::service_fn(boom), event, Context::default())
            .await
            .expect_err("a panic fails the invocation");
        assert!(error.contains("boom"), "{error}");
    }

    #[test]
    fn binary_answers_are_decoded() {
        let answer: ApiGatewayV2httpResponse = serde_json::from_value(json!({
            "statusCode": 200,
            "headers": {"content-type": "application/octet-stream"},
            "multiValueHeaders": {},
            "cookies": [],
            "body": STANDARD.encode([1, 2, 255]),
            "isBase64Encoded": true,
        }))
        .expect("answer");
        let response = http_response(answer).expect("response");
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[test]
    fn percent_decoding_keeps_malformed_sequences() {
        assert_eq!(percent_decode("/a%20b%zz%4"), "/a b%zz%4");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
        assert_eq!(percent_decode("%"), "%");
    }

    #[test]
    fn request_ids_look_like_api_gateway_ones() {
        let id = apigw_request_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='));
        assert_eq!(uuid_v4().len(), 36);
    }
}
