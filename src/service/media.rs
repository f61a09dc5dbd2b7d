//! Media: uploads streamed with their limits enforced as bytes arrive, typed by their own bytes; downloads
//! only to those a file was shared with; cleanup of uploads no message ever used.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::domain::model::{FileInfo, FileKind};
use crate::error::ErrorCode;
use crate::error::{AppError, AppResult};
use crate::media::sniff::{self, Format};
use crate::media::{ByteStream, SharedMedia};
use crate::metrics::Metrics;
use crate::store::{FileRecord, FileStore, NewFile};

/// Largest image accepted (10 MiB).
pub const MAX_IMAGE: u64 = 10 * 1024 * 1024;
/// Largest video accepted (100 MiB).
pub const MAX_VIDEO: u64 = 100 * 1024 * 1024;
/// Largest voice note accepted (10 MiB, DESIGN.md §7).
pub const MAX_VOICE: u64 = 10 * 1024 * 1024;
/// Longest voice note accepted (DESIGN.md §7).
pub const MAX_VOICE_LENGTH: Duration = Duration::from_secs(60);
/// Largest file of any type accepted (100 MiB, DESIGN.md §7).
pub const MAX_FILE: u64 = 100 * 1024 * 1024;
/// Room for multipart framing on top of the largest file, when judging a declared `Content-Length`.
pub const MULTIPART_OVERHEAD: u64 = 64 * 1024;
/// Bytes read before deciding the type (and, for JPEG, finding the size).
const HEAD: usize = 64 * 1024;
/// Copy buffer while spooling.
const CHUNK: usize = 64 * 1024;

/// The most of a refused upload read and dropped before the refusal is sent (see [`Media::receive`]): as much as
/// an image may be, so an image client sending a wrong file reads the refusal; and for how long at most.
const REFUSED_DRAIN_MAX: u64 = MAX_IMAGE;
const REFUSED_DRAIN_TIME: Duration = Duration::from_secs(5);

/// Removes a temp file when dropped, unless it was handed on.
struct TempFile(Option<PathBuf>);

/// An upload's bytes as they arrive, with what the client declared about them.
pub struct Upload<R> {
    pub reader: R,
    /// The part's declared `Content-Type`.
    pub declared_type: Option<String>,
    /// The part's declared file name.
    pub file_name: Option<String>,
    /// A file of any type, to be sent as a `file` message (always downloaded as an attachment), rather than
    /// media typed by its bytes.
    pub as_file: bool,
}

/// An upload read whole into a private temp file (removed if it is never stored), typed by its bytes.
pub struct Received {
    temp: TempFile,
    /// What the bytes are, when they are a format the server knows (always, unless `as_file`).
    format: Option<Format>,
    size: u64,
    sha256: String,
    file_name: Option<String>,
    as_file: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[derive(Clone)]
pub struct Media {
    store: SharedMedia,
    files: Arc<dyn FileStore>,
    tmp: PathBuf,
    per_user: Arc<DefaultKeyedRateLimiter<i64>>,
    /// Upload volume per user, in MiB (one cell per MiB).
    volume: Arc<DefaultKeyedRateLimiter<i64>>,
    bytes_read: prometheus::IntCounter,
}

const MIB: u64 = 1024 * 1024;

/// A file the caller may read: what a download answers with, and its bytes.
pub struct Authorized {
    file: FileRecord,
    store: SharedMedia,
}

impl Authorized {
    pub fn id(&self) -> i64 {
        self.file.id
    }
    pub fn content_type(&self) -> &str {
        &self.file.content_type
    }
    /// A `file` (any type, always downloaded as an attachment) rather than media.
    pub fn is_attachment(&self) -> bool {
        self.file.kind == "file"
    }
    /// The sanitised name a `file` was uploaded with.
    pub fn name(&self) -> Option<&str> {
        self.file.name.as_deref()
    }
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.file.size as u64
    }
    /// The SHA-256 of the bytes, in hex (the download's ETag).
    pub fn sha256(&self) -> &str {
        &self.file.sha256
    }
    /// The bytes, or the inclusive byte range `(first, last)` of them.
    pub async fn read(&self, range: Option<(u64, u64)>) -> AppResult<ByteStream> {
        self.store.get(&self.file.storage_key, range).await.map_err(AppError::internal)
    }
}

