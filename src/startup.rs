//! Builds a node from its configuration, binds it (port 0 in tests), and runs it until a graceful shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use poem::endpoint::{EmbeddedFileEndpoint, EmbeddedFilesEndpoint};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route, Server};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::bus::{MemoryBus, RedisBus, RedisWriter, SharedBus};
use crate::config::Config;
use crate::inbox::{DatabaseInbox, RedisInbox, SharedInbox};
use crate::media::{LocalMedia, S3Media, SharedMedia};
use crate::metrics::Metrics;
use crate::service::accounts::Accounts;
use crate::service::auth::{PasswordHasherPool, TokenService};
use crate::service::events::Events;
use crate::service::friends::Friends;
use crate::service::groups::Groups;
use crate::service::health::Health;
use crate::service::media::Media;
use crate::service::messaging::{Messaging, Windows};
use crate::service::presence::Presence;
use crate::service::ratelimit::RateLimits;
use crate::state::{AppState, Parts};
use crate::store::Stores;
use crate::ws::hub::Hub;

/// Largest JSON request body the REST API reads.
pub const MAX_JSON_BODY: usize = 256 * 1024;

#[derive(rust_embed::RustEmbed)]
#[folder = "web/"]
struct WebAssets;

/// The next web client (issue 20, growing beside `web/` until it replaces it): `webapp/`'s Vite build, committed
/// so that a machine with only Rust serves it; `scripts/test.sh` rebuilds it and fails when the commit differs.
#[derive(rust_embed::RustEmbed)]
#[folder = "webapp/dist/"]
struct AppAssets;

/// A running node.
pub struct Application {
    addr: SocketAddr,
    state: AppState,
    server: JoinHandle<std::io::Result<()>>,
    /// Written to last on the way out: the stores' background writers, and Redis's.
    stores: Stores,
    redis_writer: Option<RedisWriter>,
}

/// Something that can tell a node to shut down gracefully (from a signal handler, or a test): the node turns
/// not-ready at once, keeps serving for `GOCHAT_DRAIN_DELAY` (so load balancers that only probe readiness stop
/// sending it traffic first), then stops.
#[derive(Clone)]
pub struct ShutdownHandle {
    state: AppState,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        let state = self.state.clone();
        if state.is_draining() {
            // Asked again while draining: stop now.
            state.shutdown.cancel();
            return;
        }
        state.start_draining();
        let delay = state.config.drain_delay;
        if delay.is_zero() {
            state.shutdown.cancel();
            return;
        }
        tracing::info!(delay_ms = delay.as_millis() as u64, "draining: not ready, still serving until the delay ends");
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            state.shutdown.cancel();
        });
    }
}

/// The longest the writers' final flush may take (queued sends, delivered cursors, Redis writes): the part of
/// `GOCHAT_SHUTDOWN_GRACE` kept back from draining connections, so the whole shutdown fits the grace period (and
/// the Helm chart's `terminationGracePeriodSeconds`, 5 s above it).
const FLUSH_BUDGET: Duration = Duration::from_secs(5);

/// The node's backends, connected: the database, the bus and inbox (Redis, or in-process and the database),
/// and media storage.
struct Backends {
    stores: Stores,
    bus: SharedBus,
    inbox: SharedInbox,
    media: SharedMedia,
    presence: crate::presence::SharedPresence,
    redis_writer: Option<RedisWriter>,
}

