//! Files and directories only the node's own user may read: the data dir and everything the node writes in it
//! (the SQLite database, local media, upload temp files, generated secrets). Directories are created `0700` and
//! files `0600`; a directory that already exists is narrowed to `0700`, so a data dir made by hand (or by an
//! older version) is closed too. On other platforms these are plain creates.

use std::path::Path;

/// Creates `dir` (and its missing parents) and makes `dir` itself `0700`.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// [`create_dir`] for async callers.
pub async fn create_dir_async(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || create_dir(&dir)).await.map_err(std::io::Error::other)?
}

/// Options that create a new file `0600` (write, create, truncate).
pub fn file_options() -> std::fs::OpenOptions {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts
}

/// Makes an existing file `0600` (a database file created before this rule, or by a library that does not take
/// a mode).
pub fn restrict_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}
