//! Free disk space, measured where Ferry can see the disk; and private files and directories.
//!
//! Everything under `data_dir` is private to Ferry: backups and inventories are full copies of
//! customer data (or of its key names), the credential key decrypts passwords. Directories are
//! created 0700 and files 0600, whatever the umask.
//!
//! Ferry can only `statvfs` a path on its own host. Its own `data_dir` is always local. The
//! target's `dir` (from `CONFIG GET dir`) is local only when the target's address is a loopback
//! one; any other address may be a different machine whose path means nothing here, so then the
//! check says how much is needed instead of measuring.

use std::path::{Path, PathBuf};

/// Free bytes for an unprivileged writer on the filesystem that holds `path`.
///
/// A `data_dir` that does not exist yet is measured at its nearest existing ancestor, because that
/// is where it will be created.
pub fn free_bytes(path: &Path) -> Result<u64, String> {
    let existing =
        nearest_existing(path).ok_or_else(|| format!("no part of {} exists", path.display()))?;
    let stats = rustix::fs::statvfs(&existing)
        .map_err(|e| format!("statvfs {}: {e}", existing.display()))?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

fn nearest_existing(path: &Path) -> Option<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    absolute
        .ancestors()
        .find(|p| p.exists())
        .map(Path::to_path_buf)
}

/// Creates `dir` (and its parents) and makes `dir` itself private (0700).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Creates the new file `path`, private (0600) from its first byte.
pub fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Whether `host` names this machine (so its paths are our paths).
pub fn is_local_host(host: &str) -> bool {
    matches!(host, "localhost" | "::1") || host.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_measured_at_its_parent() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(&dir.path().join("not/yet/created")).unwrap();
        assert!(free > 0);
    }

    #[test]
    fn private_dirs_and_files_are_the_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        private_dir(&sub).unwrap();
        let mode = std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        private_file(&sub.join("f")).unwrap();
        let mode = std::fs::metadata(sub.join("f"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn loopback_hosts_are_local() {
        assert!(is_local_host("127.0.0.1"));
        assert!(is_local_host("localhost"));
        assert!(is_local_host("::1"));
        assert!(!is_local_host("10.0.0.7"));
        assert!(!is_local_host("redis.example.com"));
    }
}
