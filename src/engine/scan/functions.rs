//! The source's Redis functions (7.0+), which no `SCAN` returns: `FUNCTION DUMP` on the source,
//! `FUNCTION RESTORE` on the target, before the first key (a key's writes may call them).

use crate::client::Conn;
use crate::engine::error::EngineError;
use crate::engine::Servers;
use crate::resp::Frame;
use crate::spec::OnConflict;

/// Copies the source's function libraries, if it has any. `replace`: libraries of the same name
/// on the target are replaced (`on_conflict` replace or flush, or a redo); otherwise the target's
/// `FUNCTION RESTORE` refuses them and the job fails naming the command.
pub(super) async fn copy(
    source: &mut Conn,
    target: &mut Conn,
    servers: &Servers,
    on_conflict: OnConflict,
    redo: bool,
) -> Result<(), EngineError> {
    // A 6.2 source has no functions; an error here means just that.
    let listed = source
        .call(&["FUNCTION", "LIST"])
        .await
        .map_err(EngineError::source)?;
    let has = matches!(&listed, Frame::Array(libraries) if !libraries.is_empty());
    if !has {
        return Ok(());
    }
    if servers.target_rdb < 10 {
        return Err(EngineError::Unsupported(format!(
            "the source has Redis functions, which the target ({}) does not support; use a Redis \
             7.0+ or Valkey target",
            servers.target_version
        )));
    }
    let payload = source
        .call_ok(&["FUNCTION", "DUMP"])
        .await
        .map_err(EngineError::source)?;
    let Some(payload) = payload.as_bytes() else {
        return Ok(());
    };
    let policy: &[u8] = match (on_conflict, redo) {
        (OnConflict::Replace | OnConflict::Flush, _) | (_, true) => b"REPLACE",
        _ => b"APPEND",
    };
    let restored = target
        .call(&[b"FUNCTION".as_slice(), b"RESTORE", payload, policy])
        .await
        .map_err(EngineError::target)?;
    match restored {
        Frame::Error(e) if on_conflict == OnConflict::Skip => {
            tracing::info!(reply = %String::from_utf8_lossy(&e), "functions kept as the target has them (on_conflict skip)");
            Ok(())
        }
        Frame::Error(e) => Err(EngineError::TargetError {
            db: 0,
            key: "(functions)".into(),
            command: "FUNCTION RESTORE".into(),
            message: String::from_utf8_lossy(&e).into_owned(),
        }),
        _ => Ok(()),
    }
}
