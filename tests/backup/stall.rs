//! A TCP relay in front of a real server that, once armed, holds the next `INFO` it relays for
//! a while before passing it on: a target that is slow to answer `INFO`, and only that, at the
//! moment a test chooses (a `DEBUG SLEEP` would stall every command, the lease's too).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct InfoStall {
    port: u16,
    armed: Arc<AtomicBool>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl InfoStall {
    /// Relays 127.0.0.1:`upstream`; an armed relay holds the next `INFO` for `hold`.
    pub async fn start(upstream: u16, hold: Duration) -> InfoStall {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        let armed = Arc::new(AtomicBool::new(false));
        let flag = armed.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, flag.clone(), hold));
            }
        });
        InfoStall {
            port,
            armed,
            acceptor,
        }
    }

    /// `redis://127.0.0.1:<relay port>`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// From now on, the next `INFO` through the relay is held.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
}

impl Drop for InfoStall {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn relay(client: TcpStream, upstream: u16, armed: Arc<AtomicBool>, hold: Duration) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let replies = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from_client.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if is_info(chunk) && armed.swap(false, Ordering::SeqCst) {
            tokio::time::sleep(hold).await;
        }
        if to_server.write_all(chunk).await.is_err() {
            break;
        }
    }
    replies.abort();
}

/// Whether a chunk of RESP from a client holds an `INFO` command.
fn is_info(chunk: &[u8]) -> bool {
    chunk
        .windows(10)
        .any(|w| w.eq_ignore_ascii_case(b"$4\r\ninfo\r\n"))
}
