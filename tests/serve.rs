//! `cellnets serve` over plain TCP: the page and the study's data are served, files
//! only from inside out/ (no `..`, encoded or not, no symlink out, no absolute path),
//! oversized and malformed requests are refused; every request needs the token (loopback
//! too) and a Host that names the server; slow peers cannot keep others out; a growing
//! file is sent at its declared length; a closed stdout is no crash; a stage added to
//! the manifest appears; and the server keeps serving through all of it without writing
//! under out/.

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
    /// The token printed in the URL.
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
    let token = path
        .strip_prefix("?token=")
        .unwrap_or_else(|| panic!("no token in the URL {url}"));
    assert_eq!(token.len(), 32, "{url}");
    Served {
        child,
        address: address.to_string(),
        token: token.to_string(),
        _stdout: stdout,
    }
}

impl Served {
    /// GET `target` with the token in the cookie a browser keeps it in.
    fn get(&self, target: &str) -> (u16, String) {
        let port = self.address.rsplit_once(':').unwrap().1;
        let cookie = format!("cellnets-{port}={}", self.token);
        get_with(&self.address, target, &[("Cookie", &cookie)])
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
    get_with(address, target, &[])
}

/// GET with `Host: address` and `headers`.
fn get_with(address: &str, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: {address}\r\n");
    for (name, value) in headers {
        request += &format!("{name}: {value}\r\n");
    }
    send(address, format!("{request}\r\n").as_bytes())
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

    let (status, page) = server.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("data-mode=\"live\""), "{page}");
    let (status, study) = server.get("/api/study");
    assert_eq!(status, 200);
    let study: serde_json::Value = serde_json::from_str(&study).unwrap();
    let runs = &study["stages"][0]["runs"];
    assert_eq!(runs[0]["name"], "hidden=8");
    assert_eq!(runs[1]["state"], "finished");
    assert_eq!(runs[1]["epochs"]["epoch"], serde_json::json!([1, 2]));
    let (status, epochs) = server.get("/files/width/hidden=8/epochs.csv");
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
        let (status, body) = server.get(target);
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
    for malformed in [
        "GET / HTTP/1.1garbage\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(send(address, malformed.as_bytes()).0, 400, "{malformed:?}");
    }

    assert_eq!(server.get("/api/study").0, 200, "still serving");
    assert_eq!(tree(&out), before, "serve wrote under out/");
}

#[test]
fn every_request_needs_the_token_and_a_host_that_names_the_server() {
    let dir = trained_study();
    for bind in ["127.0.0.1", "0.0.0.0"] {
        let server = serve(
            dir.path(),
            &["--bind", bind, "--allow-host", "Study.Example"],
        );
        let port = server.address.rsplit_once(':').unwrap().1;
        let address = format!("127.0.0.1:{port}");
        let token = server.token.as_str();
        let cookie = format!("cellnets-{port}={token}");

        for target in [
            "/",
            "/api/study",
            "/files/width/hidden=8/epochs.csv",
            "/nothing",
        ] {
            let (status, body) = get(&address, target);
            assert_eq!(status, 403, "{bind} {target} without the token: {body}");
            assert!(body.contains("token printed in its URL"), "{body}");
            let wrong = format!("{target}?token={}", "0".repeat(32));
            assert_eq!(get(&address, &wrong).0, 403, "{target} with a wrong token");
            let shorter = format!("{target}?token={}", &token[..31]);
            assert_eq!(get(&address, &shorter).0, 403, "{target} with part of it");
            let other_port = format!("cellnets-1={token}");
            let misfiled = get_with(&address, target, &[("Cookie", &other_port)]);
            assert_eq!(misfiled.0, 403, "{target} with another server's cookie");
            let expected = if target == "/nothing" { 404 } else { 200 };
            let with_cookie = get_with(&address, target, &[("Cookie", &cookie)]);
            assert_eq!(with_cookie.0, expected, "{bind} {target} with the cookie");
            let in_query = format!("{target}?token={token}");
            let expected = if target == "/" { 303 } else { expected };
            assert_eq!(
                get(&address, &in_query).0,
                expected,
                "{target} with the token"
            );
        }

        // Opening the printed URL moves the token into the cookie and out of the address.
        let mut stream = TcpStream::connect(&address).unwrap();
        let opened = format!("GET /?token={token} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n");
        stream.write_all(opened.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 303 "), "{answer}");
        assert!(answer.contains("\r\nLocation: /\r\n"), "{answer}");
        let set_cookie = format!("\r\nSet-Cookie: {cookie}; Path=/; HttpOnly; SameSite=Strict\r\n");
        assert!(answer.contains(&set_cookie), "{answer}");
        assert!(answer.contains("frame-ancestors 'none'"), "{answer}");

        // DNS rebinding: a page whose name now resolves to 127.0.0.1 sends its own name.
        for host in [
            "evil.example.com",
            "evil.example.com:80",
            "localhost.evil.example.com",
        ] {
            let (status, body) =
                send(&address, format!("GET /api/study?token={token} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n").as_bytes());
            assert_eq!(status, 403, "{host}: {body}");
            assert!(body.contains("--allow-host"), "{body}");
        }
        for host in [
            format!("localhost:{port}"),
            "study.example".into(),
            format!("[::1]:{port}"),
        ] {
            let request =
                format!("GET /api/study HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n");
            assert_eq!(send(&address, request.as_bytes()).0, 200, "{host}");
        }
        let traversal = format!("/files/%2e%2e/secret.txt?token={token}");
        assert_eq!(get(&address, &traversal).0, 404);
    }
}

/// A connection that sends its request one byte at a time, slower than any deadline
/// per read would catch.
fn trickle(address: &str) -> std::thread::JoinHandle<()> {
    let address = address.to_string();
    std::thread::spawn(move || {
        let Ok(mut stream) = TcpStream::connect(&address) else {
            return;
        };
        for byte in b"GET /api/study HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaa" {
            if stream.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(900));
        }
    })
}

