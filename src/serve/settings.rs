//! `[serve]`: the daemon's settings, below `config`, which assembles them into the settings file.

/// `[serve]` settings.
///
/// ```toml
/// [serve]
/// secure_cookies = true        # the gateway is reached over HTTPS (through a TLS proxy)
/// session_minutes = 720
/// ```
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Mark cookies `Secure` (only sent over HTTPS). Off by default: the office LAN often runs plain
    /// HTTP; turn it on behind a TLS proxy.
    pub secure_cookies: bool,
    /// A sign-in lasts this long (absolute, not sliding).
    pub session_minutes: u32,
    /// Failed sign-ins in a row for one user name from one address that cost no wait; after them the
    /// pair waits 1 s, 2 s, 4 s ... after its last failure (see `serve::signin`). Other addresses and
    /// other names are not slowed.
    #[serde(alias = "login_max_failures")]
    pub login_free_failures: u32,
    /// The longest wait of the backoff.
    pub login_backoff_max_secs: u64,
    /// Failures older than this are forgotten.
    #[serde(alias = "login_window_minutes")]
    pub login_forget_minutes: u32,
    /// Password checks (argon2id, 19 MiB each) running at once; more wait.
    pub login_checks_in_flight: usize,
    /// How long a sign-in waits for a check to start before it is answered 429.
    pub login_queue_ms: u64,
    /// Origins besides the request's own `Host` that may POST (e.g. `https://gateway.example.org`
    /// when a TLS proxy rewrites `Host`). A POST from any other `Origin` is refused.
    pub allowed_origins: Vec<String>,
    /// `/healthz` and `serve`'s start refuse a database whose file system has less free than this.
    pub min_free_mb: u64,
    /// How long the health check waits for the database writer to take its probe.
    pub health_timeout_secs: u64,
    /// Longest a request may take before it is answered 408. Uploads queue behind one writer: when
    /// every handheld of a district syncs at once, the last one waits for all the others.
    pub request_timeout_secs: u64,
    /// Largest request body: a handheld's read upload (the largest thing anyone sends).
    pub max_upload_bytes: usize,
    /// Largest body of any other request (clerk forms, sign-in).
    pub max_form_bytes: usize,
    /// On shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace_secs: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            secure_cookies: false,
            session_minutes: 12 * 60,
            login_free_failures: 5,
            login_backoff_max_secs: 300,
            login_forget_minutes: 24 * 60,
            login_checks_in_flight: 2,
            login_queue_ms: 2000,
            allowed_origins: Vec::new(),
            min_free_mb: 64,
            health_timeout_secs: 10,
            request_timeout_secs: 60,
            max_upload_bytes: 4 * 1024 * 1024,
            max_form_bytes: 64 * 1024,
            shutdown_grace_secs: 10,
        }
    }
}
