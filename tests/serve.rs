//! `cellnets serve` over plain TCP: the page and the study's data are served, files
//! only from inside out/ (no `..`, encoded or not, no symlink out, no absolute path),
//! oversized requests are refused, a non-loopback bind refuses every request without its
//! token, and the server keeps serving through all of it without writing under out/.

use crate::common;

use common::outputs::{cellnets, cellnets_command, study_dir};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime};

const STUDY: &str = "  - name: width
    model: {kind: mlp, hidden: 8}
    grid: {hidden: [8, 16]}
";

/// What a file outside out/ holds: no response may contain it.
const SECRET: &str = "the secret outside out";

/// A running `cellnets serve`, stopped when dropped.
struct Served {
    child: Child,
    /// host:port
    address: String,
    /// `?token=...`, or empty.
    token: String,
    /// Kept open: the server prints more after its URL.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, args: &[&str]) -> Served {
    let mut child = cellnets_command(dir)
        .args(["serve", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let rest = url.trim_start_matches("http://");
    let (address, path) = rest.split_once('/').unwrap();
    Served {
        child,
        address: address.to_string(),
        token: path.to_string(),
        _stdout: stdout,
    }
}

/// Sends `request` as is and returns the status and body of the answer.
fn send(address: &str, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // A refused request may be answered before all of it is sent.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string());
    (status, body)
}

fn get(address: &str, target: &str) -> (u16, String) {
    send(
        address,
        format!("GET {target} HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes(),
    )
}

/// Every path under `dir` with its size and modification time.
fn tree(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        found.push((entry.path(), meta.len(), meta.modified().unwrap()));
        if meta.is_dir() {
            found.extend(tree(&entry.path()));
        }
    }
    found.sort();
    found
}

/// A trained toy study with a secret beside out/ and a symlink from out/ to it.
fn trained_study() -> tempfile::TempDir {
    let dir = study_dir(STUDY);
    let trained = cellnets(dir.path()).output().unwrap();
    assert!(trained.status.success());
    std::fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("secret.txt"),
        dir.path().join("out/escape.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("out/width/up")).unwrap();
    dir
}

#[test]
fn only_files_inside_out_are_served_and_bad_requests_are_refused_while_it_keeps_serving() {
    let dir = trained_study();
    let out = dir.path().join("out");
    let before = tree(&out);
    let server = serve(dir.path(), &[]);
    let address = server.address.as_str();
    assert_eq!(server.token, "", "no token on the loopback address");

    let (status, page) = get(address, "/");
    assert_eq!(status, 200);
    assert!(page.contains("data-mode=\"live\""), "{page}");
    let (status, study) = get(address, "/api/study");
    assert_eq!(status, 200);
    let study: serde_json::Value = serde_json::from_str(&study).unwrap();
    let runs = &study["stages"][0]["runs"];
    assert_eq!(runs[0]["name"], "hidden=8");
    assert_eq!(runs[1]["state"], "finished");
    assert_eq!(runs[1]["epochs"]["epoch"], serde_json::json!([1, 2]));
    let (status, epochs) = get(address, "/files/width/hidden=8/epochs.csv");
    assert_eq!(status, 200);
    assert!(epochs.starts_with("stage,run,epoch,"), "{epochs}");

    for target in [
        "/files/../secret.txt",
        "/files/width/../../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/%2E%2E%2Fsecret.txt",
        "/files/width/%2e%2e/%2e%2e/secret.txt",
        "/files/..%5csecret.txt",
        "/files/%252e%252e/secret.txt",
        "/files/escape.txt",
        "/files/width/up/secret.txt",
        "/files//etc/passwd",
        "/files/%2Fetc%2Fpasswd",
        "/../secret.txt",
        "/files/width/.stage.lock",
        "/secret.txt",
    ] {
        let (status, body) = get(address, target);
        assert_eq!(status, 404, "{target}: {body}");
        assert!(!body.contains(SECRET), "{target}");
    }

    // Each far over the limits, and under the megabyte the server reads and drops
    // before closing, so the answer is not lost to a connection reset.
    let mut huge_head = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..4_000 {
        huge_head.extend(format!("X-Filler-{i}: {}\r\n", "a".repeat(40)).as_bytes());
    }
    huge_head.extend(b"\r\n");
    assert_eq!(send(address, &huge_head).0, 431);
    let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(256 << 10));
    assert_eq!(send(address, long_target.as_bytes()).0, 431);
    let mut upload = b"POST / HTTP/1.1\r\nContent-Length: 50000000\r\n\r\n".to_vec();
    upload.extend(vec![b'x'; 512 << 10]);
    assert_eq!(send(address, &upload).0, 413);
    assert_eq!(send(address, b"PUT /files/x HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(send(address, b"not http at all\r\n\r\n").0, 400);

    assert_eq!(get(address, "/api/study").0, 200, "still serving");
    assert_eq!(tree(&out), before, "serve wrote under out/");
}

#[test]
fn on_another_address_every_request_needs_the_printed_token() {
    let dir = trained_study();
    let server = serve(dir.path(), &["--bind", "0.0.0.0"]);
    let port = server.address.rsplit_once(':').unwrap().1;
    let address = format!("127.0.0.1:{port}");
    let token = server
        .token
        .strip_prefix("?token=")
        .unwrap_or_else(|| panic!("no token in the URL: {:?}", server.token));
    assert_eq!(token.len(), 32);

    for target in ["/", "/api/study", "/files/width/hidden=8/epochs.csv"] {
        assert_eq!(get(&address, target).0, 403, "{target} without the token");
        let wrong = format!("{target}?token={}", "0".repeat(32));
        assert_eq!(get(&address, &wrong).0, 403, "{target} with a wrong token");
        let shorter = format!("{target}?token={}", &token[..31]);
        assert_eq!(get(&address, &shorter).0, 403, "{target} with part of it");
        let right = format!("{target}?token={token}");
        assert_eq!(get(&address, &right).0, 200, "{target} with the token");
    }
    let traversal = format!("/files/%2e%2e/secret.txt?token={token}");
    assert_eq!(get(&address, &traversal).0, 404);
}
