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

/// Every error code with the status it is answered with: changing a code's status (or adding a code) is a
/// deliberate edit of this table as well as of `gochat::error::status_of`.
const PINNED: &[(&str, u16)] = &[
    ("bad_request", 400),
    ("invalid_body", 400),
    ("invalid_parameter", 400),
    ("invalid_multipart", 400),
    ("not_a_websocket", 400),
    ("invalid_json", 400),
    ("invalid_frame", 400),
    ("unknown_type", 400),
    ("binary_not_supported", 400),
    ("unauthorized", 401),
    ("missing_token", 401),
    ("invalid_token", 401),
    ("token_expired", 401),
    ("token_revoked", 401),
    ("invalid_ticket", 401),
    ("invalid_credentials", 401),
    ("wrong_password", 403),
    ("user_mismatch", 403),
    ("not_friends", 403),
    ("cannot_message_self", 403),
    ("cannot_befriend_self", 403),
    ("not_group_member", 403),
    ("not_group_admin", 403),
    ("not_group_owner", 403),
    ("insufficient_role", 403),
    ("not_conversation_member", 403),
    ("file_forbidden", 403),
    ("not_found", 404),
    ("user_not_found", 404),
    ("friend_not_found", 404),
    ("request_not_found", 404),
    ("group_not_found", 404),
    ("member_not_found", 404),
    ("conversation_not_found", 404),
    ("file_not_found", 404),
    ("method_not_allowed", 405),
    ("length_required", 411),
    ("precondition_failed", 412),
    ("range_not_satisfiable", 416),
    ("username_taken", 409),
    ("password_changed", 409),
    ("already_friends", 409),
    ("request_pending", 409),
    ("request_not_pending", 409),
    ("already_owner", 409),
    ("cannot_change_owner", 409),
    ("owner_must_transfer", 409),
    ("group_full", 409),
    ("file_kind_mismatch", 409),
    ("seq_beyond_last", 409),
    ("payload_too_large", 413),
    ("file_too_large", 413),
    ("unsupported_content_type", 415),
    ("unsupported_media_type", 415),
    ("invalid_username", 422),
    ("invalid_password", 422),
    ("invalid_nickname", 422),
    ("invalid_sex", 422),
    ("invalid_text", 422),
    ("invalid_client_msg_id", 422),
    ("invalid_conversation_id", 422),
    ("invalid_recipient", 422),
    ("invalid_message", 422),
    ("invalid_group_name", 422),
    ("invalid_members", 422),
    ("invalid_seq", 422),
    ("invalid_limit", 422),
    ("invalid_query", 422),
    ("invalid_device", 422),
    ("invalid_file", 422),
    ("file_required", 422),
    ("missing_file", 422),
    ("empty_file", 422),
    ("unexpected_field", 422),
    ("forbidden", 403),
    ("recall_window_passed", 403),
    ("edit_window_passed", 403),
    ("message_not_found", 404),
    ("reaction_not_found", 404),
    ("already_recalled", 409),
    ("not_editable", 409),
    ("target_is_event", 409),
    ("too_many_reactions", 409),
    ("client_msg_id_reused", 409),
    ("invalid_emoji", 404),
    ("invalid_reply", 409),
    ("invalid_mention", 409),
    ("invalid_forward", 409),
    ("voice_too_long", 422),
    ("muted", 403),
    ("blocked", 403),
    ("invite_invalid", 404),
    ("mute_in_past", 409),
    ("invalid_announcement", 422),
    ("invalid_remark", 422),
    ("invalid_draft", 422),
    ("invalid_invite", 422),
    ("invalid_push_endpoint", 422),
    ("invalid_push_keys", 422),
    ("rate_limited", 429),
    ("upload_quota_exceeded", 429),
    ("internal", 500),
    ("draining", 503),
    ("at_capacity", 503),
    ("push_disabled", 404),
    ("unavailable", 503),
];

#[test]
fn every_error_code_has_its_pinned_status_and_name_in_the_code_and_the_openapi_document() {
    use gochat::error::{status_of, ErrorCode};
    let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let pinned: Vec<&str> = PINNED.iter().map(|p| p.0).collect();
    assert_eq!(names, pinned, "ErrorCode::ALL and this table list the same codes in the same order");
    for (code, (name, status)) in ErrorCode::ALL.iter().zip(PINNED) {
        assert_eq!((code.as_str(), status_of(*code).as_u16()), (*name, *status), "{code:?}");
    }

    let spec: serde_json::Value = serde_json::from_str(&gochat::api::spec_json()).unwrap();
    // The error body's `code` is the enum of every code, so generated clients know them all.
    let schema = &spec["components"]["schemas"]["ErrorCode"];
    let listed: Vec<&str> =
        schema["enum"].as_array().expect("ErrorCode enum").iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(listed, pinned, "the OpenAPI ErrorCode enum");
    // Each documented error status names the codes answered with it.
    let responses = spec["paths"]["/api/user/register"]["post"]["responses"].as_object().unwrap();
    for (name, status) in PINNED {
        if let Some(reply) = responses.get(&status.to_string()) {
            let text = reply["description"].as_str().unwrap();
            assert!(text.contains(&format!("`{name}`")), "{status}'s description lacks `{name}`: {text}");
        }
    }
    for status in [400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503] {
        assert!(responses.contains_key(&status.to_string()), "register documents {status}");
    }
}
