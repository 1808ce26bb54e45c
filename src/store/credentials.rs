//! The credentials a job needs to resume, encrypted, apart from the log.
//!
//! Events must never carry a secret, yet a job that resumes after a restart has to log in to both
//! servers again. So the full URLs (with passwords) go into their own sled tree, sealed with
//! XChaCha20-Poly1305 under a key that Ferry creates on first start in `data_dir/credentials.key`
//! with mode 0600. A copy of the database alone (a backup, a support bundle) reveals nothing; the
//! key file has to leak too. Each record has its own random 24-byte nonce (random nonces are safe
//! at that size) and the migration id as associated data, so a record moved to another id does
//! not decrypt.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::redis_url::{RedisUrl, Secret};

const KEY_FILE: &str = "credentials.key";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

#[derive(Debug, Error)]
pub enum CredentialError {
    #[error("cannot use the key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the key file {path} must hold exactly {KEY_LEN} bytes; restore it from backup (without it, stored credentials cannot be read)")]
    KeyLength { path: PathBuf },
    #[error(
        "the key file {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    KeyMode { path: PathBuf, mode: u32 },
    #[error("stored credentials of migration {0} do not decrypt with this key file")]
    Decrypt(Uuid),
    #[error("stored credentials of migration {0} are unreadable: {1}")]
    Corrupt(Uuid, String),
    #[error("cannot read random bytes: {0}")]
    Random(std::io::Error),
    #[error("credential store: {0}")]
    Sled(String),
}

/// The two endpoints of a migration, with their passwords.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Credentials {
    pub source: RedisUrl,
    pub target: RedisUrl,
}

/// What is sealed: the URLs as text, because [`RedisUrl`] serializes redacted on purpose.
#[derive(Serialize, Deserialize)]
struct Sealed {
    source: String,
    target: String,
}

/// The encrypted tree and its cipher.
pub(crate) struct CredentialStore {
    tree: sled::Tree,
    cipher: XChaCha20Poly1305,
}

impl CredentialStore {
    pub fn open(db: &sled::Db, data_dir: &Path) -> Result<Self, CredentialError> {
        let key = load_or_create_key(&data_dir.join(KEY_FILE))?;
        let cipher =
            XChaCha20Poly1305::new_from_slice(&key).map_err(|_| CredentialError::KeyLength {
                path: data_dir.join(KEY_FILE),
            })?;
        let tree = db
            .open_tree("credentials")
            .map_err(|e| CredentialError::Sled(e.to_string()))?;
        Ok(CredentialStore { tree, cipher })
    }

    /// Seals and stores the credentials of `id`, durably, replacing earlier ones.
    pub fn put(&self, db: &sled::Db, id: Uuid, creds: &Credentials) -> Result<(), CredentialError> {
        let plain = serde_json::to_vec(&Sealed {
            source: creds.source.expose_url(),
            target: creds.target.expose_url(),
        })
        .map_err(|e| CredentialError::Corrupt(id, e.to_string()))?;
        let plain = Secret::new(String::from_utf8_lossy(&plain).into_owned());
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain.expose().as_bytes(),
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| CredentialError::Decrypt(id))?;
        let mut value = Vec::with_capacity(NONCE_LEN + sealed.len());
        value.extend_from_slice(&nonce);
        value.extend_from_slice(&sealed);
        self.tree
            .insert(id.as_bytes(), value)
            .and_then(|_| db.flush().map(|_| ()))
            .map_err(|e| CredentialError::Sled(e.to_string()))
    }

    /// The credentials of `id`, if any were stored.
    pub fn get(&self, id: Uuid) -> Result<Option<Credentials>, CredentialError> {
        let Some(value) = self
            .tree
            .get(id.as_bytes())
            .map_err(|e| CredentialError::Sled(e.to_string()))?
        else {
            return Ok(None);
        };
        if value.len() < NONCE_LEN {
            return Err(CredentialError::Corrupt(id, "record too short".into()));
        }
        let (nonce, sealed) = value.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| CredentialError::Corrupt(id, "bad nonce".into()))?;
        let plain = self
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| CredentialError::Decrypt(id))?;
        let sealed: Sealed = serde_json::from_slice(&plain)
            .map_err(|_| CredentialError::Corrupt(id, "not the expected JSON".into()))?;
        let parse =
            |s: &str| RedisUrl::parse(s).map_err(|e| CredentialError::Corrupt(id, e.to_string()));
        Ok(Some(Credentials {
            source: parse(&sealed.source)?,
            target: parse(&sealed.target)?,
        }))
    }
}

/// Reads the key, or creates it (mode 0600, from the OS's randomness) on first start.
fn load_or_create_key(path: &Path) -> Result<[u8; KEY_LEN], CredentialError> {
    let io = |source| CredentialError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            let mut key = [0u8; KEY_LEN];
            random_bytes(&mut key)?;
            file.write_all(&key).map_err(io)?;
            file.sync_all().map_err(io)?;
            return Ok(key);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let mut file = File::open(path).map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CredentialError::KeyMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut key = Vec::new();
    file.read_to_end(&mut key).map_err(io)?;
    key.try_into().map_err(|_| CredentialError::KeyLength {
        path: path.to_path_buf(),
    })
}

/// Fills `buf` from the kernel's CSPRNG. Linux only, like the rest of Ferry's deployment story.
fn random_bytes(buf: &mut [u8]) -> Result<(), CredentialError> {
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(CredentialError::Random)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            source: RedisUrl::parse("redis://alice:hunter2@127.0.0.1:1/0").unwrap(),
            target: RedisUrl::parse("redis://:pa55@127.0.0.1:2").unwrap(),
        }
    }

    #[test]
    fn credentials_round_trip_and_are_not_stored_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let store = CredentialStore::open(&db, dir.path()).unwrap();
        let id = Uuid::now_v7();
        store.put(&db, id, &creds()).unwrap();
        assert_eq!(store.get(id).unwrap(), Some(creds()));
        assert_eq!(store.get(Uuid::now_v7()).unwrap(), None);
        let raw = store.tree.get(id.as_bytes()).unwrap().unwrap();
        let raw = String::from_utf8_lossy(&raw);
        assert!(!raw.contains("hunter2") && !raw.contains("pa55"));
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_record_under_another_id_or_key_does_not_decrypt() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let store = CredentialStore::open(&db, dir.path()).unwrap();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        store.put(&db, a, &creds()).unwrap();
        let raw = store.tree.get(a.as_bytes()).unwrap().unwrap();
        store.tree.insert(b.as_bytes(), raw).unwrap();
        assert!(matches!(store.get(b), Err(CredentialError::Decrypt(_))));

        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let other = CredentialStore::open(&db, dir.path()).unwrap();
        assert!(matches!(other.get(a), Err(CredentialError::Decrypt(_))));
    }

    #[test]
    fn a_world_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::write(&path, [0u8; KEY_LEN]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create_key(&path),
            Err(CredentialError::KeyMode { .. })
        ));
    }
}
