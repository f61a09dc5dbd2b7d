//! `POST /api/messages/upload` and `GET /api/files/{id}`: media in and out.

use bytes::Bytes;
use futures_util::StreamExt;
use poem::http::{header, HeaderMap, StatusCode};
use poem::web::{Data, Multipart};
use poem::{Body, FromRequest, IntoResponse, Request, RequestBody, Response};
use poem_openapi::payload::Json;
use poem_openapi::registry::{
    MetaMediaType, MetaRequest, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
};
use poem_openapi::{ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, OpenApi};

use super::auth::BearerAuth;
use super::ApiTags;
use crate::domain::model::FileInfo;
use crate::error::AppError;
use crate::error::ErrorCode;
use crate::service::media::{extension_of, Received, Upload};
use crate::state::AppState;

pub struct FilesApi;

/// The upload body, read as a stream (never buffered whole): `multipart/form-data` with the file in `file`.
pub struct UploadBody(pub(super) Multipart);

impl<'a> ApiExtractor<'a> for UploadBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn request_meta() -> Option<MetaRequest> {
        let mut file = MetaSchema::new_with_format("string", "binary");
        file.description = Some(
            "Media, typed by its bytes: JPEG, PNG, GIF or WebP images up to 10 MiB; MP4, QuickTime or WebM videos up \
             to 100 MiB; Ogg, WebM, MP4 or MP3 voice notes (declared `audio/…`) up to 10 MiB and 60 s. With \
             `kind=file`: any file up to 100 MiB.",
        );
        file.min_length = Some(1);
        let mut schema = MetaSchema::new("object");
        schema.properties = vec![("file", MetaSchemaRef::Inline(Box::new(file)))];
        schema.required = vec!["file"];
        Some(MetaRequest {
            description: Some(
                "The file, in the multipart field `file`, and no other field (422 `unexpected_field`). Its type is \
                 decided by its bytes.",
            ),
            content: vec![MetaMediaType {
                content_type: "multipart/form-data",
                schema: MetaSchemaRef::Inline(Box::new(schema)),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        <Multipart as FromRequest>::from_request(request, body).await.map(UploadBody).map_err(|e| {
            AppError::new(ErrorCode::InvalidMultipart, format!("expected a multipart/form-data body: {e}")).into()
        })
    }
}

/// What an upload is for, when not media typed by its bytes.
#[derive(Debug, Clone, Copy, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
enum UploadKind {
    /// Any file, sent as a `file` message.
    File,
}

#[derive(ApiResponse)]
enum Uploaded {
    /// Stored; use its `id` as `file_id` in an image or video message.
    #[oai(status = 201)]
    File(Json<FileInfo>),
}

/// A file's bytes (or some of them); documented by hand because the body is a raw stream with its own headers.
pub struct FileBody(Response);

impl IntoResponse for FileBody {
    fn into_response(self) -> Response {
        self.0
    }
}

impl ApiResponse for FileBody {
    fn meta() -> MetaResponses {
        // The media types a stored file is served as (those `media::sniff` knows, and `application/octet-stream`
        // for a `file` of any other type), plus multipart/byteranges for several ranges.
        let binary = |with_ranges: bool| {
            let ranges = with_ranges.then_some("multipart/byteranges");
            crate::media::sniff::ALL
                .into_iter()
                .map(crate::media::sniff::Format::content_type)
                .chain(["application/octet-stream"])
                .chain(ranges)
                .map(|content_type| MetaMediaType {
                    content_type,
                    schema: MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "binary"))),
                })
                .collect()
        };
        let r = |status, description, content| MetaResponse {
            description,
            status: Some(status),
            status_range: None,
            content,
            headers: vec![],
        };
        MetaResponses {
            responses: vec![
                r(200, "The whole file, with its sniffed Content-Type, ETag and Cache-Control: private", binary(false)),
                r(206, "The requested range(s); several ranges come as multipart/byteranges", binary(true)),
                r(304, "Not modified (If-None-Match matched the ETag)", vec![]),
                r(416, "No requested range lies within the file", vec![]),
            ],
        }
    }

