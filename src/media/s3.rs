//! Files in an S3 bucket (MinIO or any S3-compatible server) through the `minio` crate, path-style addressed.
//! Downloads stream through the node (no presigned redirects), so access control stays in one place and the
//! bucket never needs to be reachable by clients.

use std::path::Path;

use async_trait::async_trait;
use futures_util::StreamExt;
use minio::s3::creds::StaticProvider;
use minio::s3::http::BaseUrl;
use minio::s3::types::{Region, S3Api};
use minio::s3::{MinioClient, MinioClientBuilder};

use super::{ByteStream, MediaStore};
use crate::config::S3Config;

pub struct S3Media {
    client: MinioClient,
    bucket: String,
    /// Uploads to S3 in flight. The client holds one part in memory to sign it, so memory is this many parts.
    transfers: tokio::sync::Semaphore,
}

/// Multipart part size: S3's minimum, which is also the memory one transfer holds.
const PART_SIZE: u64 = 5 * 1024 * 1024;
/// Concurrent transfers to S3 per node: with [`PART_SIZE`] parts, about 10 MiB of buffers at most. Uploads
/// beyond wait for a turn (their bytes are already safe in temp files).
const TRANSFERS: usize = 2;

impl S3Media {
    /// Connects and creates the bucket if it is missing.
    pub async fn connect(c: &S3Config) -> anyhow::Result<Self> {
        let mut base: BaseUrl = c.endpoint.parse().map_err(|e| anyhow::anyhow!("GOCHAT_S3_ENDPOINT: {e}"))?;
        base.virtual_style = false;
        base.region = Region::new(c.region.as_str()).map_err(|e| anyhow::anyhow!("GOCHAT_S3_REGION: {e}"))?;
        let client = MinioClientBuilder::new(base)
            .provider(Some(StaticProvider::new(&c.access_key, &c.secret_key, None)))
            .skip_region_lookup(true)
            .build()
            .map_err(|e| anyhow::anyhow!("building the S3 client: {e}"))?;
        let media = Self { client, bucket: c.bucket.clone(), transfers: tokio::sync::Semaphore::new(TRANSFERS) };
        let exists = media
            .client
            .bucket_exists(&media.bucket)
            .map_err(|e| anyhow::anyhow!("GOCHAT_S3_BUCKET: {e}"))?
            .build()
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("reaching S3 at GOCHAT_S3_ENDPOINT: {e}"))?
            .exists();
        if !exists {
            media
                .client
                .create_bucket(&media.bucket)
                .map_err(|e| anyhow::anyhow!("GOCHAT_S3_BUCKET: {e}"))?
                .build()
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("creating bucket {}: {e}", media.bucket))?;
            tracing::info!(bucket = %media.bucket, "created the S3 bucket");
        }
        Ok(media)
    }
}

#[async_trait]
impl MediaStore for S3Media {
    async fn put_file(&self, key: &str, path: &Path, content_type: &str, _size: u64) -> anyhow::Result<()> {
        let result = async {
            let _turn = self.transfers.acquire().await?;
            self.client
                .put_object_content(&self.bucket, key, path)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .part_size(PART_SIZE)
                .content_type(content_type.to_string())
                .build()
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("uploading to S3: {e}"))?;
            anyhow::Ok(())
        }
        .await;
        let _ = tokio::fs::remove_file(path).await;
        result
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> anyhow::Result<ByteStream> {
        let (offset, length) = match range {
            Some((start, end)) => (Some(start), Some(end - start + 1)),
            None => (None, None),
        };
        let resp = self
            .client
            .get_object(&self.bucket, key)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .offset(offset)
            .length(length)
            .build()
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("reading from S3: {e}"))?;
        let (stream, _len) = resp.into_boxed_stream().map_err(|e| anyhow::anyhow!("reading from S3: {e}"))?;
        Ok(Box::pin(stream.map(|r| r.map_err(std::io::Error::other))))
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.client
            .delete_object(&self.bucket, key)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .build()
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("deleting from S3: {e}"))?;
        Ok(())
    }

    async fn ping(&self) -> anyhow::Result<()> {
        self.client
            .bucket_exists(&self.bucket)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .build()
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "s3"
    }
}
