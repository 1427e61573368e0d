//! One headless Chromium for the whole test, and a person: an incognito context with one page
//! on the web client, with the few things a person does (fill, click, type, press Enter) and
//! waits for what they would see. Every page's console errors, exceptions and failed requests
//! are collected, to be asserted absent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::browser::BrowserConfig;
use chromiumoxide::cdp::IntoEventKind;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::input::{
    DispatchKeyEventParams, DispatchKeyEventType, InsertTextParams,
};
use chromiumoxide::cdp::browser_protocol::log::{EventEntryAdded, LogEntryLevel, LogEntrySource};
use chromiumoxide::cdp::browser_protocol::network::{
    self, EventLoadingFailed, EventRequestWillBeSent, EventResponseReceived, SetBlockedUrLsParams,
};
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::listeners::EventStream;
use chromiumoxide::page::ScreenshotParams;
use futures::StreamExt;
use serde_json::Value;

use crate::common::{TestApp, test_dir};

/// How long a person waits for something to show before the step fails.
const PATIENCE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);
const PASSWORD: &str = "correct horse battery staple";

/// The browser, and the task that carries its DevTools messages.
pub struct Browser {
    inner: chromiumoxide::Browser,
    handler: tokio::task::JoinHandle<()>,
    /// The browser's profile folder, removed at the end.
    profile: PathBuf,
}

/// Where Chromium is: `CHROME` or `CHROMIUM`, else the first of the usual names on `PATH`.
fn find_chromium() -> PathBuf {
    for variable in ["CHROME", "CHROMIUM"] {
        if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the web client's tests need Chromium and found none: install it (`apt-get install \
         chromium` on Debian or Ubuntu) or set CHROME to the browser's path"
    );
}