    fn register(_registry: &mut Registry) {}
}

/// Most ranges one request may ask for.
const MAX_RANGES: usize = 16;

/// Parses `Range: bytes=…` against a file of `size` bytes: `Ok(None)` for no header, or one to ignore (another
/// unit, an invalid ranges-specifier, more than [`MAX_RANGES`] ranges: the whole file is served, RFC 9110 §14.2),
/// `Ok(Some(ranges))` for satisfiable inclusive ranges, `Err(())` when valid but none is satisfiable (416).
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<Vec<(u64, u64)>>, ()> {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Ok(None) };
    let Some(spec) = v.trim().strip_prefix("bytes=") else { return Ok(None) };
    let mut out = Vec::new();
    for part in spec.split(',') {
        let Some(range) = parse_range_spec(part.trim(), size) else { return Ok(None) };
        if let Some(range) = range.filter(|r| r.0 < size) {
            out.push(range);
        }
    }
    if out.len() > MAX_RANGES {
        return Ok(None);
    }
    if out.is_empty() {
        return Err(());
    }
    Ok(Some(out))
}

/// One range-spec: `None` when it is invalid, `Some(None)` when it selects nothing of the file.
fn parse_range_spec(part: &str, size: u64) -> Option<Option<(u64, u64)>> {
    let (a, b) = part.split_once('-')?;
    let digits = |s: &str| -> Option<u64> { s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok()).flatten() };
    Some(match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n = digits(suffix)?;
            (n > 0 && size > 0).then(|| (size.saturating_sub(n), size - 1))
        }
        (start, "") => Some((digits(start)?, size.saturating_sub(1))),
        (start, end) => {
            let (s, e) = (digits(start)?, digits(end)?);
            if e < s {
                return None;
            }
            Some((s, e.min(size.saturating_sub(1))))
        }
    })
}

/// Reads and drops what remains of a refused upload (up to the largest avatar, 10 MiB), so that the refusal
/// reaches the client: answered while it was still writing, the connection's close met its writes as a broken
/// pipe and the client saw a transport error instead of the 403 (a flaky test found it). Returns whether the
/// body was read to its end; if not, the reply must close the connection.
pub(super) async fn discard(body: UploadBody) -> bool {
    const DISCARD_LIMIT: u64 = 10 * 1024 * 1024;
    let mut multipart = body.0;
    let mut left = DISCARD_LIMIT;
    loop {
        match multipart.next_field().await {
            Ok(None) => return true,
            Ok(Some(field)) => {
                let mut r = tokio::io::AsyncReadExt::take(field.into_async_read(), left + 1);
                match tokio::io::copy(&mut r, &mut tokio::io::sink()).await {
                    Ok(n) if n <= left => left -= n,
                    _ => return false,
                }
            }
            Err(_) => return false,
        }
    }
}

