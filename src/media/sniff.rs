//! Telling a file's type from its own bytes, and an image's size from its header (decoded by the `image`
//! crate). Pure functions over bytes or a reader, no I/O of their own.

/// The formats the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    Webp,
    Mp4,
    QuickTime,
    Webm,
    // Voice notes (DESIGN.md §7). WebM and MP4 audio share their containers with video; the declared type
    // tells them apart (see [`detect_declared`]).
    Ogg,
    Mp3,
    M4a,
    WebmAudio,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
            Format::Webp => "image/webp",
            Format::Mp4 => "video/mp4",
            Format::QuickTime => "video/quicktime",
            Format::Webm => "video/webm",
            Format::Ogg => "audio/ogg",
            Format::Mp3 => "audio/mpeg",
            Format::M4a => "audio/mp4",
            Format::WebmAudio => "audio/webm",
        }
    }

    pub fn is_image(self) -> bool {
        matches!(self, Format::Jpeg | Format::Png | Format::Gif | Format::Webp)
    }

    pub fn is_audio(self) -> bool {
        matches!(self, Format::Ogg | Format::Mp3 | Format::M4a | Format::WebmAudio)
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Gif => "gif",
            Format::Webp => "webp",
            Format::Mp4 => "mp4",
            Format::QuickTime => "mov",
            Format::Webm => "webm",
            Format::Ogg => "ogg",
            Format::Mp3 => "mp3",
            Format::M4a => "m4a",
            Format::WebmAudio => "weba",
        }
    }

    /// File-name extensions that name this format.
    fn extensions(self) -> &'static [&'static str] {
        match self {
            Format::Jpeg => &["jpg", "jpeg", "jpe", "jfif"],
            Format::Png => &["png"],
            Format::Gif => &["gif"],
            Format::Webp => &["webp"],
            Format::Mp4 => &["mp4", "m4v"],
            Format::QuickTime => &["mov", "qt"],
            Format::Webm => &["webm"],
            Format::Ogg => &["ogg", "oga", "opus"],
            Format::Mp3 => &["mp3"],
            Format::M4a => &["m4a", "mp4", "aac"],
            Format::WebmAudio => &["weba", "webm"],
        }
    }

    /// Declared content types that agree with this format.
    fn content_types(self) -> &'static [&'static str] {
        match self {
            Format::Jpeg => &["image/jpeg", "image/jpg", "image/pjpeg"],
            Format::Png => &["image/png"],
            Format::Gif => &["image/gif"],
            Format::Webp => &["image/webp"],
            // MP4 and QuickTime share the ISO container; clients label either way.
            Format::Mp4 | Format::QuickTime => &["video/mp4", "video/quicktime"],
            Format::Webm => &["video/webm"],
            Format::Ogg => &["audio/ogg", "audio/opus", "application/ogg"],
            Format::Mp3 => &["audio/mpeg", "audio/mp3"],
            Format::M4a => &["audio/mp4", "audio/x-m4a", "audio/aac"],
            Format::WebmAudio => &["audio/webm"],
        }
    }
}

/// Every accepted format.
pub const ALL: [Format; 11] = [
    Format::Jpeg,
    Format::Png,
    Format::Gif,
    Format::Webp,
    Format::Mp4,
    Format::QuickTime,
    Format::Webm,
    Format::Ogg,
    Format::Mp3,
    Format::M4a,
    Format::WebmAudio,
];

/// The format of a file starting with `head`, if it is one the server accepts.
pub fn detect(head: &[u8]) -> Option<Format> {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(Format::Jpeg);
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(Format::Png);
    }
    if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        return Some(Format::Gif);
    }
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return Some(Format::Webp);
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        let brand = &head[8..12];
        return Some(if brand == b"qt  " { Format::QuickTime } else { Format::Mp4 });
    }
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some(Format::Webm);
    }
    if head.starts_with(b"OggS") {
        return Some(Format::Ogg);
    }
    // MP3: an ID3v2 tag, or an MPEG audio frame header (11 sync bits, layer III).
    if head.starts_with(b"ID3") || (head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE6 == 0xE2) {
        return Some(Format::Mp3);
    }
    None
}

/// [`detect`], with audio in the containers audio shares with video told apart: an MP4 of brand `M4A `, or
/// an MP4 or WebM declared as `audio/…`, is audio.
pub fn detect_declared(head: &[u8], declared_type: Option<&str>) -> Option<Format> {
    let audio = declared_type.is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("audio/"));
    match detect(head)? {
        Format::Mp4 if audio || head.get(8..12) == Some(b"M4A ") => Some(Format::M4a),
        Format::Webm if audio => Some(Format::WebmAudio),
        other => Some(other),
    }
}

/// Whether what the client said about the file agrees with its bytes. A generic declared type
/// (`application/octet-stream`) and unknown file-name extensions say nothing; a media type or a media extension
/// that names another format is a mismatch.
pub fn agrees(format: Format, declared_type: Option<&str>, file_name: Option<&str>) -> bool {
    if let Some(ct) = declared_type {
        let ct = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let says_something =
            ct.starts_with("image/") || ct.starts_with("video/") || ct.starts_with("audio/") || ct.starts_with("text/");
        if says_something && !format.content_types().contains(&ct.as_str()) {
            return false;
        }
    }
    if let Some(ext) = file_name.and_then(|n| n.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase()) {
        let is_known = ALL.iter().any(|f| f.extensions().contains(&ext.as_str()))
            || ["html", "htm", "svg", "js", "xml", "txt", "exe"].contains(&ext.as_str());
        if is_known && !format.extensions().contains(&ext.as_str()) {
            return false;
        }
    }
    true
}

