//! The clerk's desk in a real browser: headless Chromium driven through chromedriver's WebDriver HTTP
//! API (JSON over ureq, the HTTP client the crate already uses: a handful of commands does not justify a
//! WebDriver crate and its async stack). The daemon runs in-process on 127.0.0.1:0.
//!
//! Without chromium and chromedriver the test is skipped, unless the `CI` variable is set: then it fails
//! (`.ci/run` installs them).

use meter_gateway::config::Config;
use meter_gateway::cycles;
use meter_gateway::demo::{self, DemoParams, Problem};
use meter_gateway::domain::UserRole;
use meter_gateway::serve::{self, AppState};
use meter_gateway::store::{Db, NewUserSecret, Store};
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(crate) fn find_in_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// Kills and reaps the process when dropped, also when the test fails half-way.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A blocking WebDriver client (ureq, one request per connection).
pub(crate) struct WebDriver {
    pub(crate) addr: SocketAddr,
    pub(crate) session: String,
}

/// The WebDriver client's agent: a connection within 5 s, each read of an answer within 60 s (a
/// command waits for the page), statuses as answers (WebDriver's errors are JSON bodies), and no
/// connection kept between requests (each test's chromedriver is killed with its browser).
fn agent() -> &'static ureq::Agent {
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .max_idle_connections(0)
            .build()
            .into()
    })
}

/// The largest WebDriver answer read (a full-page screenshot is a few MB of base64).
const MAX_ANSWER_BYTES: u64 = 256 << 20;

/// One WebDriver command: its `value` when the status is 200, else the status and the error `value`.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let url = format!("http://{addr}{path}");
    let sent = match (method, body) {
        ("GET", None) => agent().get(&url).call(),
        ("DELETE", None) => agent().delete(&url).call(),
        ("POST", Some(b)) => agent().post(&url).send_json(b),
        ("POST", None) => agent().post(&url).send_empty(),
        _ => {
            return Err(format!(
                "{method} {path}: not a WebDriver command this client sends"
            ))
        }
    };
    let mut response = sent.map_err(|e| e.to_string())?;
    let status = response.status();
    let raw = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|e| format!("{status}: {e}"))?;
    if status != ureq::http::StatusCode::OK {
        return Err(format!("{status} {path}: {}", v["value"]));
    }
    Ok(v["value"].clone())
}

