//! `SmtpSink`: a small SMTP server on a real TCP socket for the mail tests. It records
//! every message, counts connections, can answer every connection with `421` (refusing)
//! or with silence (stalling), and can go down and come back on the same port.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::Notify,
    task::{JoinHandle, JoinSet},
};

/// One message as the sink received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub rcpt_to: Vec<String>,
    /// The DATA section, dot-unstuffed, CRLF line ends.
    pub data: String,
}

impl Received {
    fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(self.data.as_bytes())
            .expect("a parseable message")
    }

    pub fn message_id(&self) -> String {
        self.parsed().message_id().expect("a Message-ID").to_owned()
    }

    pub fn subject(&self) -> String {
        self.parsed().subject().unwrap_or_default().to_owned()
    }

    /// The decoded text/plain part.
    pub fn text(&self) -> String {
        self.parsed().body_text(0).expect("a text part").into_owned()
    }

    /// The decoded text/html part.
    pub fn html(&self) -> String {
        self.parsed().body_html(0).expect("an html part").into_owned()
    }

    /// The token of the first `<path>?token=` link in the text part.
    pub fn token(&self, path: &str) -> String {
        let text = self.text();
        let marker = format!("{path}?token=");
        let start = text
            .find(&marker)
            .unwrap_or_else(|| panic!("no {marker} link in {text}"))
            + marker.len();
        text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }
}

#[derive(Default)]
struct Shared {
    connections: AtomicUsize,
    refusing: AtomicBool,
    stalling: AtomicBool,
    messages: Mutex<Vec<Received>>,
    arrived: Notify,
}

pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl SmtpSink {
    /// Starts a sink on a free loopback port.
    pub async fn start() -> Self {
        let listener = bind("127.0.0.1:0".parse().unwrap());
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let server = tokio::spawn(serve(listener, Arc::clone(&shared)));
        Self {
            addr,
            shared,
            server: Mutex::new(Some(server)),
        }
    }

    /// `SMTP_URL` for the service.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Goes down: the port refuses connections and open ones are cut.
    pub async fn stop(&self) {
        let server = self.server.lock().unwrap().take();
        if let Some(server) = server {
            server.abort();
            let _ = server.await;
        }
    }

    /// Comes back on the same port.
    pub fn restart(&self) {
        let mut server = self.server.lock().unwrap();
        assert!(server.is_none(), "the sink is already up");
        *server = Some(tokio::spawn(serve(bind(self.addr), Arc::clone(&self.shared))));
    }

    /// While on, every connection is greeted with `421` and closed (a server refusing
    /// service), and still counted.
    pub fn refuse(&self, on: bool) {
        self.shared.refusing.store(on, Ordering::SeqCst);
    }

    /// While on, every connection is accepted and then left silent (a hung server).
    pub fn stall(&self, on: bool) {
        self.shared.stalling.store(on, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    pub fn messages(&self) -> Vec<Received> {
        self.shared.messages.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages arrived (at most 30 s), and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let waited = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let arrived = self.shared.arrived.notified();
                if self.messages().len() >= n {
                    return;
                }
                arrived.await;
            }
        })
        .await;
        let messages = self.messages();
        assert!(
            waited.is_ok(),
            "waited 30 s for {n} messages, got {}",
            messages.len()
        );
        messages
    }
}

fn bind(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    // Coming back on the same port while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket.listen(64).unwrap()
}

/// Accepts until aborted; the connections live in a `JoinSet` owned by this task, so
/// aborting it cuts them too.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                connections.spawn(session(stream, Arc::clone(&shared)));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One SMTP session: enough of RFC 5321 for lettre (EHLO, MAIL, RCPT, DATA, RSET, NOOP,
/// QUIT).
async fn session(stream: TcpStream, shared: Arc<Shared>) {
    let (mut read, mut write) = stream.into_split();
    if shared.stalling.load(Ordering::SeqCst) {
        let mut buf = [0u8; 512];
        while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
        return;
    }
    if shared.refusing.load(Ordering::SeqCst) {
        let _ = write.write_all(b"421 4.3.2 sink refusing service\r\n").await;
        return;
    }
    let mut lines = BufReader::new(read);
    if !reply(&mut write, "220 sink ESMTP\r\n").await {
        return;
    }
    let mut rcpt_to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let ok = match verb.as_str() {
            "EHLO" => reply(&mut write, "250-sink\r\n250 8BITMIME\r\n").await,
            "HELO" => reply(&mut write, "250 sink\r\n").await,
            "MAIL" => {
                rcpt_to.clear();
                reply(&mut write, "250 2.1.0 ok\r\n").await
            }
            "RCPT" => {
                let to = command
                    .split_once(':')
                    .map(|(_, a)| a.trim().trim_matches(['<', '>']).to_owned())
                    .unwrap_or_default();
                rcpt_to.push(to);
                reply(&mut write, "250 2.1.5 ok\r\n").await
            }
            "DATA" => {
                if !reply(&mut write, "354 end with <CRLF>.<CRLF>\r\n").await {
                    return;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                shared.messages.lock().unwrap().push(Received {
                    rcpt_to: std::mem::take(&mut rcpt_to),
                    data,
                });
                shared.arrived.notify_waiters();
                reply(&mut write, "250 2.0.0 queued\r\n").await
            }
            "RSET" => {
                rcpt_to.clear();
                reply(&mut write, "250 2.0.0 ok\r\n").await
            }
            "NOOP" => reply(&mut write, "250 2.0.0 ok\r\n").await,
            "QUIT" => {
                let _ = reply(&mut write, "221 2.0.0 bye\r\n").await;
                return;
            }
            _ => reply(&mut write, "502 5.5.2 command not recognised\r\n").await,
        };
        if !ok {
            return;
        }
    }
}

async fn reply(write: &mut tokio::net::tcp::OwnedWriteHalf, text: &str) -> bool {
    write.write_all(text.as_bytes()).await.is_ok()
}
