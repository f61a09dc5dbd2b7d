//! A TCP proxy a test can cut or freeze: the node talks to its database (or Redis) through it, and the test makes
//! the server unreachable (every connection dropped, new ones refused) or silent (connections stay open and
//! nothing comes back, as from a frozen or partitioned server), and then reachable again, without touching the
//! server the rest of the suite shares.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct TcpProxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}

impl TcpProxy {
    /// A proxy on a loopback port to `target`, open.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, links) = (Arc::new(AtomicBool::new(true)), Arc::new(Mutex::new(Vec::<JoinHandle<()>>::new())));
        let frozen = Arc::new(AtomicBool::new(false));
        let (o, l, f) = (open.clone(), links.clone(), frozen.clone());
        let acceptor = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let f = f.clone();
                let link = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        let (ri, wi) = inbound.into_split();
                        let (ro, wo) = outbound.into_split();
                        tokio::join!(pump(ri, wo, f.clone()), pump(ro, wi, f));
                    }
                });
                l.lock().unwrap().push(link);
            }
        });
        TcpProxy { addr, open, frozen, links, acceptor }
    }

    /// A proxy in front of the server of `url` (`postgres://…`, `redis://…`), and `url` pointed at the proxy.
    pub async fn in_front_of(url: &str) -> (TcpProxy, String) {
        let url = url::Url::parse(url).unwrap();
        let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap()).parse().unwrap();
        let proxy = TcpProxy::start(target).await;
        let mut proxied = url.clone();
        proxied.set_port(Some(proxy.addr.port())).unwrap();
        (proxy, proxied.to_string())
    }

    /// The target is unreachable: every open connection is dropped and new ones are closed at once.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// The target is reachable again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// The target falls silent: connections stay open (new ones too) and nothing is passed on either way.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Bytes flow again (what was sent meanwhile is passed on).
    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }
}

/// Copies one direction, holding each chunk while the proxy is frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