fn too_large(limit: u64, what: &str) -> AppError {
    AppError::new(ErrorCode::FileTooLarge, format!("{what} may be at most {} MiB", limit / (1024 * 1024)))
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

impl Media {
    /// `tmp` must be on the same filesystem as a local store's root (both live under the data dir).
    pub fn new(
        store: SharedMedia,
        files: Arc<dyn FileStore>,
        tmp: PathBuf,
        uploads_per_minute: u32,
        mib_per_hour: u32,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        crate::private_fs::create_dir(&tmp)?;
        let nz = |n: u32| NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
        let per_user = Arc::new(RateLimiter::keyed(Quota::per_minute(nz(uploads_per_minute))));
        let volume = Arc::new(RateLimiter::keyed(Quota::per_hour(nz(mib_per_hour))));
        Ok(Self { store, files, tmp, per_user, volume, bytes_read: metrics.upload_bytes.clone() })
    }

    /// Charges `bytes` to the user's hourly volume: 429 `upload_quota_exceeded` (with `Retry-After`) when the
    /// quota cannot cover them now.
    fn charge_volume(&self, user: i64, bytes: u64) -> AppResult<()> {
        let mib = NonZeroU32::new(bytes.div_ceil(MIB).clamp(1, u32::MAX as u64) as u32).unwrap_or(NonZeroU32::MIN);
        let refused = |secs: u64| {
            AppError::new(ErrorCode::UploadQuotaExceeded, "your hourly upload volume is used up").retry_after(secs)
        };
        match self.volume.check_key_n(&user, mib) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                Err(refused(not_until.wait_time_from(DefaultClock::default().now()).as_secs_f64().ceil() as u64))
            }
            Err(_) => Err(refused(3600)),
        }
    }

    pub fn store(&self) -> &SharedMedia {
        &self.store
    }

    pub fn info(f: &FileRecord) -> FileInfo {
        FileInfo {
            id: f.id,
            url: format!("/api/files/{}", f.id),
            content_type: f.content_type.clone(),
            size: f.size,
            kind: FileKind::parse(&f.kind),
            width: f.width,
            height: f.height,
            name: f.name.clone(),
            duration_ms: f.duration_ms,
        }
    }

    /// Checks what can be judged before the body is read: the user's upload rate (429), a declared body larger
    /// than any file may be (413, `declared_len` counts the multipart framing too), and the hourly volume, charged
    /// up front from the declared length (a body of unknown length is charged once read, by [`Media::save`]).
    pub fn admit(&self, user: i64, declared_len: Option<u64>) -> AppResult<()> {
        if let Err(not_until) = self.per_user.check_key(&user) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(AppError::too_many_requests(wait.as_secs_f64().ceil() as u64));
        }
        if declared_len.is_some_and(|n| n > MAX_VIDEO + MULTIPART_OVERHEAD) {
            return Err(too_large(MAX_VIDEO, "a video"));
        }
        if let Some(n) = declared_len {
            self.charge_volume(user, n)?;
        }
        Ok(())
    }

    /// Reads an upload's bytes into a private temp file, refusing as soon as it can tell: bytes of an unaccepted
    /// type or disagreeing with the declared type or name (415), an empty file (422), a file over its kind's
    /// limit (413, the moment the limit is crossed). Read errors are the client's body ending badly (400
    /// `invalid_multipart`). Nothing is stored until [`Media::save`].
    pub async fn receive<R>(&self, upload: Upload<R>) -> AppResult<Received>
    where
        R: AsyncRead + Unpin + Send,
    {
        let Upload { mut reader, declared_type, file_name, as_file } = upload;
        let read_err =
            |e: std::io::Error| AppError::new(ErrorCode::InvalidMultipart, format!("reading the upload: {e}"));
        let mut head = vec![0u8; HEAD];
        let mut filled = 0;
        while filled < HEAD {
            let n = reader.read(&mut head[filled..]).await.map_err(read_err)?;
            if n == 0 {
                break;
            }
            filled += n;
            self.bytes_read.inc_by(n as u64);
        }
        head.truncate(filled);
        if head.is_empty() {
            return Err(AppError::new(ErrorCode::EmptyFile, "the file is empty"));
        }
        let format = sniff::detect_declared(&head, declared_type.as_deref());
        let (limit, what) = match self.limit_of(format, as_file, declared_type.as_deref(), file_name.as_deref()) {
            Ok(l) => l,
            Err(refusal) => {
                // Refused by its first bytes: read (and drop) the rest of a moderate body before answering, so that
                // the client, still sending, reads this refusal instead of a reset connection.
                let (mut rest, mut sink) = ((&mut reader).take(REFUSED_DRAIN_MAX), tokio::io::sink());
                let _ = tokio::time::timeout(REFUSED_DRAIN_TIME, tokio::io::copy(&mut rest, &mut sink)).await;
                return Err(refusal);
            }
        };
        if head.len() as u64 > limit {
            return Err(too_large(limit, what));
        }
        self.spool(reader, head, limit, what, format, file_name, as_file).await
    }

    /// The size limit of an upload and what it is, by its sniffed format; a refusal when the format is not
    /// accepted or contradicts what the client declared.
    fn limit_of(
        &self,
        format: Option<Format>,
        as_file: bool,
        declared_type: Option<&str>,
        file_name: Option<&str>,
    ) -> AppResult<(u64, &'static str)> {
        Ok(if as_file {
            (MAX_FILE, "a file")
        } else {
            let format = format.ok_or_else(|| {
                AppError::new(
                    ErrorCode::UnsupportedMediaType,
                    "only JPEG, PNG, GIF and WebP images, MP4, QuickTime and WebM videos and Ogg, WebM, MP4 and MP3 \
                     voice notes are accepted as media (upload with `kind=file` to send any file)",
                )
            })?;
            if !sniff::agrees(format, declared_type, file_name) {
                return Err(AppError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!(
                        "the file's bytes are {}, which its declared type or name contradicts",
                        format.content_type()
                    ),
                ));
            }
            if format.is_image() {
                (MAX_IMAGE, "an image")
            } else if format.is_audio() {
                (MAX_VOICE, "a voice note")
            } else {
                (MAX_VIDEO, "a video")
            }
        })
    }

    /// Writes an accepted upload (its first bytes `head` already read) to a private temp file, refusing it the
    /// moment it crosses `limit`.
    #[allow(clippy::too_many_arguments)]
    async fn spool<R>(
        &self,
        mut reader: R,
        head: Vec<u8>,
        limit: u64,
        what: &'static str,
        format: Option<Format>,
        file_name: Option<String>,
        as_file: bool,
    ) -> AppResult<Received>
    where
        R: AsyncRead + Unpin + Send,
    {
        let read_err =
            |e: std::io::Error| AppError::new(ErrorCode::InvalidMultipart, format!("reading the upload: {e}"));
        let path = self.tmp.join(format!("upload-{}", random_hex(12)));
        let temp = TempFile(Some(path.clone()));
        let mut out = tokio::fs::OpenOptions::from(crate::private_fs::file_options())
            .open(&path)
            .await
            .map_err(AppError::internal)?;
        let mut hasher = Sha256::new();
        hasher.update(&head);
        out.write_all(&head).await.map_err(AppError::internal)?;
        let mut size = head.len() as u64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = reader.read(&mut buf).await.map_err(read_err)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            self.bytes_read.inc_by(n as u64);
            if size > limit {
                return Err(too_large(limit, what));
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).await.map_err(AppError::internal)?;
        }
        out.flush().await.map_err(AppError::internal)?;
        let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>();
        Ok(Received { temp, format, size, sha256, file_name, as_file })
    }

    /// Stores a received upload: its volume charged if its length was not declared, an image's header decoded by
    /// the image library (bytes that only start like an image are refused, 415), the bytes handed to the media
    /// store and the file's row written.
    pub async fn save(&self, user: i64, received: Received, declared_len: Option<u64>) -> AppResult<FileInfo> {
        let Received { mut temp, format, size, sha256, file_name, as_file } = received;
        let path = temp.0.clone().ok_or_else(|| AppError::internal(anyhow::anyhow!("upload without a temp file")))?;
        if declared_len.is_none() {
            self.charge_volume(user, size)?;
        }
        let kind = match format {
            _ if as_file => "file",
            Some(f) if f.is_image() => "image",
            Some(f) if f.is_audio() => "voice",
            Some(_) => "video",
            None => return Err(AppError::internal(anyhow::anyhow!("untyped media upload"))),
        };
        let dims = match format {
            Some(format) if kind == "image" => {
                // The header decoded by the image library: bytes that only start like an image are refused.
                let file = path.clone();
                let size = tokio::task::spawn_blocking(move || {
                    std::fs::File::open(&file).ok().and_then(|f| sniff::image_size(format, std::io::BufReader::new(f)))
                })
                .await
                .map_err(AppError::internal)?;
                Some(size.ok_or_else(|| {
                    AppError::new(
                        ErrorCode::UnsupportedMediaType,
                        format!("the file starts like {} but its header is not a valid one", format.content_type()),
                    )
                })?)
            }
            _ => None,
        };
        let duration = match format {
            Some(format) if kind == "voice" => {
                // Read from the container by its demuxer; a recording whose length cannot be told is refused.
                let file = path.clone();
                let length = tokio::task::spawn_blocking(move || {
                    let f = std::fs::File::open(&file).ok()?;
                    crate::media::audio::duration(Box::new(f), format.extension())
                })
                .await
                .map_err(AppError::internal)?
                .ok_or_else(|| {
                    AppError::new(
                        ErrorCode::UnsupportedMediaType,
                        format!("the file starts like {} but its length cannot be read", format.content_type()),
                    )
                })?;
                if length > MAX_VOICE_LENGTH {
                    return Err(AppError::new(
                        ErrorCode::VoiceTooLong,
                        format!("a voice note is at most 60 seconds; this one is {:.1}", length.as_secs_f64()),
                    ));
                }
                Some(length.as_millis() as i64)
            }
            _ => None,
        };
        let content_type = format.map_or("application/octet-stream", Format::content_type);
        let key = format!("{}/{}", random_hex(1), random_hex(16));
        temp.0 = None; // the store consumes the temp file from here on
        if let Err(e) = self.store.put_file(&key, &path, content_type, size).await {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(AppError::internal(e));
        }
        let new = NewFile {
            uploader_id: user,
            storage_key: key.clone(),
            kind,
            content_type,
            size: size as i64,
            width: dims.map(|d| d.0 as i32),
            height: dims.map(|d| d.1 as i32),
            sha256,
            name: as_file.then(|| sanitize_file_name(file_name.as_deref().unwrap_or_default())),
            duration_ms: duration,
        };
        match self.files.create_file(new).await {
            Ok(f) => {
                tracing::info!(file_id = f.id, size, content_type, kind, "file uploaded");
                Ok(Self::info(&f))
            }
            Err(e) => {
                let _ = self.store.delete(&key).await;
                Err(e.into())
            }
        }
    }

    /// Makes an avatar of a received image (DESIGN.md §8): a square 256×256 JPEG thumbnail with no metadata
    /// ([`crate::media::avatar::thumbnail`]), stored under `avatars/<sha256 of the thumbnail>.jpg`; returns that
    /// key. Anything but a decodable image is 415 `unsupported_media_type`.
    pub async fn save_avatar(&self, user: i64, received: Received, declared_len: Option<u64>) -> AppResult<String> {
        let Received { temp, format, size, .. } = received;
        if declared_len.is_none() {
            self.charge_volume(user, size)?;
        }
        if !format.is_some_and(Format::is_image) {
            return Err(AppError::new(ErrorCode::UnsupportedMediaType, "an avatar is a JPEG, PNG, GIF or WebP image"));
        }
        let path = temp.0.clone().ok_or_else(|| AppError::internal(anyhow::anyhow!("upload without a temp file")))?;
        let jpeg = tokio::task::spawn_blocking(move || crate::media::avatar::thumbnail(&path))
            .await
            .map_err(AppError::internal)?
            .map_err(|e| AppError::new(ErrorCode::UnsupportedMediaType, format!("the image cannot be decoded: {e}")))?;
        drop(temp);
        let digest = Sha256::digest(&jpeg).iter().map(|b| format!("{b:02x}")).collect::<String>();
        let key = format!("avatars/{digest}.jpg");
        let out = self.tmp.join(format!("avatar-{}", random_hex(12)));
        let thumb = TempFile(Some(out.clone()));
        let mut file = tokio::fs::OpenOptions::from(crate::private_fs::file_options())
            .open(&out)
            .await
            .map_err(AppError::internal)?;
        file.write_all(&jpeg).await.map_err(AppError::internal)?;
        file.flush().await.map_err(AppError::internal)?;
        drop(file);
        let mut thumb = thumb;
        thumb.0 = None; // the store consumes the temp file from here on
        if let Err(e) = self.store.put_file(&key, &out, "image/jpeg", jpeg.len() as u64).await {
            let _ = tokio::fs::remove_file(&out).await;
            return Err(AppError::internal(e));
        }
        tracing::info!(user, key, "avatar stored");
        Ok(key)
    }

    /// An avatar's bytes by its file name (`<64 hex digits>.jpg`): any signed-in user may read them. 404 for a
    /// name that is not an avatar's.
    pub async fn avatar(&self, name: &str) -> AppResult<ByteStream> {
        let valid = name.len() == 68
            && name.ends_with(".jpg")
            && name[..64].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let gone = || AppError::new(ErrorCode::NotFound, "no such avatar");
        if !valid {
            return Err(gone());
        }
        self.store.get(&format!("avatars/{name}"), None).await.map_err(|e| {
            tracing::debug!(name, error = %e, "avatar not readable");
            gone()
        })
    }

    /// The file, if `user` may read it: its uploader, or someone it was shared with in a conversation. A file
    /// whose every message was recalled is gone for everyone (404, DESIGN.md §7).
    pub async fn authorize(&self, user: i64, file_id: i64) -> AppResult<Authorized> {
        let gone = || AppError::new(ErrorCode::FileNotFound, "no such file");
        let file = self.files.file(file_id).await?.ok_or_else(gone)?;
        if self.files.only_in_recalled(file_id).await? {
            return Err(gone());
        }
        if file.uploader_id != user && !self.files.shared_with(file_id, user).await? {
            return Err(AppError::new(ErrorCode::FileForbidden, "this file was not shared with you"));
        }
        Ok(Authorized { file, store: self.store.clone() })
    }

    /// Removes uploads no message referenced within `max_age`; returns how many.
    pub async fn cleanup(&self, max_age: Duration) -> AppResult<usize> {
        let before = chrono::Utc::now() - chrono::Duration::from_std(max_age).map_err(AppError::internal)?;
        let mut removed = 0;
        loop {
            let batch = self.files.take_unreferenced(before, 100).await?;
            if batch.is_empty() {
                return Ok(removed);
            }
            for f in &batch {
                if let Err(e) = self.store.delete(&f.storage_key).await {
                    tracing::warn!(file_id = f.id, error = %e, "could not delete an expired upload's bytes");
                }
            }
            removed += batch.len();
        }
    }
}

