//! Where image and video bytes live: local disk (embedded) or S3/MinIO (cluster), behind one narrow trait.

pub mod audio;
pub mod avatar;
mod local;
mod s3;
pub mod sniff;

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

pub use self::local::LocalMedia;
pub use self::s3::S3Media;

/// A stream of an object's bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Object storage for uploaded files, addressed by key.
///
/// A file reaches [`MediaStore::put_file`] only once it is complete and validated (it was spooled to a temp file
/// while its size and type were checked), so a store never holds a partial or refused upload.
#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Stores the complete file at `path` under `key`; the temp file is consumed (moved or deleted).
    async fn put_file(&self, key: &str, path: &Path, content_type: &str, size: u64) -> anyhow::Result<()>;
    /// The bytes `start..=end` of the object, or all of it.
    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> anyhow::Result<ByteStream>;
    /// Removes the object; removing a missing object is not an error.
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> anyhow::Result<()>;
    fn name(&self) -> &'static str;
}

pub type SharedMedia = Arc<dyn MediaStore>;
