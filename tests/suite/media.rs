//! Media over real HTTP on both stores (local disk with SQLite, S3 via a real S3 server with Postgres + Redis):
//! uploads typed by their bytes and limited while streaming, image and video messages, ranged downloads, access
//! control, and cleanup of unused uploads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{uniq, TestEnv, TestNode};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub(crate) const BOUNDARY: &str = "gochat-test-boundary";

/// A PNG chunk: length, type, data, CRC-32 of type and data.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u32).to_be_bytes().to_vec();
    v.extend(kind);
    v.extend(data);
    v.extend(crc32fast::hash(&v[4..]).to_be_bytes());
    v
}

/// A PNG of 320 × 240 whose header is valid, padded to `len` bytes with a private ancillary chunk (which
/// decoders skip) before its image data.
pub(crate) fn png(len: usize) -> Vec<u8> {
    let mut ihdr = 320u32.to_be_bytes().to_vec();
    ihdr.extend(240u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend(chunk(b"IHDR", &ihdr));
    let tail = [chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]), chunk(b"IEND", &[])].concat();
    let pad = len.saturating_sub(v.len() + tail.len() + 12);
    v.extend(chunk(b"pADd", &(0..pad).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>()));
    v.extend(tail);
    v
}

fn mp4(len: usize) -> Vec<u8> {
    let mut v = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
    v.extend((0..len.saturating_sub(v.len())).map(|i| (i * 13 % 253) as u8));
    v
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn part_head(name: &str, content_type: &str) -> Vec<u8> {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes()
}

pub(crate) fn multipart(name: &str, content_type: &str, data: &[u8]) -> Vec<u8> {
    let mut body = part_head(name, content_type);
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload_raw(node: &TestNode, token: &str, body: Vec<u8>) -> crate::common::Reply {
    node.raw(
        reqwest::Method::POST,
        "/api/messages/upload",
        Some(token),
        Some((&format!("multipart/form-data; boundary={BOUNDARY}"), body)),
    )
    .await
}

pub(crate) async fn upload(node: &TestNode, token: &str, name: &str, ct: &str, data: &[u8]) -> Value {
    let r = upload_raw(node, token, multipart(name, ct, data)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

pub(crate) async fn download(node: &TestNode, token: Option<&str>, id: i64, range: Option<&str>) -> reqwest::Response {
    let mut req = node.http.get(node.url(&format!("/api/files/{id}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(r) = range {
        req = req.header("range", r);
    }
    req.send().await.unwrap()
}

/// Uploads `total` bytes that begin like `head`, pulled lazily; returns the reply (`None` when the server closed
/// the connection before the client read a reply, as HTTP/1.1 servers do on an early refusal) and how many bytes
/// the client managed to hand to the connection.
async fn streamed_upload(
    node: &TestNode,
    token: &str,
    head: Vec<u8>,
    total: usize,
    declare_length: bool,
) -> (Option<StatusCode>, u64) {
    let pulled = Arc::new(AtomicU64::new(0));
    let mut prefix = part_head("big.bin", "application/octet-stream");
    prefix.extend_from_slice(&head);
    let suffix = format!("\r\n--{BOUNDARY}--\r\n").into_bytes();
    let body_len = prefix.len() + (total - head.len()) + suffix.len();
    let chunk = 256 * 1024;
    let rest = total - head.len();
    let counter = pulled.clone();
    let chunks = std::iter::once(prefix)
        .chain((0..rest.div_ceil(chunk)).map(move |i| vec![0xAB; chunk.min(rest - i * chunk)]))
        .chain(std::iter::once(suffix));
    let stream = futures_util::stream::iter(chunks.map(move |c| {
        counter.fetch_add(c.len() as u64, Ordering::SeqCst);
        Ok::<_, std::io::Error>(c)
    }));
    // A client of its own: the refused upload's connection is closed by the server.
    let mut req = reqwest::Client::new()
        .post(node.url("/api/messages/upload"))
        .bearer_auth(token)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"));
    if declare_length {
        req = req.header("content-length", body_len);
    }
    let status = req.body(reqwest::Body::wrap_stream(stream)).send().await.ok().map(|r| r.status());
    (status, pulled.load(Ordering::SeqCst))
}

/// The files the node holds in its temp dir and (for the local store) under its media dir.
fn leftovers(env: &TestEnv) -> usize {
    fn count(p: &std::path::Path) -> usize {
        std::fs::read_dir(p)
            .map_or(0, |d| d.flatten().map(|e| if e.path().is_dir() { count(&e.path()) } else { 1 }).sum())
    }
    count(&env.dir.path().join("tmp")) + count(&env.dir.path().join("media"))
}

backend_tests! {
    async fn images_and_videos_go_round_trip_one_to_one_and_in_groups(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("pa")).await;
        let (b, tb) = node.user(&uniq("pb")).await;
        let (c, tc) = node.user(&uniq("pc")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        node.befriend((a, &ta), (c, &tc)).await;
        let image = png(200_000);
        let video = mp4(3_000_000);
        let img = upload(&node, &ta, "cat.png", "image/png", &image).await;
        assert_eq!((img["kind"].as_str(), img["content_type"].as_str(), img["size"].as_u64()), (Some("image"), Some("image/png"), Some(200_000)));
        assert_eq!((img["width"].as_i64(), img["height"].as_i64()), (Some(320), Some(240)));
        assert_eq!(img["url"], format!("/api/files/{}", img["id"]));
        let vid = upload(&node, &ta, "clip.mp4", "video/mp4", &video).await;
        assert_eq!((vid["kind"].as_str(), vid["content_type"].as_str()), (Some("video"), Some("video/mp4")));

        let mut b_ws = node.ws(&tb, "d").await;
        b_ws.recv_type("sync").await;
        let sent = node.post("/api/messages/send", Some(&ta), json!({"to_user_id": b, "type": "image", "file_id": img["id"], "text": "look"})).await;
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.body);
        assert_eq!(sent.body["file"]["id"], img["id"]);
        let got = b_ws.collect(1).await;
        assert_eq!((got[0]["type"].as_str(), got[0]["file"]["url"].as_str(), got[0]["text"].as_str()), (Some("image"), img["url"].as_str(), Some("look")));

        let g = node.post("/api/groups", Some(&ta), json!({"name": "Media", "member_ids": [b, c]})).await;
        let gid = g.body["id"].as_i64().unwrap();
        let sent = node.post("/api/messages/send", Some(&ta), json!({"group_id": gid, "type": "video", "file_id": vid["id"]})).await;
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.body);
        let h = node.get(&format!("/api/messages/history?conversation_id=g:{gid}"), &tc).await;
        assert_eq!(h.body["messages"][0]["file"]["kind"], "video");

        // The recipients download the same bytes, with safe headers.
        let r = download(&node, Some(&tb), img["id"].as_i64().unwrap(), None).await;
        assert_eq!(r.status(), StatusCode::OK);
        let hd = r.headers().clone();
        assert_eq!(hd["content-type"], "image/png");
        assert_eq!(hd["content-length"], "200000");
        assert_eq!(hd["x-content-type-options"], "nosniff");
        assert!(hd["cache-control"].to_str().unwrap().contains("private"));
        assert!(hd["content-disposition"].to_str().unwrap().starts_with("inline; filename=\"file-"));
        let etag = hd["etag"].to_str().unwrap().to_string();
        assert_eq!(sha(&r.bytes().await.unwrap()), sha(&image));
        let r = download(&node, Some(&tc), vid["id"].as_i64().unwrap(), None).await;
        assert_eq!(sha(&r.bytes().await.unwrap()), sha(&video), "a group member gets the video");

        // Conditional and ranged requests.
        let r = node.http.get(node.url(&format!("/api/files/{}", img["id"]))).bearer_auth(&tb).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let vid_id = vid["id"].as_i64().unwrap();
        let r = download(&node, Some(&tc), vid_id, Some("bytes=1000-1999")).await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.headers()["content-range"], "bytes 1000-1999/3000000");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &video[1000..2000]);
        let r = download(&node, Some(&tc), vid_id, Some("bytes=0-99, 1500000-1500099, -100")).await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        let boundary = ct.strip_prefix("multipart/byteranges; boundary=").expect("multipart/byteranges").to_string();
        let body = r.bytes().await.unwrap();
        let parts = split_byteranges(&body, &boundary);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], ("bytes 0-99/3000000".to_string(), video[0..100].to_vec()));
        assert_eq!(parts[1], ("bytes 1500000-1500099/3000000".to_string(), video[1_500_000..1_500_100].to_vec()));
        assert_eq!(parts[2], ("bytes 2999900-2999999/3000000".to_string(), video[2_999_900..].to_vec()));
        let r = download(&node, Some(&tc), vid_id, Some("bytes=5000000-")).await;
        assert_eq!((r.status(), r.headers()["content-range"].to_str().unwrap()), (StatusCode::RANGE_NOT_SATISFIABLE, "bytes */3000000"));
    }

    async fn uploads_are_refused_by_their_bytes_and_sizes_and_leave_nothing_behind(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (_, ta) = node.user(&uniq("ra")).await;
        let before = leftovers(&env);

        // What the server read of each body (socket buffers on loopback hold megabytes, so what the client
        // managed to send says little; the node counts what it read).
        let read = || node.metric("gochat_upload_bytes_total", "");
        // 12 MB image: refused once 10 MiB have arrived, long before the end.
        let start = read();
        let (status, _) = streamed_upload(&node, &ta, png(64), 12_000_000, true).await;
        assert!(matches!(status, None | Some(StatusCode::PAYLOAD_TOO_LARGE)), "{status:?}");
        let took = read() - start;
        assert!(took <= (10 * 1024 * 1024 + 128 * 1024) as f64, "read {took} bytes of a 12 MB image");
        // 101 MB video with a declared length: refused before reading any of it.
        let start = read();
        let (status, pulled) = streamed_upload(&node, &ta, mp4(64), 101 * 1024 * 1024, true).await;
        assert!(matches!(status, None | Some(StatusCode::PAYLOAD_TOO_LARGE)), "{status:?}");
        assert_eq!(read() - start, 0.0, "a declared 101 MiB body is refused unread");
        assert!(pulled < 40 * 1024 * 1024, "the client could not push the body ({pulled} bytes)");
        // And without a declared length (chunked): refused when the 100 MiB limit is crossed.
        let start = read();
        let (status, _) = streamed_upload(&node, &ta, mp4(64), 101 * 1024 * 1024, false).await;
        assert!(matches!(status, None | Some(StatusCode::PAYLOAD_TOO_LARGE)), "{status:?}");
        assert!(read() - start <= (100 * 1024 * 1024 + 128 * 1024) as f64);

        // A client that reads the early reply gets the JSON error (an 11 MB image sent in one piece).
        let r = upload_raw(&node, &ta, multipart("big.png", "image/png", &png(11 * 1024 * 1024))).await;
        assert_eq!((r.status, r.code()), (StatusCode::PAYLOAD_TOO_LARGE, "file_too_large"));

        let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
            (multipart("cat.mp4", "video/mp4", &png(5000)), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            (multipart("page.png", "image/png", b"<!doctype html><script>alert(1)</script>"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            (multipart("cat.png", "image/jpeg", &png(5000)), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            (multipart("empty.png", "image/png", b""), StatusCode::UNPROCESSABLE_ENTITY, "empty_file"),
            (multipart("cat.png", "image/png", &png(5000))[..3000].to_vec(), StatusCode::BAD_REQUEST, "invalid_multipart"),
            (format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--{BOUNDARY}--\r\n").into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "missing_file"),
        ];
        for (body, status, code) in cases {
            let r = upload_raw(&node, &ta, body).await;
            assert_eq!((r.status, r.code()), (status, code));
        }
        let r = node.raw(reqwest::Method::POST, "/api/messages/upload", Some(&ta), Some(("application/json", b"{}".to_vec()))).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_multipart"));
        let r = node.raw(reqwest::Method::POST, "/api/messages/upload", None, Some(("multipart/form-data; boundary=x", b"".to_vec()))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(leftovers(&env), before, "refused uploads leave no bytes behind");
        let files = node.get("/api/files/1", &ta).await;
        assert_eq!((files.status, files.code()), (StatusCode::NOT_FOUND, "file_not_found"), "and no metadata");
    }

    async fn only_the_uploader_and_those_it_was_shared_with_may_download(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("xa")).await;
        let (b, tb) = node.user(&uniq("xb")).await;
        let (c, tc) = node.user(&uniq("xc")).await;
        let (_, ts) = node.user(&uniq("xs")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        node.befriend((a, &ta), (c, &tc)).await;
        let g = node.post("/api/groups", Some(&ta), json!({"name": "G", "member_ids": [b, c]})).await;
        let gid = g.body["id"].as_i64().unwrap();
        let before = upload(&node, &ta, "a.png", "image/png", &png(1000)).await;
        node.post("/api/messages/send", Some(&ta), json!({"group_id": gid, "type": "image", "file_id": before["id"]})).await;
        node.delete(&format!("/api/groups/{gid}/members/{c}"), &ta).await;
        let after = upload(&node, &ta, "b.png", "image/png", &png(1000)).await;
        node.post("/api/messages/send", Some(&ta), json!({"group_id": gid, "type": "image", "file_id": after["id"]})).await;
        let unsent = upload(&node, &ta, "c.png", "image/png", &png(1000)).await;
        let id = |v: &Value| v["id"].as_i64().unwrap();

        assert_eq!(download(&node, Some(&ta), id(&unsent), None).await.status(), StatusCode::OK, "the uploader");
        assert_eq!(download(&node, Some(&tb), id(&unsent), None).await.status(), StatusCode::FORBIDDEN, "not sent anywhere yet");
        assert_eq!(download(&node, Some(&tb), id(&after), None).await.status(), StatusCode::OK, "a member");
        assert_eq!(download(&node, Some(&tc), id(&before), None).await.status(), StatusCode::OK, "sent while c was a member");
        let r = node.get(&format!("/api/files/{}", id(&after)), &tc).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "file_forbidden"), "sent after c's removal");
        assert_eq!(download(&node, Some(&ts), id(&before), None).await.status(), StatusCode::FORBIDDEN, "a stranger");
        assert_eq!(download(&node, None, id(&before), None).await.status(), StatusCode::UNAUTHORIZED);
        let r = node.get("/api/files/999999", &ta).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "file_not_found"));
        let r = node.get("/api/files/abc", &ta).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_parameter"));

        // Attaching: only one's own uploads, of the matching kind.
        let send = |body: Value| node.post("/api/messages/send", Some(&tb), body);
        let r = send(json!({"to_user_id": a, "type": "image", "file_id": id(&unsent)})).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "file_not_found"), "someone else's upload");
        let vid = upload(&node, &tb, "v.mp4", "video/mp4", &mp4(5000)).await;
        let r = send(json!({"to_user_id": a, "type": "image", "file_id": id(&vid)})).await;
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "file_kind_mismatch"), "the body is fine, the file is a video");
        let r = send(json!({"to_user_id": a, "type": "video"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "file_required"));
        let r = send(json!({"to_user_id": a, "type": "text", "text": "x", "file_id": id(&vid)})).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_file"));
        assert_eq!(send(json!({"to_user_id": a, "type": "video", "file_id": id(&vid)})).await.status, StatusCode::CREATED);
        assert_eq!(download(&node, Some(&ta), id(&vid), None).await.status(), StatusCode::OK, "the 1:1 recipient");
    }

    async fn a_user_over_the_hourly_upload_volume_gets_429(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node_with(&[("GOCHAT_UPLOAD_MIB_PER_HOUR", "3")]).await;
        let (_, ta) = node.user(&uniq("va")).await;
        let (_, tb) = node.user(&uniq("vb")).await;
        upload(&node, &ta, "a.png", "image/png", &png(1_500_000)).await; // 2 MiB charged (rounded up)
        let r = upload_raw(&node, &ta, multipart("b.png", "image/png", &png(1_500_000))).await;
        assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "upload_quota_exceeded"));
        assert!(r.headers.contains_key("retry-after"));
        upload(&node, &ta, "c.png", "image/png", &png(1000)).await; // the remaining MiB still fits
        upload(&node, &tb, "d.png", "image/png", &png(1_500_000)).await; // per user
    }

    async fn uploads_no_message_used_are_cleaned_up(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node_with(&[("GOCHAT_UPLOAD_TTL", "1s")]).await;
        let (a, ta) = node.user(&uniq("ca")).await;
        let (b, tb) = node.user(&uniq("cb")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let used = upload(&node, &ta, "u.png", "image/png", &png(1000)).await;
        node.post("/api/messages/send", Some(&ta), json!({"to_user_id": b, "type": "image", "file_id": used["id"]})).await;
        let unused = upload(&node, &ta, "n.png", "image/png", &png(1000)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = download(&node, Some(&ta), unused["id"].as_i64().unwrap(), None).await;
            if r.status() == StatusCode::NOT_FOUND {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the unused upload was never removed");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let r = download(&node, Some(&tb), used["id"].as_i64().unwrap(), None).await;
        assert_eq!(r.status(), StatusCode::OK, "a file a message uses stays");
        if !env.is_cluster() {
            assert_eq!(leftovers(&env), 1, "the unused file's bytes are gone from disk");
        }
    }
}

/// Splits a multipart/byteranges body into (Content-Range, bytes) parts.
fn split_byteranges(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delim = format!("\r\n--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let mut pos = 0;
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
    };
    while let Some(start) = find(text, delim.as_bytes(), pos) {
        let after = start + delim.len();
        if text[after..].starts_with(b"--") {
            break;
        }
        let headers_end = find(text, b"\r\n\r\n", after).unwrap();
        let headers = String::from_utf8_lossy(&text[after..headers_end]).to_string();
        let range = headers.lines().find_map(|l| l.strip_prefix("Content-Range: ")).unwrap().to_string();
        let data_start = headers_end + 4;
        let next = find(text, delim.as_bytes(), data_start).unwrap();
        parts.push((range, text[data_start..next].to_vec()));
        pos = next;
    }
    parts
}

/// The Ogg page checksum (RFC 3533: CRC-32, polynomial 0x04C11DB7, unreflected, no final XOR).
fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= (b as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 };
        }
    }
    crc
}