impl WebDriver {
    pub(crate) fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let p = format!("/session/{}{path}", self.session);
        http(self.addr, method, &p, body.as_ref())
            .unwrap_or_else(|e| panic!("webdriver {method} {p}: {e}"))
    }

    pub(crate) fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub(crate) fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub(crate) fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    pub(crate) fn count(&self, css: &str) -> usize {
        let v = self.cmd(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        );
        v.as_array().map_or(0, Vec::len)
    }

    pub(crate) fn type_into(&self, element: &str, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    pub(crate) fn click(&self, element: &str) {
        self.cmd(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    pub(crate) fn script(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    pub(crate) fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }

    pub(crate) fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub(crate) fn screenshot(&self, to: &Path) {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().unwrap_or(""));
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(to, png).unwrap();
    }

    /// Waits (up to 10 s) until `check` holds: navigation after a click is asynchronous.
    pub(crate) fn wait(&self, what: &str, check: impl Fn(&WebDriver) -> bool) {
        let start = Instant::now();
        while !check(self) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}; at {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        let _ = http(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

pub(crate) fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver and a browser session, or `None` (the test is skipped) without a browser outside CI.
pub(crate) struct Browser {
    pub(crate) wd: WebDriver,
    _profile: tempfile::TempDir,
    _driver: KillOnDrop,
}

/// Chromium and chromedriver, or `None` (the test is skipped) when they are missing outside CI.
pub(crate) fn chromium_and_driver() -> Option<(PathBuf, PathBuf)> {
    let (Some(chromium), Some(driver)) = (
        find_in_path(&["chromium", "chromium-browser", "google-chrome"]),
        find_in_path(&["chromedriver"]),
    ) else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium and chromedriver are required in CI (apt-get install chromium chromium-driver)");
        }
        println!(
            "skipped: chromium or chromedriver not found (install chromium and chromium-driver)"
        );
        return None;
    };
    Some((chromium, driver))
}

/// A headless Chromium session of `window` ("W,H") on the browser profile in `profile` (a profile
/// used again keeps its storage: a phone restarted), and its chromedriver.
pub(crate) fn session(
    (chromium, driver): &(PathBuf, PathBuf),
    window: &str,
    profile: &Path,
) -> (WebDriver, KillOnDrop) {
    let port = free_port();
    let driver = KillOnDrop(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = Instant::now();
    while http(addr, "GET", "/status", None).map(|v| v["ready"] == json!(true)) != Ok(true) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let caps = json!({ "capabilities": { "alwaysMatch": { "browserName": "chrome", "goog:chromeOptions": {
        "binary": chromium.to_string_lossy(),
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars", format!("--window-size={window}"),
                 format!("--user-data-dir={}", profile.display())],
    }}}});
    let session = http(addr, "POST", "/session", Some(&caps)).expect("a browser session");
    (
        WebDriver {
            addr,
            session: session["sessionId"].as_str().unwrap().to_string(),
        },
        driver,
    )
}

pub(crate) fn browser(window: &str) -> Option<Browser> {
    let found = chromium_and_driver()?;
    let profile = tempfile::tempdir().unwrap();
    let (wd, driver) = session(&found, window, profile.path());
    Some(Browser {
        wd,
        _profile: profile,
        _driver: driver,
    })
}

/// The daemon, in-process on 127.0.0.1:0: its runtime, base URL, and how to stop it.
pub(crate) struct Daemon {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub(crate) fn daemon(state: &AppState) -> Daemon {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(serve::run(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    Daemon {
        rt,
        base,
        stop,
        server,
    }
}

impl Daemon {
    fn add_clerk(&self, state: &AppState, name: &str, password: &str) {
        let hash = serve::auth::hash_password(password).unwrap();
        let name = name.to_string();
        self.rt
            .block_on(state.db.call(move |s| {
                s.add_user(
                    &name,
                    UserRole::Clerk,
                    NewUserSecret::PasswordHash(&hash),
                    crate::fixture::now(),
                )
            }))
            .unwrap()
            .unwrap();
    }

    pub(crate) fn shut_down(self) {
        let _ = self.stop.send(());
        self.rt.block_on(self.server).unwrap().unwrap();
    }
}

/// A visitor knocks at `/`, is sent to the sign-in page, signs in, and lands on the exception queue.
fn sign_in_at_the_door(wd: &WebDriver, base: &str, name: &str, password: &str, cycle: &str) {
    wd.goto(&format!("{base}/"));
    wd.wait("the sign-in page", |w| w.url().ends_with("/login"));
    let field = wd.find("#name");
    wd.type_into(&field, name);
    let field = wd.find("#password");
    wd.type_into(&field, password);
    wd.click(&wd.find("form[action='/login'] button[type=submit]"));
    wd.wait("the exception queue", |w| {
        w.url().ends_with(&format!("/review/cycles/{cycle}"))
    });
}

#[test]
fn a_clerk_signs_in_opens_a_flagged_read_sees_its_chart_and_orders_a_reread() {
    let Some(browser) = browser("1280,1600") else {
        return;
    };
    let wd = &browser.wd;
    let d = crate::fixture::district();
    let daemon = daemon(&d.state);
    daemon.add_clerk(&d.state, "ann", crate::fixture::CLERK_PASSWORD);
    let base = daemon.base.clone();

    // A page asked for without a session goes to the sign-in page, and back to it after.
    wd.goto(&format!("{base}/review/reads/{}", d.normal));
    wd.wait("the sign-in page", |w| w.url().contains("/login?next="));
    // The door: `/` leads to the sign-in page, which lands on the queue.
    sign_in_at_the_door(
        wd,
        &base,
        "ann",
        crate::fixture::CLERK_PASSWORD,
        crate::fixture::CYCLE,
    );
    assert!(
        wd.count("#queue tbody tr") >= 2,
        "the flagged reads are listed"
    );
    // Signed in, the door leads to the queue.
    wd.goto(&format!("{base}/"));
    wd.wait("the exception queue", |w| {
        w.url()
            .ends_with(&format!("/review/cycles/{}", crate::fixture::CYCLE))
    });

    // The keyboard: j moves to the second row and focuses its link.
    let body = wd.find("body");
    wd.type_into(&body, "j");
    let focused = wd.script("return document.activeElement.getAttribute('href')");
    let second =
        wd.script("return document.querySelectorAll('#queue tbody tr a')[1].getAttribute('href')");
    assert_eq!(focused, second, "j moves the selection");

    // Open the flagged high read and look at its chart.
    wd.click(&wd.find(&format!("a[href='/review/reads/{}']", d.high)));
    wd.wait("the read's page", |w| {
        w.url().ends_with(&format!("/review/reads/{}", d.high))
    });
    assert_eq!(wd.count("svg#history-chart"), 1, "the chart is there");
    let bars = wd.count("svg#history-chart rect.bar");
    assert!(bars >= 24, "one bar per period: {bars}");
    assert_eq!(wd.count("svg#history-chart rect.bar.current"), 1);
    let height = wd.script(
        "return document.querySelector('svg#history-chart rect.bar.current').getBBox().height",
    );
    assert!(
        height.as_f64().unwrap_or(0.0) > 1.0,
        "this read's bar is drawn: {height}"
    );

    // Order a re-read.
    let field = wd.find("input[name=instructions]");
    wd.type_into(&field, "check for a leak at the hose bib");
    wd.click(&wd.find("#order-reread"));
    wd.wait("the confirmation", |w| {
        w.source().contains("Re-read ordered")
    });
    // Under the build's target directory (`target/tmp/` in a plain checkout), which always exists.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("review-screenshot.png");
    wd.screenshot(&shot);
    let orders: i64 = crate::fixture::sql(&d)
        .query_row(
            "SELECT count(*) FROM field_orders WHERE kind = 'reread' AND read_id = ?1",
            [d.high],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orders, 1);

    drop(browser);
    daemon.shut_down();
    println!("screenshot: {}", shot.display());
}

/// The README's screenshots: a demo district as of today (the handhelds' reads of two routes judged
/// this morning), its exception queue and a planted leak's page, as a clerk sees them after signing in
/// at the door. Written under the target directory; with `UPDATE_SCREENSHOTS=1`, also copied to
/// `docs/queue.png` and `docs/read.png` (commit them).
#[test]
fn the_readme_screenshots_show_a_demo_districts_queue_and_a_leak() {
    let Some(browser) = browser("1280,900") else {
        return;
    };
    let wd = &browser.wd;
    let dir = tempfile::tempdir().unwrap();
    let today = chrono::Local::now().date_naive();
    let district = demo::generate(&DemoParams {
        accounts: 1_300,
        seed: 2026,
        as_of: today,
    });
    let cycle = district.cycle.id.clone();
    let path = dir.path().join("demo.db");
    let leak = {
        let mut store = Store::open(&path).unwrap();
        demo::load(&mut store, &district).unwrap();
        let now = crate::fixture::now();
        district.open_cycle(&mut store, now).unwrap();
        let routes: Vec<String> = district.routes[..2].iter().map(|r| r.id.clone()).collect();
        let upload = crate::demo::handheld_upload(&district, &routes);
        cycles::ingest(&mut store, &Config::default(), &cycle, &upload, now).unwrap();
        let leaks: Vec<String> = district
            .on_handheld_routes(&routes)
            .truth
            .into_iter()
            .filter(|t| t.problem == Problem::ConfirmedLeak)
            .map(|t| t.meter_id)
            .collect();
        let reads = store.cycle_reads(&cycle).unwrap();
        reads
            .iter()
            .find(|r| leaks.contains(&r.meter_id) && !r.flags.is_empty())
            .expect("a flagged confirmed leak")
            .read_id
    };
    let state = serve::test_state(Db::open(&path).unwrap());
    let daemon = daemon(&state);
    daemon.add_clerk(&state, "clerk", "a long demo password");
    sign_in_at_the_door(wd, &daemon.base, "clerk", "a long demo password", &cycle);
    assert!(wd.count("#queue tbody tr") >= 20, "the flagged reads");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let queue = shots.join("queue.png");
    wd.screenshot(&queue);
    wd.click(&wd.find(&format!("a[href='/review/reads/{leak}']")));
    wd.wait("the leak's page", |w| {
        w.url().ends_with(&format!("/review/reads/{leak}"))
    });
    assert_eq!(wd.count("svg#history-chart rect.bar.current"), 1);
    // Tall enough for the history chart below the read.
    wd.resize(1280, 1500);
    let read = shots.join("read.png");
    wd.screenshot(&read);
    drop(browser);
    daemon.shut_down();
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&queue, docs.join("queue.png")).unwrap();
        std::fs::copy(&read, docs.join("read.png")).unwrap();
        println!("screenshots copied to {}", docs.display());
    }
    println!("screenshots: {} {}", queue.display(), read.display());
}
