//! The accept loop: HTTP/1.1 connections served by hyper with a header-read timeout, a cap on
//! open connections and a cap per client address, and a graceful drain on shutdown.
//!
//! `axum::serve` sets no timer, so a connection that sends half a request header and then
//! nothing stays open for ever (slowloris), and nothing bounds how many connections are
//! open. Here every connection must deliver each request header within
//! [`Limits::header_read_timeout`] (an idle keep-alive connection waiting for its next
//! request is closed after the same time); a connection beyond [`Limits::max_connections`],
//! or beyond [`Limits::per_client`] from one address, is answered `503` with the API's JSON
//! error (`busy`) and closed at once, so it never holds a slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How many connections the server keeps, and for how long an idle one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Open connections at most; more are refused with `503 busy`.
    pub max_connections: usize,
    /// Open connections from one IP address at most.
    pub per_client: usize,
    /// Time a client has to send a request's whole header, also the longest an idle
    /// keep-alive connection is kept.
    pub header_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            per_client: 256,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Open connections per client address.
#[derive(Clone, Default)]
struct PerClient(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One counted connection of an address; uncounted when dropped.
struct ClientSlot {
    table: PerClient,
    ip: IpAddr,
}

impl PerClient {
    fn enter(&self, ip: IpAddr, limit: usize) -> Option<ClientSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Answers a refused connection with a `503` JSON error and closes it.
async fn refuse(mut tcp: tokio::net::TcpStream, message: &'static str) {
    let body = serde_json::to_string(&crate::AppError::TooManyConnections(message).body())
        .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    // A client that is gone or does not read gets nothing; it must not hold the loop.
    let write = async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body.as_bytes()).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then stops
/// accepting and waits for every open connection (streams in progress included) to finish.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let clients = PerClient::default();
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Without TCP_NODELAY a small SSE event waits for the client's delayed ACK of the
        // one before it (up to 40 ms on Linux).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("cannot set TCP_NODELAY: {e}");
        }
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: {} open", limits.max_connections);
            tokio::spawn(refuse(
                tcp,
                "the server has too many open connections; retry in a second",
            ));
            continue;
        };
        let Some(slot) = clients.enter(peer.ip(), limits.per_client) else {
            tracing::warn!(%peer, "connection refused: {} open from this address", limits.per_client);
            tokio::spawn(refuse(
                tcp,
                "too many open connections from your address; close some, or retry in a second",
            ));
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(tcp), service));
        tokio::spawn(async move {
            let (_permit, _slot) = (permit, slot);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Checks that the limits make sense (before anything is bound).
pub fn check(limits: &Limits) -> anyhow::Result<()> {
    if limits.max_connections == 0 || limits.per_client == 0 {
        anyhow::bail!("--max-connections and --per-client must be at least 1");
    }
    if limits.header_read_timeout.is_zero() {
        anyhow::bail!("--header-timeout must be more than 0 seconds");
    }
    Ok(())
}