fn ogg_page(header_type: u8, granule: u64, sequence: u32, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut lacing = Vec::new();
    for p in packets {
        let mut n = p.len();
        while n >= 255 {
            lacing.push(255u8);
            n -= 255;
        }
        lacing.push(n as u8);
    }
    let mut page = b"OggS\0".to_vec();
    page.push(header_type);
    page.extend(granule.to_le_bytes());
    page.extend(0x6f70_7573u32.to_le_bytes()); // stream serial
    page.extend(sequence.to_le_bytes());
    page.extend([0; 4]); // checksum, filled below
    page.push(lacing.len() as u8);
    page.extend(&lacing);
    for p in packets {
        page.extend(p);
    }
    let crc = ogg_crc(&page);
    page[22..26].copy_from_slice(&crc.to_le_bytes());
    page
}

/// An Ogg Opus recording of `seconds` of silence (20 ms frames, one second a page), as a browser or phone would
/// upload a voice note: its length is known only from its pages' granule positions.
pub(crate) fn ogg_opus(seconds: u64) -> Vec<u8> {
    const PRE_SKIP: u16 = 312;
    let mut head = b"OpusHead\x01\x01".to_vec();
    head.extend(PRE_SKIP.to_le_bytes());
    head.extend(48_000u32.to_le_bytes());
    head.extend([0, 0, 0]);
    let mut tags = b"OpusTags".to_vec();
    tags.extend(6u32.to_le_bytes());
    tags.extend(b"gochat");
    tags.extend(0u32.to_le_bytes());
    let mut out = ogg_page(0x02, 0, 0, &[head]);
    out.extend(ogg_page(0x00, 0, 1, &[tags]));
    for s in 0..seconds {
        // TOC 0xF8: CELT full band, 20 ms, mono, one frame; the frame itself empty (silence).
        let packets = vec![vec![0xF8u8]; 50];
        let granule = u64::from(PRE_SKIP) + 48_000 * (s + 1);
        let last = s + 1 == seconds;
        out.extend(ogg_page(if last { 0x04 } else { 0x00 }, granule, 2 + s as u32, &packets));
    }
    out
}