#[test]
fn more_slow_peers_than_connection_slots_cannot_keep_a_request_out() {
    let dir = trained_study();
    let server = serve(dir.path(), &[]);
    // Twice the server's 64 slots, each trickling a byte every 0.9 s.
    let slow: Vec<_> = (0..128).map(|_| trickle(&server.address)).collect();
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let (status, _) = server.get("/api/study");
        let took = started.elapsed();
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(5), "answered after {took:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The whole head has a deadline: after it, even one byte a second is cut off.
    let started = std::time::Instant::now();
    for peer in slow {
        peer.join().unwrap();
    }
    let all_cut_off = started.elapsed();
    assert!(
        all_cut_off < Duration::from_secs(30),
        "slow peers held on for {all_cut_off:?}"
    );
}

#[test]
fn a_file_that_grows_while_it_is_sent_is_sent_at_its_declared_length() {
    let dir = trained_study();
    let big = dir.path().join("out/big.csv");
    std::fs::write(&big, vec![b'a'; 16 << 20]).unwrap();
    let server = serve(dir.path(), &[]);
    let port = server.address.rsplit_once(':').unwrap().1;
    let mut stream = TcpStream::connect(&server.address).unwrap();
    let request = format!(
        "GET /files/big.csv HTTP/1.1\r\nHost: localhost\r\nCookie: cellnets-{port}={}\r\n\r\n",
        server.token
    );
    stream.write_all(request.as_bytes()).unwrap();
    // The server is now blocked on a full socket, its file open at 16 MiB.
    std::thread::sleep(Duration::from_millis(500));
    let mut file = std::fs::OpenOptions::new().append(true).open(&big).unwrap();
    file.write_all(&vec![b'b'; 4 << 20]).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&answer[..split]);
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", 16 << 20)),
        "{head}"
    );
    assert_eq!(answer.len() - split, 16 << 20, "the body as declared");
    assert!(!answer[split..].contains(&b'b'));
}

#[test]
fn a_closed_stdout_does_not_stop_the_server() {
    let dir = trained_study();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // As `cellnets serve | head -1` leaves it: nobody reads what it prints next.
    let mut child = cellnets_command(dir.path())
        .args(["serve", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let address = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(&address).is_err() {
        assert!(std::time::Instant::now() < deadline, "serve never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        get(&address, "/").0,
        403,
        "serving, and asking for the token"
    );
    assert!(child.try_wait().unwrap().is_none(), "serve stopped");
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_stage_added_to_the_manifest_while_it_serves_appears() {
    let dir = trained_study();
    let server = serve(dir.path(), &[]);
    let stages = |server: &Served| {
        let (status, study) = server.get("/api/study");
        assert_eq!(status, 200, "{study}");
        let study: serde_json::Value = serde_json::from_str(&study).unwrap();
        let names: Vec<String> = study["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|stage| stage["name"].as_str().unwrap().to_string())
            .collect();
        names
    };
    assert_eq!(stages(&server), ["width"]);
    let manifest = dir.path().join("experiments.yaml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text += "  - name: added\n    model: {kind: mlp, hidden: 4}\n";
    std::fs::write(&manifest, &text).unwrap();
    // Snapshots are reused for a second.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(stages(&server), ["width", "added"]);
    // A manifest that no longer loads leaves the page as it was.
    std::fs::write(&manifest, "stages: [").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(stages(&server), ["width", "added"]);
}