impl Application {
    /// Connects every backend, applies migrations, builds the services and the router, and binds the listener;
    /// serving starts at once.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        // Only the node's user may read what it keeps there (database, media, secrets).
        crate::private_fs::create_dir(&config.data_dir)
            .with_context(|| format!("creating the data dir {} (GOCHAT_DATA_DIR)", config.data_dir.display()))?;
        let metrics = Metrics::new();
        let (tasks, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let stores = Stores::open_observed(&config.database_url, config.db_pool_size, &metrics)
            .await
            .with_context(|| format!("opening the database (GOCHAT_DATABASE_URL, {})", backend_name(&config)))?;
        let secret = jwt_secret(&config)?;
        let tokens = TokenService::new(secret.as_bytes(), config.token_ttl, stores.users.clone());
        let hub = Hub::new(metrics.clone(), tokens.versions().clone());
        let backends = connect(&config, stores, &hub, &metrics, &tasks, &shutdown).await?;
        let (stores, redis_writer) = (backends.stores.clone(), backends.redis_writer.clone());
        let state = build_services(config, backends, tokens, hub, metrics, tasks, shutdown)?;
        state.tasks.spawn(prune_rate_limits(state.clone()));
        state.tasks.spawn(clean_uploads(state.clone()));
        state.tasks.spawn(state.presence.clone().run(crate::presence::heartbeat_every(state.config.presence_ttl)));
        state.tasks.spawn(state.push.clone().run(state.tasks.clone(), state.shutdown_signal()));
        let app = router(&state);

        let listen = state.config.listen;
        let acceptor = TcpListener::bind(listen.to_string())
            .into_acceptor()
            .await
            .map(NoDelay)
            .with_context(|| format!("binding {listen} (GOCHAT_LISTEN)"))?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .context("listener has no socket address")?;
        tracing::info!(
            %addr,
            database = state.health.database_backend(),
            bus = state.bus.name(),
            "GoChat node listening"
        );

        let drain_state = state.clone();
        // Draining connections gets the grace period less what the final flush may take.
        let drain = state.config.shutdown_grace.saturating_sub(FLUSH_BUDGET).max(Duration::from_secs(1));
        let server = tokio::spawn(async move {
            Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    app,
                    async move {
                        drain_state.shutdown.cancelled().await;
                        drain_state.start_draining();
                        tracing::info!("shutting down: refusing new connections, draining in-flight requests");
                    },
                    Some(drain),
                )
                .await
        });
        Ok(Application { addr, state, server, stores, redis_writer })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { state: self.state.clone() }
    }

    /// Serves until [`ShutdownHandle::shutdown`] is called, then shuts down in order: connections drain (within
    /// `GOCHAT_SHUTDOWN_GRACE` less [`FLUSH_BUDGET`]) and sockets close; the node's tasks are joined; then what
    /// the writers hold is written — Redis publishes and inbox copies, queued sends, delivered cursors — within
    /// [`FLUSH_BUDGET`]. A writer that cannot finish in time (its backend does not answer) only costs what
    /// at-least-once delivery makes up for: messages sent again.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let result = self.server.await.context("server task")?;
        let state = self.state;
        state.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + FLUSH_BUDGET;
        state.tasks.close();
        if tokio::time::timeout_at(deadline, state.tasks.wait()).await.is_err() {
            tracing::warn!("some sockets or tasks did not end in time");
        }
        // What the last requests published (and their inbox copies, on the same queue) leaves first.
        let _ = tokio::time::timeout_at(deadline, state.bus.flush()).await;
        if tokio::time::timeout_at(deadline, self.stores.close()).await.is_err() {
            tracing::warn!("the database writers did not finish in time; some acks may be lost (messages re-sent)");
        }
        if let Some(writer) = &self.redis_writer {
            let _ = tokio::time::timeout_at(deadline, writer.close()).await;
        }
        result.context("serving")
    }

    /// Stops the node and waits for it to finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.state.shutdown.cancel();
        self.run_until_stopped().await
    }
}

/// Connects the bus, the inbox and media storage: Redis and S3 when configured, else in-process and local disk.
/// Long-lived tasks (the Redis subscriber) go on `tasks` and end on `shutdown`.
async fn connect(
    config: &Config,
    stores: Stores,
    hub: &Hub,
    metrics: &Metrics,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<Backends> {
    let db_inbox = DatabaseInbox::new(stores.messages.clone());
    let (bus, inbox, presence, redis_writer): (SharedBus, SharedInbox, crate::presence::SharedPresence, _) =
        match &config.redis_url {
            Some(url) => {
                let client = match &config.redis_ca_file {
                    Some(ca) => {
                        let root_cert = std::fs::read(ca)
                            .with_context(|| format!("reading {} (GOCHAT_REDIS_CA_FILE)", ca.display()))?;
                        let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) };
                        redis::Client::build_with_tls(url.as_str(), certificates)
                            .context("GOCHAT_REDIS_URL with GOCHAT_REDIS_CA_FILE")?
                    }
                    None => redis::Client::open(url.as_str()).context("GOCHAT_REDIS_URL is not a valid Redis URL")?,
                };
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(5)))
                    .set_response_timeout(Some(Duration::from_secs(5)))
                    .set_number_of_retries(2);
                let conn = ConnectionManager::new_with_config(client.clone(), manager_config)
                    .await
                    .context("connecting to Redis (GOCHAT_REDIS_URL)")?;
                let writer = RedisWriter::start(conn.clone(), metrics.clone());
                let bus = RedisBus::start(
                    client,
                    writer.clone(),
                    &config.redis_prefix,
                    hub.clone(),
                    metrics.clone(),
                    shutdown.clone(),
                    tasks,
                );
                let presence =
                    crate::presence::RedisPresence::new(conn.clone(), &config.redis_prefix, config.presence_ttl);
                let inbox = RedisInbox::new(conn, writer.clone(), &config.redis_prefix, db_inbox, metrics.clone());
                (Arc::new(bus), Arc::new(inbox), Arc::new(presence), Some(writer))
            }
            None => (
                Arc::new(MemoryBus::new(hub.clone())),
                Arc::new(db_inbox),
                Arc::new(crate::presence::MemoryPresence::new()),
                None,
            ),
        };
    let media: SharedMedia = match &config.s3 {
        Some(s3) => Arc::new(S3Media::connect(s3).await.context("connecting to S3 (GOCHAT_S3_*)")?),
        None => Arc::new(
            LocalMedia::new(config.data_dir.join("media"))
                .with_context(|| format!("creating {}/media (GOCHAT_DATA_DIR)", config.data_dir.display()))?,
        ),
    };
    Ok(Backends { stores, bus, inbox, media, presence, redis_writer })
}