/// Largest width or height of an accepted image, in pixels (WebP's own limit is 16,383; a larger claim in a
/// header is a broken or hostile file).
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// Width and height of an image, read from its header by the `image` crate's decoder for `format` (which checks
/// the header's structure and, for PNG, its checksum). `None` when the bytes are not a valid image of that
/// format, or claim a size of zero or beyond [`MAX_IMAGE_SIDE`].
pub fn image_size<R: std::io::BufRead + std::io::Seek>(format: Format, reader: R) -> Option<(u32, u32)> {
    let decoder_format = match format {
        Format::Jpeg => image::ImageFormat::Jpeg,
        Format::Png => image::ImageFormat::Png,
        Format::Gif => image::ImageFormat::Gif,
        Format::Webp => image::ImageFormat::WebP,
        _ => return None,
    };
    let (w, h) = image::ImageReader::with_format(reader, decoder_format).into_dimensions().ok()?;
    ((1..=MAX_IMAGE_SIDE).contains(&w) && (1..=MAX_IMAGE_SIDE).contains(&h)).then_some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        v.extend(w.to_be_bytes());
        v.extend(h.to_be_bytes());
        v
    }

    #[test]
    fn formats_are_told_by_their_bytes() {
        assert_eq!(detect(&png(1, 1)), Some(Format::Png));
        assert_eq!(detect(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]), Some(Format::Jpeg));
        assert_eq!(detect(b"GIF89a\x02\0\x03\0"), Some(Format::Gif));
        assert_eq!(detect(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::Webp));
        assert_eq!(detect(b"\0\0\0\x18ftypisom\0\0\0\0"), Some(Format::Mp4));
        assert_eq!(detect(b"\0\0\0\x14ftypqt  \0\0\0\0"), Some(Format::QuickTime));
        assert_eq!(detect(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F]), Some(Format::Webm));
        assert_eq!(detect(b"<!doctype html><script>"), None);
        assert_eq!(detect(b""), None);
    }

    #[test]
    fn declared_types_and_names_must_agree_with_the_bytes() {
        assert!(agrees(Format::Png, Some("image/png"), Some("a.png")));
        assert!(agrees(Format::Png, Some("application/octet-stream"), Some("blob")));
        assert!(agrees(Format::Png, None, None));
        assert!(!agrees(Format::Png, None, Some("cat.mp4")), "a PNG renamed .mp4");
        assert!(!agrees(Format::Png, Some("image/jpeg"), None));
        assert!(!agrees(Format::Jpeg, Some("text/html"), None));
        assert!(!agrees(Format::Mp4, Some("video/quicktime"), Some("clip.MOV")));
        assert!(agrees(Format::QuickTime, Some("video/quicktime"), Some("clip.MOV")));
    }

    fn encoded(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::RgbImage::new(w, h).write_to(&mut out, format).expect("encode");
        out.into_inner()
    }

    fn size(format: Format, bytes: &[u8]) -> Option<(u32, u32)> {
        image_size(format, std::io::Cursor::new(bytes))
    }

    #[test]
    fn image_sizes_come_from_headers_the_decoder_accepts() {
        assert_eq!(size(Format::Png, &encoded(640, 480, image::ImageFormat::Png)), Some((640, 480)));
        assert_eq!(size(Format::Gif, &encoded(258, 3, image::ImageFormat::Gif)), Some((258, 3)));
        assert_eq!(size(Format::Jpeg, &encoded(64, 48, image::ImageFormat::Jpeg)), Some((64, 48)));
        assert_eq!(size(Format::Webp, &encoded(31, 17, image::ImageFormat::WebP)), Some((31, 17)));
    }

    #[test]
    fn a_header_that_is_nonsense_is_not_an_image() {
        // PNG magic, then an IHDR claiming 1868855614 × 1014195058 with no valid checksum.
        let mut bogus = png(1_868_855_614, 1_014_195_058);
        bogus.extend([0; 32]);
        assert_eq!(detect(&bogus), Some(Format::Png));
        assert_eq!(size(Format::Png, &bogus), None);
        assert_eq!(size(Format::Jpeg, &[0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0]), None);
        assert_eq!(size(Format::Gif, b"GIF89a"), None);
        assert_eq!(size(Format::Mp4, b"\0\0\0\x18ftypisom"), None, "videos have no image header");
        // A well-formed header claiming more than the largest side accepted.
        let huge = encoded(1, 1, image::ImageFormat::Png);
        let mut wide = huge.clone();
        wide[16..20].copy_from_slice(&(MAX_IMAGE_SIDE + 1).to_be_bytes());
        let crc = crc32fast::hash(&wide[12..29]);
        wide[29..33].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(size(Format::Png, &wide), None);
    }
}
