//! Telling a file's type from its own bytes, and an image's size from its header. Pure functions, no I/O.

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
        }
    }

    pub fn is_image(self) -> bool {
        matches!(self, Format::Jpeg | Format::Png | Format::Gif | Format::Webp)
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
        }
    }
}

const ALL: [Format; 7] =
    [Format::Jpeg, Format::Png, Format::Gif, Format::Webp, Format::Mp4, Format::QuickTime, Format::Webm];

/// Bytes of a file's start that [`detect`] needs.
pub const SNIFF_LEN: usize = 16;

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
    None
}

/// Whether what the client said about the file agrees with its bytes. A generic declared type
/// (`application/octet-stream`) and unknown file-name extensions say nothing; a media type or a media extension
/// that names another format is a mismatch.
pub fn agrees(format: Format, declared_type: Option<&str>, file_name: Option<&str>) -> bool {
    if let Some(ct) = declared_type {
        let ct = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let says_something = ct.starts_with("image/") || ct.starts_with("video/") || ct.starts_with("text/");
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

fn be16(b: &[u8], i: usize) -> Option<u32> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]) as u32)
}
fn le16(b: &[u8], i: usize) -> Option<u32> {
    Some(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?]) as u32)
}
fn be32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
}
fn le24(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes([*b.get(i)?, *b.get(i + 1)?, *b.get(i + 2)?, 0]))
}

/// Width and height of an image from the first bytes of its file (JPEG may need its first 64 KiB).
pub fn dimensions(format: Format, b: &[u8]) -> Option<(u32, u32)> {
    match format {
        Format::Png => Some((be32(b, 16)?, be32(b, 20)?)),
        Format::Gif => Some((le16(b, 6)?, le16(b, 8)?)),
        Format::Webp => match b.get(12..16)? {
            b"VP8 " => Some((le16(b, 26)? & 0x3FFF, le16(b, 28)? & 0x3FFF)),
            b"VP8L" => {
                let bits = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?);
                Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
            }
            b"VP8X" => Some((le24(b, 24)? + 1, le24(b, 27)? + 1)),
            _ => None,
        },
        Format::Jpeg => {
            let mut i = 2;
            while i + 9 < b.len() {
                if b[i] != 0xFF {
                    i += 1;
                    continue;
                }
                let marker = b[i + 1];
                if marker == 0xFF {
                    i += 1;
                    continue;
                }
                // Start-of-frame markers carry the size; DHT (C4), JPG (C8) and DAC (CC) do not.
                if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
                    return Some((be16(b, i + 7)?, be16(b, i + 5)?));
                }
                let len = be16(b, i + 2)? as usize;
                i += 2 + len;
            }
            None
        }
        _ => None,
    }
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

    #[test]
    fn image_sizes_come_from_headers() {
        assert_eq!(dimensions(Format::Png, &png(640, 480)), Some((640, 480)));
        assert_eq!(dimensions(Format::Gif, b"GIF89a\x02\x01\x03\0"), Some((258, 3)));
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, 0xC0, 0, 17, 8, 0x01, 0xE0, 0x02, 0x80, 3, 0, 0, 0];
        assert_eq!(dimensions(Format::Jpeg, &jpeg), Some((640, 480)));
    }
}