/// Builds the services on the backends, and the state that hands them to handlers and sockets.
fn build_services(
    config: Config,
    backends: Backends,
    tokens: TokenService,
    hub: Hub,
    metrics: Metrics,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<AppState> {
    let Backends { stores, bus, inbox, media, presence, .. } = backends;
    let limits = RateLimits::new(config.auth_rate_per_ip, config.auth_rate_per_username, config.send_rate_per_sec)
        .with_invites(config.invite_rate_per_min);
    let media = Media::new(
        media,
        stores.files.clone(),
        config.data_dir.join("tmp"),
        config.upload_rate_per_min,
        config.upload_mib_per_hour,
        &metrics,
    )
    .with_context(|| format!("creating {}/tmp (GOCHAT_DATA_DIR)", config.data_dir.display()))?;
    let events = Events::new(bus.clone());
    let accounts =
        Accounts::new(stores.users.clone(), PasswordHasherPool::new(), tokens, limits.clone(), events.clone());
    let friends = Friends::new(stores.users.clone(), stores.friends.clone(), events.clone());
    let groups = Groups::new(
        stores.groups.clone(),
        stores.friends.clone(),
        events.clone(),
        inbox.clone(),
        config.max_group_members,
    );
    let push = crate::service::push::Push::new(
        stores.push.clone(),
        push_sender(&config)?,
        presence.clone(),
        metrics.clone(),
        config.push_ack_wait,
        config.push_allow_loopback,
    );
    let presence = Presence::new(
        presence,
        stores.users.clone(),
        stores.friends.clone(),
        events.clone(),
        config.presence_grace,
        tasks.clone(),
        shutdown.clone(),
    );
    let windows = Windows { recall: config.recall_window, edit: config.edit_window };
    let receipts = crate::service::receipts::ReadReceipts::new(
        events.clone(),
        crate::service::receipts::DEBOUNCE,
        tasks.clone(),
        shutdown.clone(),
    );
    let messaging = Messaging::new(
        stores.clone(),
        groups.clone(),
        events,
        inbox,
        metrics.clone(),
        limits.clone(),
        windows,
        receipts,
    );
    let socket_capacity = match config.max_connections {
        Some(n) => n as usize,
        None => socket_capacity(),
    };
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let health = Health::new(stores.health.clone(), media.store().clone(), bus.clone(), draining.clone());
    Ok(AppState::new(Parts {
        config: Arc::new(config),
        health,
        accounts,
        friends,
        groups,
        presence,
        push,
        media,
        messaging,
        limits,
        metrics,
        hub,
        bus,
        routes: Arc::new(crate::api::routes::RouteTable::from_spec(&crate::api::spec_json())),
        socket_capacity,
        tasks,
        draining,
        shutdown,
    }))
}

/// The router: the API (with Swagger UI and its spec), the web client, and `/ws`, with the state registered once.
fn router(state: &AppState) -> impl Endpoint + 'static {
    let api = crate::api::service();
    let (spec, docs) = (api.spec_endpoint(), api.swagger_ui());
    Route::new()
        .nest("/", api.around(crate::api::middleware::limit_body::<MAX_JSON_BODY, _>))
        .at("/api/openapi.json", spec)
        .nest("/docs", docs)
        .nest("/web", EmbeddedFilesEndpoint::<WebAssets>::new())
        .nest("/app", EmbeddedFilesEndpoint::<AppAssets>::new())
        .at("/ws", crate::ws::gateway::gateway)
        .around(serve_index)
        .around(crate::api::middleware::observe)
        .data(state.clone())
}

fn backend_name(config: &Config) -> &'static str {
    if config.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    }
}

/// The JWT secret: configured, or in embedded mode generated once into `<data dir>/jwt_secret` (mode 0600).
fn jwt_secret(config: &Config) -> anyhow::Result<Arc<String>> {
    if let Some(s) = &config.jwt_secret {
        return Ok(Arc::new(s.as_str().to_string()));
    }
    let path = config.data_dir.join("jwt_secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_string();
        if s.len() >= 32 {
            return Ok(Arc::new(s));
        }
    }
    crate::private_fs::create_dir(&config.data_dir)
        .with_context(|| format!("creating the data dir {} (GOCHAT_DATA_DIR)", config.data_dir.display()))?;
    let secret: String = (0..48).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a JWT secret");
    Ok(Arc::new(secret))
}

