//! `cellnets serve`: the study's page, live, over a small read-only HTTP server
//! (binding, access, routes, one shared snapshot a second). The page (report.html's,
//! without the markdown) polls `api/study`, a fresh snapshot of out/
//! (`report::snapshot`), every two seconds; files under out/ (report.html, figures, CSV
//! tables) are served read-only from `files/`. Polling files rather than watching them
//! works on NFS, where a login node sees what compute nodes write.
//!
//! Safety, for a login node shared with other users and a browser that visits other
//! sites: every request needs a random token, on every address (another user of the
//! machine can reach 127.0.0.1 too). The token is printed in the URL once; opening it
//! puts the token in an HttpOnly, SameSite=Strict cookie and sends the browser on to a
//! URL without it. The `Host` header must name this server (loopback names, an IP
//! address, this machine's name, or `--allow-host`), so a page that rebinds its own
//! name to 127.0.0.1 is refused. Only files inside out/ are served (`files::resolve`).
//! A request's whole head must arrive within `HEAD_DEADLINE`, and when every connection
//! slot is taken the peer that has been sending its head the longest makes room, so
//! slow peers cannot keep others out; a response must go at `MIN_SEND_RATE`. Pages get
//! a Content-Security-Policy. It never writes under out/.
//!
//! Cost to training: one snapshot is gathered at most once a second, whatever the number
//! of open pages, and shared by all of them.

mod access;
mod files;
pub mod http;

use crate::report::html;
use crate::report::snapshot::{self, Snapshot};
use crate::study::manifest::{self, Manifest};
use access::Access;
use anyhow::{Context, Result};
use http::{read_request, Body, Response, Timed};
use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Connections handled at once; past it, the slowest head makes room, or 503.
const MAX_CONNECTIONS: usize = 64;
/// The whole request head must arrive within this, however it trickles in.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// A response may take this long plus its length at `MIN_SEND_RATE`.
const SEND_GRACE: Duration = Duration::from_secs(10);
/// Bytes a second a peer must take a response at, on average, or be cut off.
const MIN_SEND_RATE: f64 = 32.0 * 1024.0;
/// A snapshot younger than this is handed out again instead of reading out/ anew.
const SNAPSHOT_REUSE: Duration = Duration::from_secs(1);

pub struct ServeSettings {
    pub out_dir: PathBuf,
    pub bind: IpAddr,
    /// 0 lets the system pick a free port.
    pub port: u16,
    pub claim_timeout: Duration,
    /// Names besides the loopback ones, IP addresses and this machine's name that the
    /// `Host` header may give (a DNS alias, an SSH tunnel's name).
    pub allowed_hosts: Vec<String>,
}

/// The server, bound and ready.
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
}

struct State {
    manifest: Mutex<Watched>,
    manifest_path: PathBuf,
    /// out/, canonical, so that resolved paths can be checked against it.
    root: PathBuf,
    claim_timeout: Duration,
    access: Access,
    page: String,
    snapshot: Mutex<Option<(Instant, Arc<Vec<u8>>)>>,
    connections: AtomicUsize,
    /// Connections still reading their request head, by number: when to evict.
    reading: Mutex<HashMap<u64, (Instant, TcpStream)>>,
    next_connection: AtomicU64,
}

/// The manifest as last read, and the file's state then: it is read again when the file
/// changes, so a stage added while serve runs appears.
struct Watched {
    manifest: Manifest,
    stamp: Option<(SystemTime, u64)>,
}

impl Server {
    /// Binds `settings.bind:port` with a fresh token.
    pub fn bind(
        manifest: Manifest,
        manifest_path: &Path,
        settings: &ServeSettings,
    ) -> Result<Self> {
        let root = settings.out_dir.canonicalize().with_context(|| {
            format!(
                "{} does not exist: run the manifest first, or give its folder with --out",
                settings.out_dir.display()
            )
        })?;
        let address = SocketAddr::new(settings.bind, settings.port);
        let listener =
            TcpListener::bind(address).with_context(|| format!("cannot listen on {address}"))?;
        let port = listener.local_addr()?.port();
        let access = Access::new(random_token()?, port, &settings.allowed_hosts);
        let title = format!("cellnets: {}", manifest_path.display());
        Ok(Server {
            listener,
            state: Arc::new(State {
                manifest: Mutex::new(Watched {
                    stamp: stamp_of(manifest_path),
                    manifest,
                }),
                manifest_path: manifest_path.to_path_buf(),
                root,
                claim_timeout: settings.claim_timeout,
                access,
                page: html::page(&title, "", html::Data::Live),
                snapshot: Mutex::new(None),
                connections: AtomicUsize::new(0),
                reading: Mutex::new(HashMap::new()),
                next_connection: AtomicU64::new(0),
            }),
        })
    }

    /// The address to open, with the token.
    pub fn url(&self) -> Result<String> {
        let address = self.listener.local_addr()?;
        let host = match address.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        let token = self.state.access.token();
        Ok(format!("http://{host}:{}/?token={token}", address.port()))
    }

    /// Serves until the process ends, a thread per connection.
    pub fn run(self) -> Result<()> {
        for stream in self.listener.incoming() {
            let Ok(stream) = stream else { continue };
            let state = Arc::clone(&self.state);
            // Only this loop adds connections, so a count read here can only fall.
            let full = state.connections.load(Ordering::SeqCst) >= MAX_CONNECTIONS;
            if full && !state.evict_slowest_head() {
                let _ = stream.set_write_timeout(Some(SEND_GRACE));
                let busy = Response::error(503, "too many connections; try again");
                let _ = busy.write_to(&stream, true);
                continue;
            }
            state.connections.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                handle(&state, stream);
                state.connections.fetch_sub(1, Ordering::SeqCst);
            });
        }
        Ok(())
    }
}

