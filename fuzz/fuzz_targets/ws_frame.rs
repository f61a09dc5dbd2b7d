//! The WebSocket client-frame parser on arbitrary text: it answers a frame or a refusal, never panics, and a
//! refusal always carries one of the documented codes.
#![no_main]

use gochat::domain::frame::ClientFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(bad) = ClientFrame::parse(text) {
        assert!(["invalid_json", "invalid_frame", "unknown_type"].contains(&bad.code));
    }
});