async fn upload_as_file(node: &TestNode, token: &str, name: &str, ct: &str, data: &[u8]) -> crate::common::Reply {
    node.raw(
        reqwest::Method::POST,
        "/api/messages/upload?kind=file",
        Some(token),
        Some((&format!("multipart/form-data; boundary={BOUNDARY}"), multipart(name, ct, data))),
    )
    .await
}

/// Voice notes and files of any type (DESIGN.md §7).
mod voice_and_files {
    use super::*;

    backend_tests! {
        async fn a_voice_note_gets_its_length_from_its_container_and_a_61_second_one_is_refused(backend) {
            let env = TestEnv::new(backend).await;
            let node = env.node().await;
            let (a, ta) = node.user(&uniq("va")).await;
            let (b, tb) = node.user(&uniq("vb")).await;
            node.befriend((a, &ta), (b, &tb)).await;
            let voice = upload(&node, &ta, "note.ogg", "audio/ogg", &ogg_opus(5)).await;
            assert_eq!((&voice["kind"], &voice["content_type"]), (&json!("voice"), &json!("audio/ogg")), "{voice}");
            let ms = voice["duration_ms"].as_i64().unwrap();
            assert!((4900..=5100).contains(&ms), "5 s read as {ms} ms");
            let r = node.post("/api/messages/send", Some(&ta), json!({"to_user_id": b, "type": "voice", "file_id": voice["id"]})).await;
            assert_eq!((r.status, &r.body["type"], &r.body["file"]["duration_ms"]), (StatusCode::CREATED, &json!("voice"), &json!(ms)), "{}", r.body);
            let r = node.post("/api/messages/send", Some(&ta), json!({"to_user_id": b, "type": "image", "file_id": voice["id"]})).await;
            assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "file_kind_mismatch"));
            let r = upload_raw(&node, &ta, multipart("long.ogg", "audio/ogg", &ogg_opus(61))).await;
            assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "voice_too_long"), "{}", r.body);
            // Bytes that only start like Ogg are not a recording.
            let mut broken = ogg_opus(3);
            broken.truncate(40);
            let r = upload_raw(&node, &ta, multipart("x.ogg", "audio/ogg", &broken)).await;
            assert_eq!((r.status, r.code()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"), "{}", r.body);
        }

        async fn a_file_of_any_type_is_always_downloaded_as_an_attachment_under_its_sanitised_name(backend) {
            let env = TestEnv::new(backend).await;
            let node = env.node().await;
            let (a, ta) = node.user(&uniq("fa")).await;
            let (b, tb) = node.user(&uniq("fb")).await;
            node.befriend((a, &ta), (b, &tb)).await;
            let page = b"<html><script>alert(document.cookie)</script></html>";
            let r = upload_as_file(&node, &ta, "../报告<1>.html", "text/html", page).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
            assert_eq!((&r.body["kind"], &r.body["name"], &r.body["content_type"]), (&json!("file"), &json!("报告1.html"), &json!("application/octet-stream")));
            // Without `kind=file` the same bytes are not media.
            let refused = upload_raw(&node, &ta, multipart("page.html", "text/html", page)).await;
            assert_eq!(refused.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            let m = node.post("/api/messages/send", Some(&ta), json!({"to_user_id": b, "type": "file", "file_id": r.body["id"]})).await;
            assert_eq!((m.status, &m.body["file"]["name"]), (StatusCode::CREATED, &json!("报告1.html")), "{}", m.body);
            let got = download(&node, Some(&tb), r.body["id"].as_i64().unwrap(), None).await;
            assert_eq!(got.status(), StatusCode::OK);
            let h = got.headers();
            assert_eq!(h["x-content-type-options"], "nosniff");
            assert_eq!(h["content-type"], "application/octet-stream");
            let disposition = h["content-disposition"].to_str().unwrap();
            assert!(disposition.starts_with("attachment;"), "{disposition}");
            assert!(disposition.contains("filename*=UTF-8''%E6%8A%A5%E5%91%8A1.html"), "{disposition}");
            assert_eq!(got.bytes().await.unwrap().as_ref(), page);
            // A PNG sent as a file is a file too: an attachment, typed by its bytes.
            let r = upload_as_file(&node, &ta, "cat.png", "image/png", &png(800)).await;
            assert_eq!((&r.body["kind"], &r.body["content_type"]), (&json!("file"), &json!("image/png")));
        }
    }
}
