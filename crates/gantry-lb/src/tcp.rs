//! An NLB listener's side: each client connection (TCP, or TLS terminated here) is forwarded
//! byte for byte to one target of the listener's target group.

use crate::config::Stickiness;
use crate::group::fnv;
use crate::table::{Act, Table};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Forwards one client connection until either side closes it.
pub(crate) async fn serve<S>(mut client: S, peer: SocketAddr, table: Arc<Table>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(Act::Forward(plan)) = table.rules.last().map(|r| &r.action) else { return };
    let Some(gi) = plan.choose() else { return };
    let weighted = &plan.groups[gi];
    let group = &weighted.group;
    // Source-IP stickiness: the same client address goes to the same target while it is healthy.
    let sticky = matches!(group.settings().stickiness, Some(Stickiness::SourceIp))
        .then(|| fnv(&[peer.ip().to_canonical().to_string().as_bytes()]));
    let Some(member) = (match sticky {
        Some(h) => group.pick_by_hash(h),
        None => group.pick(None),
    }) else {
        return;
    };
    let guard = member.start();
    weighted.counters.connection_opened();
    let connected =
        tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(member.target.address)).await;
    let Ok(Ok(mut upstream)) = connected else {
        weighted.counters.target_connection_errors.fetch_add(1, Relaxed);
        table.counters.own.target_connection_errors.fetch_add(1, Relaxed);
        weighted.counters.connection_closed();
        return;
    };
    let _ = upstream.set_nodelay(true);
    if let Ok((up, down)) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        table.counters.own.processed_bytes.fetch_add(up + down, Relaxed);
        weighted.counters.processed_bytes.fetch_add(up + down, Relaxed);
    }
    weighted.counters.connection_closed();
    drop(guard);
}