/// The upload's HTTP framing around the media service: the body is the multipart field `file` and nothing else
/// (as the OpenAPI document says), and must end properly after it (a truncated body is not a file).
/// Reads the upload in the multipart field `file` (and nothing else) into a temp file, checked as
/// [`crate::service::media::Media::receive`] checks it.
pub(super) async fn receive_upload(
    state: &AppState,
    user: i64,
    mut multipart: Multipart,
    declared: Option<u64>,
    as_file: bool,
) -> Result<Received, AppError> {
    state.media.admit(user, declared)?;
    let bad_multipart = |e: poem::error::ParseMultipartError| {
        AppError::new(ErrorCode::InvalidMultipart, format!("the multipart body is not valid: {e}"))
    };
    let unexpected = || AppError::new(ErrorCode::UnexpectedField, "the multipart body has fields other than `file`");
    let mut others = false;
    let field = loop {
        match multipart.next_field().await.map_err(bad_multipart)? {
            Some(f) if f.name() == Some("file") => break f,
            Some(other) => {
                // Read a little of it, so that the refusal names the field rather than a broken body.
                others = true;
                let mut r = tokio::io::AsyncReadExt::take(other.into_async_read(), 64 * 1024);
                let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
            }
            None => return Err(AppError::new(ErrorCode::MissingFile, "the multipart body has no `file` field")),
        }
    };
    if others {
        return Err(unexpected());
    }
    let upload = Upload {
        declared_type: field.content_type().map(str::to_string),
        file_name: field.file_name().map(str::to_string),
        reader: Box::pin(field.into_async_read()),
        as_file,
    };
    let received = state.media.receive(upload).await?;
    if multipart.next_field().await.map_err(bad_multipart)?.is_some() {
        return Err(unexpected());
    }
    Ok(received)
}

async fn receive_and_save(
    state: &AppState,
    user: i64,
    multipart: Multipart,
    declared: Option<u64>,
    as_file: bool,
) -> Result<FileInfo, AppError> {
    let received = receive_upload(state, user, multipart, declared, as_file).await?;
    state.media.save(user, received, declared).await
}

