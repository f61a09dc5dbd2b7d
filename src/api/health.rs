//! `/healthz`, `/readyz` and `/metrics`: what orchestrators and Prometheus read.

use std::collections::BTreeMap;

use poem::web::Data;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::state::AppState;

pub struct HealthApi;

#[derive(Object)]
struct Liveness {
    status: String,
    version: String,
}

#[derive(Object)]
struct Readiness {
    /// `ready`, `degraded` (serving, with a check `degraded: …`: the Redis bus is lost; messages are stored and
    /// reach sockets by catch-up until it returns) or `not_ready`.
    status: String,
    /// Each dependency's state: `ok` or what is wrong.
    checks: BTreeMap<String, String>,
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// Every dependency answers.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// A dependency is down, or the node is draining for shutdown.
    #[oai(status = 503)]
    NotReady(Json<Readiness>),
}

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness: the process serves requests.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> Json<Liveness> {
        Json(Liveness { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
    }

    /// Readiness: the database and the media store answer (each probe bounded by 0.8 s, all at once) and the node
    /// is not draining. A lost Redis bus answers 200 `degraded`, not 503: the node still serves.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: Data<&AppState>) -> ReadyResponse {
        let (readiness, checks) = state.health.check().await;
        let body = Readiness { status: readiness.as_str().into(), checks };
        match readiness {
            crate::service::health::Readiness::NotReady => ReadyResponse::NotReady(Json(body)),
            _ => ReadyResponse::Ready(Json(body)),
        }
    }

    /// Prometheus metrics in the text exposition format; every series is named `gochat_…`.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, state: Data<&AppState>) -> PlainText<String> {
        PlainText(state.metrics.render())
    }
}