/// The format the stored content type names (for the download's file-name extension).
pub fn extension_of(content_type: &str) -> &'static str {
    sniff::ALL.into_iter().find(|f| f.content_type() == content_type).map_or("bin", Format::extension)
}

/// Longest file name kept, in characters.
pub const MAX_FILE_NAME: usize = 200;

/// A file's name as uploaded, made safe to show and to offer as a download name: the last path component,
/// without control characters or `\ / : * ? " < > |`, without leading dots or surrounding spaces, at most
/// [`MAX_FILE_NAME`] characters (the extension kept); `file` when nothing is left.
pub fn sanitize_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|'))
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim();
    if cleaned.is_empty() {
        return "file".into();
    }
    if cleaned.chars().count() <= MAX_FILE_NAME {
        return cleaned.to_string();
    }
    let (stem, ext) = match cleaned.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() && e.chars().count() <= 16 => (s, Some(e)),
        _ => (cleaned, None),
    };
    let keep = MAX_FILE_NAME - ext.map_or(0, |e| e.chars().count() + 1);
    let stem: String = stem.chars().take(keep).collect();
    match ext {
        Some(e) => format!("{stem}.{e}"),
        None => stem,
    }
}

#[cfg(test)]
mod tests {
    use super::sanitize_file_name;

    #[test]
    fn file_names_keep_what_is_safe_to_show_and_to_save() {
        assert_eq!(sanitize_file_name("报告 2026.pdf"), "报告 2026.pdf");
        assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_file_name("C:\\Users\\me\\a.txt"), "a.txt");
        assert_eq!(sanitize_file_name("a\u{0}b\r\n\"<c>.html"), "abc.html");
        assert_eq!(sanitize_file_name("  .hidden "), "hidden");
        assert_eq!(sanitize_file_name(""), "file");
        assert_eq!(sanitize_file_name("..."), "file");
        let long = format!("{}.tar.gz", "x".repeat(300));
        let kept = sanitize_file_name(&long);
        assert_eq!((kept.chars().count(), kept.ends_with(".gz")), (200, true));
    }
}