impl Browser {
    pub async fn launch() -> Self {
        let executable = find_chromium();
        let profile = test_dir().join(format!("chromium-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let mut config = BrowserConfig::builder()
            .chrome_executable(&executable)
            .new_headless_mode()
            .user_data_dir(&profile)
            .viewport(None)
            .window_size(1280, 800)
            .launch_timeout(Duration::from_secs(60))
            .arg("--disable-gpu")
            .arg("--disable-dev-shm-usage");
        // Chromium's sandbox refuses to run as root.
        if nix::unistd::geteuid().is_root() {
            config = config.no_sandbox();
        }
        let config = config.build().expect("browser configuration");
        let (inner, mut handler) = chromiumoxide::Browser::launch(config)
            .await
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", executable.display()));
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Self {
            inner,
            handler,
            profile,
        }
    }

    /// A person with a browser of their own (an incognito context) on the web client's page.
    pub async fn person(&self, app: &TestApp, username: &str) -> Person {
        let context = self
            .inner
            .create_browser_context(CreateBrowserContextParams::default())
            .await
            .expect("browser context");
        let page = self
            .inner
            .new_page(
                CreateTargetParams::builder()
                    .url("about:blank")
                    .browser_context_id(context)
                    .build()
                    .expect("target"),
            )
            .await
            .expect("page");
        let person = Person {
            username: username.to_owned(),
            page,
            problems: Arc::new(Mutex::new(Vec::new())),
            allowed: Mutex::new(Vec::new()),
            offline_once: Mutex::new(false),
        };
        person.watch().await;
        person.set_viewport(1100, 760, false).await;
        person
            .page
            .goto(app.url("/"))
            .await
            .expect("the web client loads");
        person.wait_for_visible("#login-form").await;
        person
    }

    pub async fn close(mut self) {
        let _ = self.inner.close().await;
        let _ = self.inner.wait().await;
        self.handler.abort();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Something that went wrong in a page.
#[derive(Debug, Clone)]
struct Problem {
    what: String,
    url: String,
    status: Option<i64>,
}

pub struct Person {
    pub username: String,
    page: Page,
    problems: Arc<Mutex<Vec<Problem>>>,
    /// Failures a step provokes on purpose: (path, status).
    allowed: Mutex<Vec<(String, i64)>>,
    /// Set once a step takes the network away: requests then in flight fail, as they should.
    offline_once: Mutex<bool>,
}

impl Person {
    /// Collects console errors, uncaught exceptions, failed requests and error answers.
    async fn watch(&self) {
        let problems = self.problems.clone();
        let mut console = listen::<EventConsoleApiCalled>(&self.page).await;
        let mut exceptions = listen::<EventExceptionThrown>(&self.page).await;
        let mut logs = listen::<EventEntryAdded>(&self.page).await;
        let mut requests = listen::<EventRequestWillBeSent>(&self.page).await;
        let mut responses = listen::<EventResponseReceived>(&self.page).await;
        let mut failures = listen::<EventLoadingFailed>(&self.page).await;
        tokio::spawn(async move {
            let mut urls: HashMap<String, String> = HashMap::new();
            loop {
                let problem = tokio::select! {
                    Some(event) = console.next() => {
                        if !matches!(event.r#type, ConsoleApiCalledType::Error | ConsoleApiCalledType::Assert) {
                            continue;
                        }
                        let text: Vec<String> = event.args.iter().map(|a| {
                            a.value.as_ref().map(Value::to_string)
                                .or_else(|| a.description.clone()).unwrap_or_default()
                        }).collect();
                        Problem { what: format!("console.error: {}", text.join(" ")), url: String::new(), status: None }
                    }
                    Some(event) = exceptions.next() => {
                        let details = &event.exception_details;
                        let description = details.exception.as_ref()
                            .and_then(|e| e.description.clone()).unwrap_or_else(|| details.text.clone());
                        Problem { what: format!("exception: {description}"), url: details.url.clone().unwrap_or_default(), status: None }
                    }
                    Some(event) = logs.next() => {
                        // Network errors are reported below, with their request.
                        if event.entry.level != LogEntryLevel::Error || event.entry.source == LogEntrySource::Network {
                            continue;
                        }
                        Problem { what: format!("log: {}", event.entry.text), url: event.entry.url.clone().unwrap_or_default(), status: None }
                    }
                    Some(event) = requests.next() => {
                        urls.insert(event.request_id.inner().clone(), event.request.url.clone());
                        continue;
                    }
                    Some(event) = responses.next() => {
                        if event.response.status < 400 {
                            continue;
                        }
                        Problem { what: "error answer".into(), url: event.response.url.clone(), status: Some(event.response.status) }
                    }
                    Some(event) = failures.next() => {
                        // A reload cancels what was in flight; that is no failure.
                        if event.canceled == Some(true) {
                            continue;
                        }
                        let url = urls.get(event.request_id.inner()).cloned().unwrap_or_default();
                        Problem { what: format!("request failed: {}", event.error_text), url, status: None }
                    }
                    else => break,
                };
                if let Ok(mut problems) = problems.lock() {
                    problems.push(problem);
                }
            }
        });
    }

    /// Allows answers with `status` to requests whose path ends with `path`: a step provokes them.
    pub fn expect_failure(&self, path: &str, status: i64) {
        self.allowed
            .lock()
            .expect("allowed")
            .push((path.to_owned(), status));
    }

    /// Whether the page got an answer with `status` to a request whose path ends with `path`.
    pub fn was_answered(&self, path: &str, status: i64) -> bool {
        self.problems.lock().expect("problems").iter().any(|p| {
            p.status == Some(status) && p.url.split('?').next().unwrap_or_default().ends_with(path)
        })
    }

    pub async fn assert_no_problems(&self) {
        let allowed = self.allowed.lock().expect("allowed").clone();
        let offline_once = *self.offline_once.lock().expect("offline");
        let problems: Vec<Problem> = self
            .problems
            .lock()
            .expect("problems")
            .iter()
            .filter(|p| {
                !(offline_once
                    && (p.what.contains("net::ERR_INTERNET_DISCONNECTED")
                        || p.what.contains("net::ERR_BLOCKED_BY_CLIENT")))
            })
            .filter(|p| {
                let path = p.url.split('?').next().unwrap_or_default();
                !allowed
                    .iter()
                    .any(|(end, status)| path.ends_with(end.as_str()) && p.status == Some(*status))
            })
            .cloned()
            .collect();
        let described: Vec<String> = problems
            .iter()
            .map(|p| match p.status {
                Some(status) => format!("{} {status} {}", p.what, p.url),
                None => format!("{} {}", p.what, p.url),
            })
            .collect();
        assert!(
            described.is_empty(),
            "{}'s page had problems:\n{}",
            self.username,
            described.join("\n")
        );
    }

    // --- what a person does -----------------------------------------------------------------

    /// Registers through the form, which logs in too.
    pub async fn register(&self) {
        self.click("#tab-register").await;
        self.fill("#register-username", &self.username).await;
        self.fill("#register-email", &format!("{}@example.com", self.username))
            .await;
        self.fill("#register-password", PASSWORD).await;
        self.click("#register-form button[type=submit]").await;
        self.wait_for_text("#me-name", &self.username).await;
        self.wait_for_text("#connection", "Connected").await;
    }

    /// Empties a field and types into it.
    pub async fn fill(&self, selector: &str, text: &str) {
        self.replace_text(selector, text).await;
    }

    /// Focuses a field and types at its end, as the keyboard would (input events included).
    pub async fn type_text(&self, selector: &str, text: &str) {
        self.type_into(
            selector,
            "e.setSelectionRange(e.value.length, e.value.length)",
            text,
        )
        .await;
    }

    /// Selects a field's text and types over it.
    pub async fn replace_text(&self, selector: &str, text: &str) {
        self.type_into(selector, "e.select()", text).await;
    }

    /// Focuses the field `e`, places the caret with `caret`, and types `text`.
    async fn type_into(&self, selector: &str, caret: &str, text: &str) {
        self.wait_for_visible(selector).await;
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); e.focus(); {caret}; return true; }})()",
            js(selector)
        ))
        .await;
        self.page
            .execute(InsertTextParams::new(text))
            .await
            .expect("type");
    }

    pub async fn press_enter(&self) {
        for kind in [DispatchKeyEventType::KeyDown, DispatchKeyEventType::KeyUp] {
            let mut key = DispatchKeyEventParams::new(kind);
            key.key = Some("Enter".into());
            key.code = Some("Enter".into());
            key.windows_virtual_key_code = Some(13);
            key.native_virtual_key_code = Some(13);
            if matches!(key.r#type, DispatchKeyEventType::KeyDown) {
                key.text = Some("\r".into());
            }
            self.page.execute(key).await.expect("key");
        }
    }

    /// Clicks the first visible element that matches.
    pub async fn click(&self, selector: &str) {
        self.wait_for_visible(selector).await;
        self.eval(&format!(
            "(() => {{ const e = [...document.querySelectorAll({})].find(e => e.getClientRects().length > 0); \
             e.click(); return true; }})()",
            js(selector)
        ))
        .await;
    }

    /// Clicks the first visible element that matches and whose text contains `text`.
    pub async fn click_containing(&self, selector: &str, text: &str) {
        self.wait_for_text(selector, text).await;
        self.eval(&format!(
            "(() => {{ const b = [...document.querySelectorAll({})]\
             .find(b => b.getClientRects().length > 0 && b.textContent.includes({})); b.click(); return true; }})()",
            js(selector),
            js(text)
        ))
        .await;
    }

    /// Picks an option of a `<select>`, as a person would (a `change` event follows).
    pub async fn choose(&self, selector: &str, value: &str) {
        self.wait_for_visible(selector).await;
        self.eval(&format!(
            "(() => {{ const s = document.querySelector({}); s.value = {}; \
             s.dispatchEvent(new Event('change', {{ bubbles: true }})); return true; }})()",
            js(selector),
            js(value)
        ))
        .await;
    }

    /// Scrolls a box to its top, as a person looking for older messages would.
    pub async fn scroll_to_top(&self, selector: &str) {
        self.eval(&format!(
            "(() => {{ document.querySelector({}).scrollTop = 0; return true; }})()",
            js(selector)
        ))
        .await;
    }

    /// Types a message and sends it with the Send button; it shows at once, then the API's
    /// answer confirms it.
    pub async fn send(&self, text: &str) {
        self.type_text("#composer-input", text).await;
        self.click("#send").await;
        self.wait_for_message(text).await;
        self.wait_until(
            &format!(
                "[...document.querySelectorAll('#message-list .message:not(.pending) .bubble')]\
                 .some(b => b.textContent === {})",
                js(text)
            ),
            &format!("{text:?} confirmed"),
        )
        .await;
    }

    /// Starts a direct chat (one name) or a group (several, with its name).
    pub async fn start_chat(&self, usernames: &[&str], group_name: Option<&str>) {
        self.click("#new-chat").await;
        for username in usernames {
            self.fill("#user-search", username).await;
            self.click_containing("#user-results button", &format!("@{username}"))
                .await;
            self.wait_for_text("#picked", username).await;
        }
        if let Some(name) = group_name {
            self.fill("#group-name", name).await;
        }
        self.click("#create-chat").await;
        self.wait_until_hidden("#new-chat-dialog").await;
    }

    /// Opens the chat of that name from the list.
    pub async fn open_chat(&self, name: &str) {
        self.wait_for_text("#chat-list .name", name).await;
        self.eval(&format!(
            "(() => {{ const n = [...document.querySelectorAll('#chat-list .name')]\
             .find(n => n.textContent === {}); n.closest('button').click(); return true; }})()",
            js(name)
        ))
        .await;
        self.wait_for_text("#chat-title", name).await;
    }

    /// Clicks a message's action button (`Edit`, `Delete`).
    pub async fn message_action(&self, text: &str, action: &str) {
        self.wait_for_message(text).await;
        self.eval(&format!(
            "(() => {{ const m = [...document.querySelectorAll('#message-list .message')]\
             .find(m => m.querySelector('.bubble').textContent === {}); \
             [...m.querySelectorAll('.actions button')].find(b => b.textContent === {}).click(); \
             return true; }})()",
            js(text),
            js(action)
        ))
        .await;
    }

    /// The network goes away: the gateway drops the page's sockets without a goodbye (as a lost
    /// connection leaves them) and new ones cannot reach it until [`Person::regain_network`].
    /// The WebSocket API is blocked first, then the page notices the drop, then it goes offline
    /// (offline emulation alone can hold back the close of an open socket, and lets some
    /// WebSocket handshakes through).
    pub async fn lose_network(&self, app: &TestApp) {
        *self.offline_once.lock().expect("offline") = true;
        let blocked =
            network::BlockPattern::new(format!("ws://{}/*", app.gateway().ws_addr()), true);
        self.page
            .execute(SetBlockedUrLsParams::builder().url_pattern(blocked).build())
            .await
            .expect("block the WebSocket API");
        let connections: Vec<String> =
            sqlx::query_scalar("SELECT connection_id FROM ws_connections WHERE user_id = $1")
                .bind(self.user_id(app).await)
                .fetch_all(&app.db.pool)
                .await
                .expect("connections");
        let live = connections
            .iter()
            .filter(|id| app.gateway().websocket_api().drop_without_disconnect(id))
            .count();
        assert!(live > 0, "{} has a live socket", self.username);
        self.wait_for_text("#connection", "Reconnecting").await;
        self.set_offline(true).await;
    }

    /// The network is back: the page is online and may reach the WebSocket API again.
    pub async fn regain_network(&self) {
        self.page
            .execute(SetBlockedUrLsParams::builder().build())
            .await
            .expect("unblock");
        self.set_offline(false).await;
    }

    /// Takes the page's network away (or gives it back). `Network.emulateNetworkConditions` is
    /// deprecated, but its successor, `overrideNetworkState`, lets WebSockets connect while
    /// "offline".
    #[allow(deprecated)]
    pub async fn set_offline(&self, offline: bool) {
        if offline {
            *self.offline_once.lock().expect("offline") = true;
        }
        self.page
            .execute(network::EmulateNetworkConditionsParams::new(
                offline, 0.0, -1.0, -1.0,
            ))
            .await
            .expect("network state");
    }

    pub async fn reload(&self) {
        self.page.reload().await.expect("reload");
    }

    pub async fn set_viewport(&self, width: i64, height: i64, mobile: bool) {
        self.page
            .execute(SetDeviceMetricsOverrideParams::new(
                width, height, 1.0, mobile,
            ))
            .await
            .expect("viewport");
    }

    pub async fn screenshot(&self, path: &Path) {
        let png = self
            .page
            .screenshot(
                ScreenshotParams::builder()
                    .format(CaptureScreenshotFormat::Png)
                    .build(),
            )
            .await
            .expect("screenshot");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// The person's user id, as the API knows it.
    pub async fn user_id(&self, app: &TestApp) -> i64 {
        sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
            .bind(&self.username)
            .fetch_one(&app.db.pool)
            .await
            .expect("user id")
    }

    /// The access token the client holds now.
    pub async fn access_token(&self) -> String {
        self.eval(SESSION_TOKEN_JS)
            .await
            .as_str()
            .expect("a stored session")
            .to_owned()
    }

    pub async fn wait_for_new_access_token(&self, old: &str) {
        self.wait_until(
            &format!("{SESSION_TOKEN_JS} !== {}", js(old)),
            "a refreshed access token",
        )
        .await;
    }

    // --- what a person sees -----------------------------------------------------------------

    pub async fn wait_for_text(&self, selector: &str, text: &str) {
        self.wait_until(
            &format!(
                "[...document.querySelectorAll({})].some(e => e.getClientRects().length > 0 && e.textContent.includes({}))",
                js(selector),
                js(text)
            ),
            &format!("{text:?} in {selector}"),
        )
        .await;
    }

    pub async fn wait_for_visible(&self, selector: &str) {
        self.wait_until(
            &format!(
                "[...document.querySelectorAll({})].some(e => e.getClientRects().length > 0 || e.open)",
                js(selector)
            ),
            &format!("{selector} on screen"),
        )
        .await;
    }

    pub async fn wait_until_hidden(&self, selector: &str) {
        self.wait_until(
            &format!(
                "(() => {{ const e = document.querySelector({}); return !e || !(e.getClientRects().length > 0 || e.open); }})()",
                js(selector)
            ),
            &format!("{selector} gone from screen"),
        )
        .await;
    }

    pub async fn wait_until_no_text(&self, selector: &str, text: &str) {
        self.wait_until(
            &format!(
                "![...document.querySelectorAll({})].some(e => e.getClientRects().length > 0 && e.textContent.includes({}))",
                js(selector),
                js(text)
            ),
            &format!("no {text:?} in {selector}"),
        )
        .await;
    }

    pub async fn wait_until_empty(&self, selector: &str) {
        self.wait_until(
            &format!(
                "document.querySelector({}).textContent.trim() === ''",
                js(selector)
            ),
            &format!("{selector} empty"),
        )
        .await;
    }

    pub async fn wait_until_absent(&self, selector: &str) {
        self.wait_until(
            &format!(
                "![...document.querySelectorAll({})].some(e => e.getClientRects().length > 0)",
                js(selector)
            ),
            &format!("no {selector}"),
        )
        .await;
    }

    pub async fn wait_for_message(&self, text: &str) {
        self.wait_until(
            &format!("{} > 0", count_messages_js(text)),
            &format!("the message {text:?}"),
        )
        .await;
    }

    pub async fn wait_until_no_message(&self, text: &str) {
        self.wait_until(
            &format!("{} === 0", count_messages_js(text)),
            &format!("no message {text:?}"),
        )
        .await;
    }

    pub async fn assert_no_message(&self, text: &str) {
        assert_eq!(
            self.count_messages(text).await,
            0,
            "{} sees {text:?} already",
            self.username
        );
    }

    pub async fn count_messages(&self, text: &str) -> u64 {
        self.eval(&count_messages_js(text))
            .await
            .as_u64()
            .expect("a count")
    }

    async fn wait_until(&self, condition: &str, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.eval(&format!("Boolean({condition})")).await == Value::Bool(true) {
                return;
            }
            if Instant::now() >= deadline {
                let shown = self.eval("document.body.innerText").await;
                panic!(
                    "{} did not see {what} within {PATIENCE:?}; the page shows:\n{}",
                    self.username,
                    shown.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn eval(&self, expression: &str) -> Value {
        self.page
            .evaluate(expression)
            .await
            .unwrap_or_else(|e| panic!("{}: {expression}: {e}", self.username))
            .value()
            .cloned()
            .unwrap_or(Value::Null)
    }
}

async fn listen<T: IntoEventKind + Unpin>(page: &Page) -> EventStream<T> {
    page.event_listener::<T>()
        .await
        .unwrap_or_else(|e| panic!("cannot listen to {}: {e}", std::any::type_name::<T>()))
}

/// The access token the client keeps with its session.
const SESSION_TOKEN_JS: &str = "JSON.parse(localStorage.getItem('blockchat.session')).accessToken";

/// The script that counts the conversation's messages showing exactly `text`.
fn count_messages_js(text: &str) -> String {
    format!(
        "[...document.querySelectorAll('#message-list .message .bubble')].filter(b => b.textContent === {}).length",
        js(text)
    )
}

/// A JavaScript string literal.
fn js(text: &str) -> String {
    serde_json::to_string(text).expect("a string")
}
