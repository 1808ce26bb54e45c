//! The control socket: how a second `ferry` command reaches the process that holds a data
//! directory.
//!
//! sled lets one process open a data directory. So while `ferry serve` or `ferry migrate` runs,
//! `ferry cutover ID --data-dir D` cannot record anything itself; it connects to `D/control.sock`,
//! which the holding process serves (mode 0600, so only the directory's owner can use it), and
//! asks there. One line in, one JSON line out:
//!
//! - `cutover <id>` / `cancel <id>`: the command, as actor `cli`; answers the migration's state;
//! - `audit-verify`: walks the audit chain; answers the report.
//!
//! Like the API, it only translates requests into [`Jobs`] commands.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::jobs::Jobs;
use crate::model::audit::AuditReport;

/// The actor of what arrives through the socket.
pub const CLI_ACTOR: &str = "cli";

/// The longest request line read.
const MAX_LINE: usize = 256;

#[derive(Debug, Error)]
pub enum ControlError {
    #[error("cannot serve {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Nothing listens: no process holds the data directory.
    #[error("no Ferry process serves {0}")]
    NotServed(PathBuf),
    #[error("the control socket failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the control socket answered something unreadable: {0}")]
    Reply(String),
    /// The process refused the command; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
}

/// The answer to one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<AuditReport>,
}

/// The socket's path in `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Serves the control socket of `data_dir` until `stop` is cancelled (then removes it).
pub async fn serve(
    data_dir: &Path,
    jobs: Jobs,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ControlError> {
    let path = socket_path(data_dir);
    // A socket file left by a process that died: nobody holds the directory but us now.
    let _ = std::fs::remove_file(&path);
    let bind_error = |source| ControlError::Bind {
        path: path.clone(),
        source,
    };
    let listener = UnixListener::bind(&path).map_err(bind_error)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(bind_error)?;
    }
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let jobs = jobs.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &jobs).await {
                            tracing::debug!(error = %e, "a control request failed");
                        }
                    });
                }
                _ = stop.cancelled() => break,
            }
        }
        let _ = std::fs::remove_file(&path);
    }))
}

async fn answer(stream: UnixStream, jobs: &Jobs) -> Result<(), std::io::Error> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_LINE as u64);
    reader.read_line(&mut line).await?;
    let reply = handle(line.trim(), jobs).await;
    let mut text = serde_json::to_string(&reply).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

async fn handle(line: &str, jobs: &Jobs) -> Reply {
    let refuse = |message: String| Reply {
        ok: false,
        message,
        report: None,
    };
    let mut words = line.split_whitespace();
    let (command, arg) = (words.next().unwrap_or(""), words.next());
    let id = arg.and_then(|a| a.parse::<Uuid>().ok());
    match (command, id) {
        ("cutover" | "cancel", Some(id)) => {
            let done = if command == "cutover" {
                jobs.cutover(id, CLI_ACTOR).await
            } else {
                jobs.cancel(id, CLI_ACTOR).await
            };
            match done {
                Ok(view) => Reply {
                    ok: true,
                    message: format!("migration {id} is {}", view.state),
                    report: None,
                },
                Err(e) => refuse(e.to_string()),
            }
        }
        ("audit-verify", _) => match jobs.store().verify_chain().await {
            Ok(report) => Reply {
                ok: true,
                message: "verified".into(),
                report: Some(report),
            },
            Err(e) => refuse(e.to_string()),
        },
        _ => refuse(format!(
            "unknown request `{line}`; send `cutover <id>`, `cancel <id>` or `audit-verify`"
        )),
    }
}

/// Sends one request to the process serving `data_dir`.
pub async fn request(data_dir: &Path, line: &str) -> Result<Reply, ControlError> {
    let path = socket_path(data_dir);
    let stream = match UnixStream::connect(&path).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ControlError::NotServed(path))
        }
        Err(e) => return Err(e.into()),
    };
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{line}\n").as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    let reply: Reply =
        serde_json::from_str(answer.trim()).map_err(|e| ControlError::Reply(e.to_string()))?;
    if reply.ok {
        Ok(reply)
    } else {
        Err(ControlError::Refused(reply.message))
    }
}
