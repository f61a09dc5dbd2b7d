//! Prometheus metrics of one node (a registry per node, not a global one), rendered at `/metrics`.

use std::sync::Arc;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("gochat_http_requests_total", "HTTP requests answered, by route, method and status"),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("gochat_http_request_duration_seconds", "HTTP request latency by route and method")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["route", "method"],
        )
        .expect("valid metric");
        let build_info =
            IntGaugeVec::new(Opts::new("gochat_build_info", "Build information; the value is always 1"), &["version"])
                .expect("valid metric");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(build_info),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Self { inner: Arc::new(Inner { registry, http_requests, http_duration }) }
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn observe_http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.inner.http_requests.with_label_values(&[route, method, &status.to_string()]).inc();
        self.inner.http_duration.with_label_values(&[route, method]).observe(seconds);
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.inner.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Collapses a request path into a bounded label: numeric segments become `{id}`, unknown paths `other`.
pub fn route_label(path: &str) -> String {
    const KNOWN: &[&str] = &["/healthz", "/readyz", "/metrics", "/ws", "/docs", "/"];
    if KNOWN.contains(&path) {
        return path.to_string();
    }
    if !path.starts_with("/api/") || path.len() > 128 {
        return "other".to_string();
    }
    path.split('/')
        .map(|seg| if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) { "{id}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn route_labels_are_bounded() {
        assert_eq!(super::route_label("/api/groups/12/members/7"), "/api/groups/{id}/members/{id}");
        assert_eq!(super::route_label("/wp-admin/x"), "other");
        assert_eq!(super::route_label("/metrics"), "/metrics");
    }
}