/// The push sender and the VAPID public key: the key configured, or in embedded mode generated once into
/// `<data dir>/vapid_private_key` (mode 0600). With Postgres and no key configured, push is off (every node must
/// sign with the same key, and a key one node made up would not be the others').
fn push_sender(config: &Config) -> anyhow::Result<Option<(Arc<dyn crate::push::PushSender>, String)>> {
    use crate::push::{VapidKey, WebPushSender};
    let subject = &config.vapid_subject;
    let key = if let Some(configured) = &config.vapid_private_key {
        VapidKey::from_base64url(configured, subject)
            .map_err(|why| anyhow::anyhow!("GOCHAT_VAPID_PRIVATE_KEY: {why}"))?
    } else if config.is_postgres() {
        tracing::warn!(
            "push notifications are off: set GOCHAT_VAPID_PRIVATE_KEY (the same on every node) to send them"
        );
        return Ok(None);
    } else {
        let path = config.data_dir.join("vapid_private_key");
        match std::fs::read_to_string(&path) {
            Ok(stored) => VapidKey::from_base64url(&stored, subject)
                .map_err(|why| anyhow::anyhow!("{}: {why} (delete it to make a new key)", path.display()))?,
            Err(_) => {
                let key = VapidKey::generate(subject);
                write_private(&path, &key.private_base64url())
                    .with_context(|| format!("writing {}", path.display()))?;
                tracing::info!(path = %path.display(), "generated a VAPID key for push notifications");
                key
            }
        }
    };
    let public = key.public_key().to_string();
    Ok(Some((Arc::new(WebPushSender::new(key, config.push_allow_loopback)?), public)))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    crate::private_fs::file_options().open(path)?.write_all(contents.as_bytes())
}

/// Every minute, drops rate-limit buckets that are full again. Ends with the node.
async fn prune_rate_limits(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => state.limits.prune(),
        }
    }
}

/// Serves the web client's page at `/`. The API is nested at the root (its paths span `/api/…` and the health
/// endpoints), and a nest at the root claims `/` itself, so the page is answered before routing.
async fn serve_index<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    if req.uri().path() == "/" {
        if req.method() == poem::http::Method::GET {
            return EmbeddedFileEndpoint::<WebAssets>::new("index.html").call(req).await;
        }
        return Err(poem::Error::from_status(poem::http::StatusCode::METHOD_NOT_ALLOWED));
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// Deletes uploads that no message used within `GOCHAT_UPLOAD_TTL`, every quarter of that age (at most hourly).
/// Several nodes may run it at once: each file row is deleted by exactly one of them.
async fn clean_uploads(state: AppState) {
    let ttl = state.config.upload_ttl;
    let every = (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => match state.media.cleanup(ttl).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "removed unused uploads"),
                Err(e) => tracing::warn!(error = %e, "upload cleanup failed"),
            },
        }
    }
}

/// Files kept free for everything that is not a client socket: database and Redis connections, upload temp files,
/// the listener, log files.
const RESERVED_FILES: u64 = 500;

/// How many sockets this process can hold: raises the open-file soft limit to the hard limit, and leaves
/// [`RESERVED_FILES`] for the rest, so a full node refuses upgrades with 503 instead of failing `accept` with
/// EMFILE (which would also starve its database connections).
pub fn socket_capacity() -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                if lim.rlim_cur < lim.rlim_max {
                    let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                        lim = raised;
                    }
                }
                #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
                let files = lim.rlim_cur as u64;
                return files.saturating_sub(RESERVED_FILES).clamp(1, 10_000_000) as usize;
            }
        }
    }
    100_000
}

/// poem's TCP acceptor with `TCP_NODELAY` on every connection. Chat frames are small and each one is awaited by
/// someone; with Nagle's algorithm a `sent` frame waits for the client's delayed ACK of the previous one, which
/// held closed-loop senders to a fraction of their rate (README, "Measurements behind the tunables").
struct NoDelay(poem::listener::TcpAcceptor);

impl Acceptor for NoDelay {
    type Io = tokio::net::TcpStream;

    fn local_addr(&self) -> Vec<poem::web::LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(
        &mut self,
    ) -> std::io::Result<(Self::Io, poem::web::LocalAddr, poem::web::RemoteAddr, poem::http::uri::Scheme)> {
        let (io, local, remote, scheme) = self.0.accept().await?;
        // Best effort: a socket that refuses the option still works, only slower.
        let _ = io.set_nodelay(true);
        Ok((io, local, remote, scheme))
    }
}
