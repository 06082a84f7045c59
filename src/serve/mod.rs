//! `cellnets serve`: the study's page, live, over a small read-only HTTP server
//! (binding, token, routes, one shared snapshot a second). The page (report.html's,
//! without the markdown) polls `api/study`, a fresh snapshot of out/
//! (`report::snapshot`), every two seconds; files under out/ (report.html, figures, CSV
//! tables) are served read-only from `files/`. Polling files rather than watching them
//! works on NFS, where a login node sees what compute nodes write.
//!
//! Safety: it binds 127.0.0.1 unless told otherwise; on any other address every request
//! must carry a random token (printed in the URL, as Jupyter does) or is refused. Only
//! files inside out/ are served (`files::resolve`); request heads are bounded, bodies
//! refused, slow peers cut off, and connections capped. It never writes under out/.
//!
//! Cost to training: one snapshot is gathered at most once a second, whatever the number
//! of open pages, and shared by all of them.

mod files;
pub mod http;

use crate::report::html;
use crate::report::snapshot::{self, Snapshot};
use crate::study::manifest::Manifest;
use anyhow::{Context, Result};
use http::{query_value, read_request, Body, Response};
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Connections handled at once; more are answered 503 at once.
const MAX_CONNECTIONS: usize = 64;
/// A peer that sends its request slower than this is cut off.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// A snapshot younger than this is handed out again instead of reading out/ anew.
const SNAPSHOT_REUSE: Duration = Duration::from_secs(1);

pub struct ServeSettings {
    pub out_dir: PathBuf,
    pub bind: IpAddr,
    /// 0 lets the system pick a free port.
    pub port: u16,
    pub claim_timeout: Duration,
}

/// The server, bound and ready.
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
}

struct State {
    manifest: Manifest,
    manifest_path: PathBuf,
    /// out/, canonical, so that resolved paths can be checked against it.
    root: PathBuf,
    claim_timeout: Duration,
    token: Option<String>,
    page: String,
    snapshot: Mutex<Option<(Instant, Arc<Vec<u8>>)>>,
    connections: AtomicUsize,
}

impl Server {
    /// Binds `settings.bind:port`, with a token unless the address is a loopback one.
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
        let token = match settings.bind.is_loopback() {
            true => None,
            false => Some(random_token()?),
        };
        let title = format!("cellnets: {}", manifest_path.display());
        Ok(Server {
            listener,
            state: Arc::new(State {
                manifest,
                manifest_path: manifest_path.to_path_buf(),
                root,
                claim_timeout: settings.claim_timeout,
                token,
                page: html::page(&title, "", html::Data::Live),
                snapshot: Mutex::new(None),
                connections: AtomicUsize::new(0),
            }),
        })
    }

    /// The address to open, with the token when one is needed.
    pub fn url(&self) -> Result<String> {
        let address = self.listener.local_addr()?;
        let host = match address.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        let token = match &self.state.token {
            Some(token) => format!("?token={token}"),
            None => String::new(),
        };
        Ok(format!("http://{host}:{}/{token}", address.port()))
    }

    /// Serves until the process ends, a thread per connection.
    pub fn run(self) -> Result<()> {
        for stream in self.listener.incoming() {
            let Ok(stream) = stream else { continue };
            let state = Arc::clone(&self.state);
            if state.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
                let busy = Response::error(503, "too many connections; try again");
                let _ = busy.write_to(&stream, true);
                state.connections.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            std::thread::spawn(move || {
                handle(&state, stream);
                state.connections.fetch_sub(1, Ordering::SeqCst);
            });
        }
        Ok(())
    }
}

fn handle(state: &State, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let request = match read_request(&stream) {
        Ok(Some(request)) => request,
        // Closed, timed out or reset before a whole head came: nobody to answer.
        Ok(None) | Err(_) => return,
    };
    let (response, with_body) = match request {
        Ok(request) => (route(state, &request), request.method != "HEAD"),
        Err(refusal) => (Response::error(refusal.status(), "refused"), true),
    };
    let _ = response.write_to(&stream, with_body);
    // Closing with unread bytes (a refused body) would reset the connection before the
    // peer reads the answer: a bounded amount is read and dropped first.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = std::io::copy(&mut (&stream).take(1 << 20), &mut std::io::sink());
}

fn route(state: &State, request: &http::Request) -> Response {
    if let Some(token) = &state.token {
        let given = query_value(&request.query, "token").unwrap_or_default();
        if !same_secret(given.as_bytes(), token.as_bytes()) {
            return Response::error(403, "this server needs the token printed in its URL");
        }
    }
    match request.path.as_str() {
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
        },
        Err(_) => Response::error(404, "not found"),
    }
}

impl State {
    /// The study as JSON, gathered at most once per `SNAPSHOT_REUSE` for all pages.
    fn snapshot(&self) -> Result<Arc<Vec<u8>>> {
        let mut cached = self
            .snapshot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((taken, json)) = cached.as_ref() {
            if taken.elapsed() < SNAPSHOT_REUSE {
                return Ok(Arc::clone(json));
            }
        }
        let snapshot: Snapshot = snapshot::gather(
            &self.manifest,
            &self.manifest_path,
            &self.root,
            self.claim_timeout,
        )?;
        let json = Arc::new(serde_json::to_vec(&snapshot)?);
        *cached = Some((Instant::now(), Arc::clone(&json)));
        Ok(json)
    }
}

/// 128 random bits from the system, as hex.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the access token")?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Compares in time independent of where the first difference is.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_compared_whole() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(same_secret(a.as_bytes(), a.as_bytes()));
        assert!(!same_secret(a.as_bytes(), b.as_bytes()));
        assert!(!same_secret(&a.as_bytes()[..31], a.as_bytes()));
        assert!(!same_secret(b"", a.as_bytes()));
    }
}