#[OpenApi(tag = "ApiTags::Messages")]
impl FilesApi {
    /// Upload an image, video or voice note (multipart field `file`), streamed; its type is decided by its
    /// bytes. With `kind=file`, any file, to send as a `file` message (always downloaded as an attachment).
    #[oai(path = "/api/messages/upload", method = "post", operation_id = "uploadFile")]
    async fn upload(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        req: &Request,
        /// `file`: accept any type, for a `file` message. Absent: media typed by its bytes.
        kind: poem_openapi::param::Query<Option<UploadKind>>,
        body: UploadBody,
    ) -> Result<Uploaded, AppError> {
        let declared = req.header(header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        let as_file = kind.0.is_some();
        let file = receive_and_save(&state, auth.user_id(), body.0, declared, as_file)
            .await
            .map_err(AppError::closing_connection)?;
        Ok(Uploaded::File(Json(file)))
    }

    /// Download a file: to its uploader and to those it was sent to. `Range` is honoured (206).
    #[oai(path = "/api/files/:id", method = "get", operation_id = "downloadFile")]
    async fn download(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        req: &Request,
        id: poem_openapi::param::Path<i64>,
    ) -> Result<FileBody, AppError> {
        let file = std::sync::Arc::new(state.media.authorize(auth.user_id(), id.0).await?);
        let size = file.size();
        let etag = format!("\"{}\"", file.sha256());
        let common = |b: poem::ResponseBuilder| {
            b.header(header::ETAG, &etag)
                .header(header::CACHE_CONTROL, "private, max-age=31536000, immutable")
                .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
                .header(header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox")
                .header(header::ACCEPT_RANGES, "bytes")
                .header(header::CONTENT_DISPOSITION, disposition(&file))
        };
        if req.header(header::IF_NONE_MATCH).is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
        {
            return Ok(FileBody(common(Response::builder()).status(StatusCode::NOT_MODIFIED).finish()));
        }
        let ranges = match parse_range(req.headers(), size) {
            Ok(r) => r,
            Err(()) => {
                return Ok(FileBody(
                    Response::builder()
                        .status(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                        .finish(),
                ))
            }
        };
        let resp = match ranges.as_deref() {
            None => {
                let stream = file.read(None).await?;
                common(Response::builder())
                    .status(StatusCode::OK)
                    .content_type(file.content_type())
                    .header(header::CONTENT_LENGTH, size)
                    .body(Body::from_bytes_stream(stream))
            }
            Some([(start, end)]) => {
                let stream = file.read(Some((*start, *end))).await?;
                common(Response::builder())
                    .status(StatusCode::PARTIAL_CONTENT)
                    .content_type(file.content_type())
                    .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"))
                    .header(header::CONTENT_LENGTH, end - start + 1)
                    .body(Body::from_bytes_stream(stream))
            }
            Some(many) => {
                let boundary = format!("gochat-{:016x}", rand::random::<u64>());
                let mut parts = Vec::new();
                let mut length = 0u64;
                for (start, end) in many {
                    let head = format!(
                        "\r\n--{boundary}\r\nContent-Type: {}\r\nContent-Range: bytes {start}-{end}/{size}\r\n\r\n",
                        file.content_type()
                    );
                    length += head.len() as u64 + (end - start + 1);
                    parts.push((Bytes::from(head), (*start, *end)));
                }
                let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
                length += tail.len() as u64;
                let file = file.clone();
                let body = futures_util::stream::iter(parts)
                    .then(move |(head, range)| {
                        let file = file.clone();
                        async move {
                            let data = file.read(Some(range)).await.map_err(std::io::Error::other)?;
                            let head = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(head) });
                            Ok::<_, std::io::Error>(head.chain(data))
                        }
                    })
                    .map(|r| match r {
                        Ok(s) => s.boxed(),
                        Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
                    })
                    .flatten()
                    .chain(futures_util::stream::once(async move { Ok(tail) }));
                common(Response::builder())
                    .status(StatusCode::PARTIAL_CONTENT)
                    .content_type(format!("multipart/byteranges; boundary={boundary}"))
                    .header(header::CONTENT_LENGTH, length)
                    .body(Body::from_bytes_stream(body))
            }
        };
        Ok(FileBody(resp))
    }
}

/// How a download is offered: media inline, named by its id; a `file` always as an attachment (never rendered
/// by the browser, whatever its type), under its sanitised original name (RFC 6266, with the RFC 8187 UTF-8
/// form for names that are not plain ASCII).
fn disposition(file: &crate::service::media::Authorized) -> String {
    match (file.is_attachment(), file.name()) {
        (true, name) => {
            let name = name.unwrap_or("file");
            let ascii: String = name
                .chars()
                .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
                .collect();
            let encoded: String = name
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
        }
        (false, _) => format!("inline; filename=\"file-{}.{}\"", file.id(), extension_of(file.content_type())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::RANGE, v.parse().unwrap());
        m
    }

    #[test]
    fn ranges_parse_like_rfc_9110() {
        assert_eq!(parse_range(&HeaderMap::new(), 100), Ok(None));
        assert_eq!(parse_range(&h("bytes=0-9"), 100), Ok(Some(vec![(0, 9)])));
        assert_eq!(parse_range(&h("bytes=90-"), 100), Ok(Some(vec![(90, 99)])));
        assert_eq!(parse_range(&h("bytes=-10"), 100), Ok(Some(vec![(90, 99)])));
        assert_eq!(parse_range(&h("bytes=95-200"), 100), Ok(Some(vec![(95, 99)])));
        assert_eq!(parse_range(&h("bytes=0-0, 10-19,50-"), 100), Ok(Some(vec![(0, 0), (10, 19), (50, 99)])));
        assert_eq!(parse_range(&h("bytes=100-"), 100), Err(()));
        assert_eq!(parse_range(&h("bytes=-0"), 100), Err(()), "valid, selects nothing");
        // An invalid ranges-specifier is ignored (the whole file), not refused.
        for invalid in ["bytes=5-1", "bytes=x-y", "bytes=zz", "bytes=0-1,zz", "bytes=+1-2", "items=0-1"] {
            assert_eq!(parse_range(&h(invalid), 100), Ok(None), "{invalid}");
        }
        let many = format!("bytes={}", (0..17).map(|i| format!("{i}-{i}")).collect::<Vec<_>>().join(","));
        assert_eq!(parse_range(&h(&many), 100), Ok(None), "more ranges than served: the whole file");
    }
}
