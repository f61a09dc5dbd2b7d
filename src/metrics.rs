//! Prometheus metrics of one node (a registry per node, not a global one), rendered at `/metrics`.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The node's metrics. The real-time series are public fields: cheap handles to count with.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
    /// Open WebSocket connections.
    pub ws_connections: IntGauge,
    /// Messages accepted (durably stored), new ones only.
    pub messages_accepted: IntCounter,
    /// Message frames written to sockets, by path: `live` (pushed as sent) or `sync` (caught up).
    pub deliveries: IntCounterVec,
    /// Seconds from a message's acceptance to its write to a recipient socket.
    pub delivery_latency: Histogram,
    /// Bus failures: lost connections, failed publishes.
    pub bus_errors: IntCounter,
    /// Sessions disconnected because their outgoing queue was full.
    pub slow_consumer_disconnects: IntCounter,
    /// Bytes read from upload bodies, refused ones included.
    pub upload_bytes: IntCounter,
    /// Batches of sends written, by the path that wrote them (Postgres: `direct`, `direct_many`, `group_many`,
    /// `generic`, and `fallback` when a fast path refused its part).
    pub store_send_batches: IntCounterVec,
    /// Web Push requests by outcome: `sent` (accepted), `gone` (404/410: subscription dropped), `retried`
    /// (429, 5xx or no answer: tried again later), `rejected` (any other refusal, or out of attempts).
    pub push_sent: IntCounterVec,
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
        let ws_connections =
            IntGauge::new("gochat_ws_connections", "Open WebSocket connections").expect("valid metric");
        let messages_accepted =
            IntCounter::new("gochat_messages_accepted_total", "Messages accepted and stored").expect("valid metric");
        let deliveries = IntCounterVec::new(
            Opts::new("gochat_deliveries_total", "Message frames written to sockets, by path (live, sync)"),
            &["path"],
        )
        .expect("valid metric");
        let delivery_latency = Histogram::with_opts(
            HistogramOpts::new(
                "gochat_delivery_latency_seconds",
                "From a message's acceptance to its write to a recipient socket",
            )
            .buckets(vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0]),
        )
        .expect("valid metric");
        let bus_errors = IntCounter::new("gochat_bus_errors_total", "Bus failures: lost connections, failed publishes")
            .expect("valid metric");
        let slow_consumer_disconnects = IntCounter::new(
            "gochat_ws_slow_consumer_disconnects_total",
            "Sockets disconnected because their outgoing queue was full",
        )
        .expect("valid metric");
        let upload_bytes =
            IntCounter::new("gochat_upload_bytes_total", "Bytes read from upload bodies, refused ones too")
                .expect("valid metric");
        let store_send_batches = IntCounterVec::new(
            Opts::new("gochat_store_send_batches_total", "Batches of sends written, by the store path that wrote them"),
            &["path"],
        )
        .expect("valid metric");
        let push_sent = IntCounterVec::new(
            Opts::new("gochat_push_sent_total", "Web Push requests made, by outcome (sent, gone, retried, rejected)"),
            &["result"],
        )
        .expect("valid metric");
        for c in [
            Box::new(upload_bytes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(push_sent.clone()),
            Box::new(store_send_batches.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(build_info),
            Box::new(ws_connections.clone()),
            Box::new(messages_accepted.clone()),
            Box::new(deliveries.clone()),
            Box::new(delivery_latency.clone()),
            Box::new(bus_errors.clone()),
            Box::new(slow_consumer_disconnects.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Self {
            inner: Arc::new(Inner { registry, http_requests, http_duration }),
            ws_connections,
            messages_accepted,
            deliveries,
            delivery_latency,
            bus_errors,
            slow_consumer_disconnects,
            upload_bytes,
            push_sent,
            store_send_batches,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// One answered request. `route` must come from a bounded set (a route template); a method outside HTTP's
    /// registered ones is counted as `OTHER`, so that no client can grow the series.
    pub fn observe_http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"];
        let method = METHODS.iter().find(|m| **m == method).copied().unwrap_or("OTHER");
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
