//! The committed `openapi/openapi.json` must be exactly what the code generates.

#[test]
fn the_committed_openapi_document_is_up_to_date() {
    let generated = gochat::api::spec_json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    if std::env::var_os("GOCHAT_UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json` \
         (or this test with GOCHAT_UPDATE_OPENAPI=1) and commit it"
    );
}

#[test]
fn every_operation_documents_its_error_replies() {
    let spec: serde_json::Value = serde_json::from_str(&gochat::api::spec_json()).unwrap();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            if path.starts_with("/api/") {
                for status in ["400", "401", "422", "500"] {
                    assert!(responses.contains_key(status), "{method} {path} lacks {status}");
                }
            }
        }
    }
}
