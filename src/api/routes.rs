//! The node's route templates, read once from the OpenAPI document plus the few routes outside it: what a
//! request path is called in metrics (a template, never the raw path), and which methods a path allows (the
//! `Allow` header of a 405, RFC 9110 §15.5.6).

use poem::http::Method;

/// Routes served outside the OpenAPI document, with their methods.
const EXTRA: &[(&str, &[&str])] =
    &[("/", &["GET", "HEAD"]), ("/ws", &["GET", "HEAD"]), ("/api/openapi.json", &["GET", "HEAD"])];
/// Route prefixes served as trees of static files, labelled by the prefix.
const TREES: &[&str] = &["/web", "/app", "/docs"];
/// What a tree of static files allows.
const TREE_METHODS: &[Method] = &[Method::GET, Method::HEAD];

/// One route: its path template split in segments (`{…}` matches any one segment) and its methods.
#[derive(Debug, Clone)]
struct Route {
    template: String,
    segments: Vec<Segment>,
    methods: Vec<Method>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Param,
}

/// What a path is, as far as routing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched<'a> {
    /// A known route: its template and the methods it allows.
    Route { template: &'a str, methods: &'a [Method] },
    /// Not a route of this node.
    Unmatched,
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// The routes of an OpenAPI 3 document (its `paths` object) and [`EXTRA`].
    pub fn from_spec(spec: &str) -> Self {
        let mut routes = Vec::new();
        let doc: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
            for (template, ops) in paths {
                let mut methods: Vec<Method> = ops
                    .as_object()
                    .map(|o| o.keys().filter_map(|m| m.to_ascii_uppercase().parse().ok()).collect())
                    .unwrap_or_default();
                if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
                    methods.push(Method::HEAD);
                }
                routes.push(Route::new(template, methods));
            }
        }
        for (template, methods) in EXTRA {
            routes.push(Route::new(template, methods.iter().filter_map(|m| m.parse().ok()).collect()));
        }
        // Literal segments before parameters, so `/api/groups/mine` would win over `/api/groups/{id}`.
        routes.sort_by_key(|r| r.segments.iter().map(|s| *s == Segment::Param).collect::<Vec<_>>());
        Self { routes }
    }

    /// The route `path` belongs to.
    pub fn find(&self, path: &str) -> Matched<'_> {
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        for r in &self.routes {
            if r.segments.len() == segments.len()
                && r.segments.iter().zip(&segments).all(|(s, p)| match s {
                    Segment::Literal(l) => l == p,
                    Segment::Param => !p.is_empty(),
                })
            {
                return Matched::Route { template: &r.template, methods: &r.methods };
            }
        }
        match TREES.iter().find(|t| path.strip_prefix(**t).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
        {
            Some(tree) => Matched::Route { template: tree, methods: TREE_METHODS },
            None => Matched::Unmatched,
        }
    }

    /// The metrics label of a request path: its route template, the static tree it is in, or `unmatched`.
    /// Bounded by the number of routes whatever clients send.
    pub fn label(&self, path: &str) -> &str {
        Self::label_of(self.find(path))
    }

    /// [`RouteTable::label`] of a path already looked up.
    pub fn label_of(matched: Matched<'_>) -> &str {
        match matched {
            Matched::Route { template, .. } => template,
            Matched::Unmatched => "unmatched",
        }
    }
}

impl Route {
    fn new(template: &str, methods: Vec<Method>) -> Self {
        let segments = template
            .split('/')
            .skip(1)
            .map(|s| if s.starts_with('{') && s.ends_with('}') { Segment::Param } else { Segment::Literal(s.into()) })
            .collect();
        Route { template: template.to_string(), segments, methods }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::from_spec(&crate::api::spec_json())
    }

    #[test]
    fn paths_are_labelled_by_their_route_template_and_anything_else_by_one_label() {
        let t = table();
        assert_eq!(t.label("/api/groups/12/members/7"), "/api/groups/{groupId}/members/{userId}");
        assert_eq!(t.label("/api/groups/abc/members/7"), "/api/groups/{groupId}/members/{userId}");
        assert_eq!(t.label("/api/user/login"), "/api/user/login");
        assert_eq!(t.label("/metrics"), "/metrics");
        assert_eq!(t.label("/web/app.js"), "/web");
        assert_eq!(t.label("/docs/"), "/docs");
        for junk in ["/wp-admin/x", "/api/nope", "/api/groups/1/2/3/4", "/webx", "/api/user/login/x", ""] {
            assert_eq!(t.label(junk), "unmatched", "{junk}");
        }
    }

    #[test]
    fn a_path_knows_its_methods() {
        let t = table();
        let Matched::Route { methods, .. } = t.find("/api/user/profile") else { panic!("a route") };
        for m in [Method::GET, Method::HEAD, Method::PUT] {
            assert!(methods.contains(&m), "{m}");
        }
        assert!(!methods.contains(&Method::DELETE));
        assert_eq!(t.find("/api/nope"), Matched::Unmatched);
    }
}
