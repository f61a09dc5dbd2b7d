//! The upload sniffer on arbitrary bytes: format detection, the type/name agreement check, and the image header
//! decoder never panic, and an accepted image size is within the documented bounds.
#![no_main]

use gochat::media::sniff::{agrees, detect, image_size, MAX_IMAGE_SIDE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(format) = detect(data) else { return };
    let _ = agrees(format, Some("image/png"), Some("a.jpg"));
    if let Some((w, h)) = image_size(format, std::io::Cursor::new(data)) {
        assert!((1..=MAX_IMAGE_SIDE).contains(&w) && (1..=MAX_IMAGE_SIDE).contains(&h));
    }
});