fn handle(state: &State, stream: TcpStream) {
    let id = state.next_connection.fetch_add(1, Ordering::SeqCst);
    if let Ok(clone) = stream.try_clone() {
        lock(&state.reading).insert(id, (Instant::now(), clone));
    }
    let head = read_request(Timed::new(&stream, Instant::now() + HEAD_DEADLINE));
    lock(&state.reading).remove(&id);
    let request = match head {
        Ok(Some(request)) => request,
        // Closed, late, evicted or reset before a whole head came: nobody to answer.
        Ok(None) | Err(_) => return,
    };
    let (response, with_body) = match request {
        Ok(request) => (route(state, &request), request.method != "HEAD"),
        Err(refusal) => (refusal.response(), true),
    };
    let response = with_policy(response);
    let send_time = Duration::from_secs_f64(response.length() as f64 / MIN_SEND_RATE);
    let deadline = Instant::now() + SEND_GRACE + send_time;
    let _ = response.write_to(Timed::new(&stream, deadline), with_body);
    // Closing with unread bytes (a refused body) would reset the connection before the
    // peer reads the answer: a bounded amount is read and dropped first.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = std::io::copy(&mut (&stream).take(1 << 20), &mut std::io::sink());
}

/// Every response, pages and files alike (an SVG opened alone is a document), runs
/// under the page's policy and in no other site's frame.
fn with_policy(response: Response) -> Response {
    let policy = format!(
        "{}; frame-ancestors 'none'",
        html::content_security_policy()
    );
    response
        .with_header("Content-Security-Policy", policy)
        .with_header("X-Frame-Options", "DENY".into())
}

fn route(state: &State, request: &http::Request) -> Response {
    if let Err(refused) = state.access.check(request) {
        return refused;
    }
    match request.path.as_str() {
        // The token came in the address: keep it in the cookie, and out of the
        // address bar, the history and anything the page might show.
        "/" if state.access.token_in_query(request) => Response::new(303, "text/plain", "")
            .with_header("Location", "/".into())
            .with_header("Set-Cookie", state.access.cookie()),
        "/" => Response::new(200, "text/html; charset=utf-8", state.page.clone()),
        "/api/study" => match state.snapshot() {
            Ok(json) => Response::new(200, "application/json", json.as_slice()),
            Err(error) => Response::error(500, &format!("cannot read the study: {error:#}")),
        },
        path => match path.strip_prefix("/files/") {
            Some(encoded) => file(state, encoded),
            None => Response::error(404, "not found"),
        },
    }
}

fn file(state: &State, encoded: &str) -> Response {
    let Some(path) = files::resolve(&state.root, encoded) else {
        return Response::error(404, "not found");
    };
    let opened = std::fs::File::open(&path).and_then(|file| {
        let length = file.metadata()?.len();
        Ok((file, length))
    });
    match opened {
        Ok((file, length)) => Response {
            status: 200,
            content_type: files::content_type(&path),
            body: Body::File(file, length),
            cacheable: true,
            headers: Vec::new(),
        },
        Err(_) => Response::error(404, "not found"),
    }
}

impl State {
    /// The study as JSON, gathered at most once per `SNAPSHOT_REUSE` for all pages.
    fn snapshot(&self) -> Result<Arc<Vec<u8>>> {
        let mut cached = lock(&self.snapshot);
        if let Some((taken, json)) = cached.as_ref() {
            if taken.elapsed() < SNAPSHOT_REUSE {
                return Ok(Arc::clone(json));
            }
        }
        let mut watched = lock(&self.manifest);
        watched.refresh(&self.manifest_path);
        let snapshot: Snapshot = snapshot::gather(
            &watched.manifest,
            &self.manifest_path,
            &self.root,
            self.claim_timeout,
        )?;
        let json = Arc::new(serde_json::to_vec(&snapshot)?);
        *cached = Some((Instant::now(), Arc::clone(&json)));
        Ok(json)
    }

    /// Closes the connection that has spent longest on its request head, to make room
    /// for a new one; false when every connection is past its head.
    fn evict_slowest_head(&self) -> bool {
        let mut reading = lock(&self.reading);
        let slowest = reading
            .iter()
            .min_by_key(|(_, (since, _))| *since)
            .map(|(id, _)| *id);
        match slowest.and_then(|id| reading.remove(&id)) {
            Some((_, stream)) => {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                true
            }
            None => false,
        }
    }
}

impl Watched {
    /// Reads the manifest again if its file changed; one that no longer loads is said
    /// once and the study shown as before, as a page is better stale than gone.
    fn refresh(&mut self, path: &Path) {
        let stamp = stamp_of(path);
        if stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        match manifest::load(path) {
            Ok(manifest) => self.manifest = manifest,
            Err(error) => crate::notes::say(&format!(
                "serve: {} changed and does not load; showing the study as it was: {error:#}",
                path.display()
            )),
        }
    }
}

/// A file's modification time and length: what tells that it changed.
fn stamp_of(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// 128 random bits from the system, as hex.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the access token")?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_128_random_bits_in_hex() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
