//! What the engine learns about the servers before it writes: the target's fork and version
//! (which decide payload versions, rewrites and commands), its modules, the user's choices that
//! depend on them, and Valkey's import mode.

use super::error::EngineError;
use super::{import_mode, translate};
use crate::client::{ClientError, Conn};
use crate::rdb::version::{Fork, ServerVersion};

/// What the engine learned about the two servers before starting.
#[derive(Debug, Clone)]
pub(crate) struct Servers {
    /// The servers for messages, with their fork (`Redis 8.2.3`, `Valkey 9.1.2`).
    pub source_version: String,
    pub target_version: String,
    /// The target's fork and version: what it reads and which commands it has.
    pub target: ServerVersion,
    /// The highest RDB version the target accepts in a DUMP payload.
    pub target_rdb: u16,
    /// Module names in the target's `MODULE LIST`; `None` when it cannot be asked.
    pub target_modules: Option<Vec<String>>,
    /// The user's `drop_field_ttls`.
    pub drop_field_ttls: bool,
    /// Valkey's import mode on the target (see [`import_mode`]).
    pub import_mode: import_mode::ImportMode,
}

impl Servers {
    /// What the engine knows of a target before anything is written to it.
    pub(crate) async fn of_target(
        target: &mut Conn,
        drop_field_ttls: bool,
    ) -> Result<Servers, ClientError> {
        let server = server_version(target).await?;
        let target_modules = module_names(target).await;
        Ok(Servers {
            source_version: String::new(),
            target_version: server.to_string(),
            target: server,
            target_rdb: server.rdb_version(),
            target_modules,
            drop_field_ttls,
            import_mode: import_mode::ImportMode::default(),
        })
    }

    /// How the stream's commands are rewritten for this target.
    pub(crate) fn target_profile(&self) -> translate::TargetProfile {
        translate::TargetProfile {
            server: self.target,
            drop_field_ttls: self.drop_field_ttls,
        }
    }

    /// A new writer connection, marked as Valkey's importer when the target is in import mode.
    pub(crate) async fn prepare_writer(&self, conn: &mut Conn) -> Result<(), EngineError> {
        import_mode::mark_writer(conn, self.import_mode)
            .await
            .map_err(EngineError::target)
    }
}

/// The server's fork and version from `INFO server`; one that does not say is taken for an old
/// Redis (6.0, RDB 9), so that nothing newer than it reads is sent to it.
pub(crate) async fn server_version(conn: &mut Conn) -> Result<ServerVersion, ClientError> {
    let info = conn.info("server").await?;
    Ok(info
        .server()
        .unwrap_or(ServerVersion::new(Fork::Redis, 6, 0, 0)))
}

/// The names `MODULE LIST` gives; `None` when the server refuses the command (a managed service),
/// in which case module keys are left to the target's own `RESTORE` to accept or refuse.
async fn module_names(conn: &mut Conn) -> Option<Vec<String>> {
    let Ok(crate::resp::Frame::Array(modules)) = conn.call(&["MODULE", "LIST"]).await else {
        return None;
    };
    let names = modules
        .iter()
        .filter_map(|module| match module {
            crate::resp::Frame::Array(fields) => fields
                .chunks(2)
                .find(|kv| kv[0].as_bytes().is_some_and(|k| &k[..] == b"name"))
                .and_then(|kv| kv.get(1)?.as_bytes())
                .map(|name| String::from_utf8_lossy(name).into_owned()),
            _ => None,
        })
        .collect();
    Some(names)
}
