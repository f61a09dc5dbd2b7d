//! Readiness: whether this node's dependencies answer (database, media, bus) and whether it is draining.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::bus::SharedBus;
use crate::media::SharedMedia;
use crate::store::StoreHealth;

/// How long a readiness probe waits for one dependency. The probes run at once, so `/readyz` answers within a
/// second even with every dependency hanging: well inside the Helm chart's readiness `timeoutSeconds` (5), so
/// the orchestrator reads the 503 and its reasons rather than a timeout, and a load balancer probing often
/// learns of an outage at its next probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// Each dependency's state, by name (`database (postgres)`, `media (s3)`, `bus (redis)`, `node`): `ok`, what is
/// wrong, or (the bus) `degraded: …`.
pub type Checks = BTreeMap<String, String>;

/// What `/readyz` says of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Serving without the bus (see [`Health::check`]).
    Degraded,
    NotReady,
}

impl Readiness {
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Ready => "ready",
            Readiness::Degraded => "degraded",
            Readiness::NotReady => "not_ready",
        }
    }
}

/// Probes the node's dependencies for `/readyz`.
#[derive(Clone)]
pub struct Health {
    database: Arc<dyn StoreHealth>,
    media: SharedMedia,
    bus: SharedBus,
    draining: Arc<AtomicBool>,
}

impl Health {
    pub fn new(database: Arc<dyn StoreHealth>, media: SharedMedia, bus: SharedBus, draining: Arc<AtomicBool>) -> Self {
        Self { database, media, bus, draining }
    }

    /// The database's backend name (`sqlite`, `postgres`).
    pub fn database_backend(&self) -> &'static str {
        self.database.backend()
    }

    /// Probes every dependency (each bounded by [`PROBE_TIMEOUT`]); ready when every check is `ok`, degraded
    /// when only the bus is lost, not ready otherwise. A lost bus only degrades the node: sends are stored and acknowledged, sockets catch up from
    /// the database, and live delivery resumes when the bus reconnects; every node loses the same Redis at once,
    /// so reporting not-ready would take the whole cluster out of a load balancer for a blip.
    pub async fn check(&self) -> (Readiness, Checks) {
        let mut checks = Checks::new();
        let (db, media) = tokio::join!(
            tokio::time::timeout(PROBE_TIMEOUT, self.database.ping()),
            tokio::time::timeout(PROBE_TIMEOUT, self.media.ping())
        );
        checks.insert(format!("database ({})", self.database.backend()), describe(db));
        checks.insert(format!("media ({})", self.media.name()), describe(media));
        if self.draining.load(Ordering::SeqCst) {
            checks.insert("node".into(), "draining".into());
        }
        let mut readiness = if checks.values().all(|v| v == "ok") { Readiness::Ready } else { Readiness::NotReady };
        if self.bus.name() != "memory" {
            let bus = if self.bus.is_ready() {
                "ok"
            } else {
                if readiness == Readiness::Ready {
                    readiness = Readiness::Degraded;
                }
                "degraded: disconnected, reconnecting"
            };
            checks.insert(format!("bus ({})", self.bus.name()), bus.to_string());
        }
        (readiness, checks)
    }
}

fn describe<E: std::fmt::Display>(probe: Result<Result<(), E>, tokio::time::error::Elapsed>) -> String {
    match probe {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => "timeout".to_string(),
    }
}
