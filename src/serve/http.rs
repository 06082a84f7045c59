//! The little of HTTP/1.1 that `cellnets serve` speaks: GET and HEAD requests without a
//! body, one per connection, parsed strictly (a request another server might read
//! differently is refused), with every part bounded before it is read and every read
//! and write held to a deadline; and plain responses, never longer than they declare. A
//! study's page polls a few small resources; this needs no async runtime, and keeping
//! the parser this small keeps every limit in sight.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The request line and headers together; a longer head is refused (431).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A request as `serve` needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    /// The path, still percent-encoded.
    pub path: String,
    /// The query string, still percent-encoded; empty without one.
    pub query: String,
    /// The one `Host` header's value.
    pub host: String,
    /// The `Cookie` headers' values, joined by `; `; empty without one.
    pub cookies: String,
}

/// Why a request is refused before it is routed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// Not HTTP/1.0 or 1.1 as the RFCs write it: a malformed request line, a header
    /// that is not `name: value`, a control character, folded lines.
    BadRequest,
    /// No `Host` header, or more than one: which site was asked for is unclear.
    AmbiguousHost,
    /// The head exceeds `MAX_HEAD_BYTES`.
    HeadTooLarge,
    /// A body, which no resource here takes.
    BodyNotAllowed,
    /// A method other than GET and HEAD.
    MethodNotAllowed,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::BadRequest | Refusal::AmbiguousHost => 400,
            Refusal::HeadTooLarge => 431,
            Refusal::BodyNotAllowed => 413,
            Refusal::MethodNotAllowed => 405,
        }
    }

    /// The answer's text.
    pub fn why(self) -> &'static str {
        match self {
            Refusal::BadRequest => "not a well-formed HTTP/1.1 request",
            Refusal::AmbiguousHost => "a request needs exactly one Host header",
            Refusal::HeadTooLarge => "request head too large",
            Refusal::BodyNotAllowed => "this server takes no request bodies",
            Refusal::MethodNotAllowed => "only GET and HEAD",
        }
    }

    pub fn response(self) -> Response {
        let response = Response::error(self.status(), self.why());
        match self {
            Refusal::MethodNotAllowed => response.with_header("Allow", "GET, HEAD".into()),
            _ => response,
        }
    }
}

/// A connection read and written against deadlines: each read or write may take only
/// what is left until its deadline, so a peer that trickles bytes is cut off when the
/// whole request (or response) is late, not when one read is.
pub struct Timed<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl<'a> Timed<'a> {
    pub fn new(stream: &'a TcpStream, deadline: Instant) -> Self {
        Timed { stream, deadline }
    }

    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match left.is_zero() {
            true => Err(io::Error::new(io::ErrorKind::TimedOut, "past the deadline")),
            false => Ok(left),
        }
    }
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        (&*self.stream).read(buf)
    }
}

impl Write for Timed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        (&*self.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self.stream).flush()
    }
}

/// Reads one request's head from `stream`, never more than `MAX_HEAD_BYTES`. `Ok(None)`
/// when the peer closed without sending anything.
pub fn read_request(stream: impl Read) -> io::Result<Option<Result<Request, Refusal>>> {
    let mut reader = BufReader::new(stream.take(MAX_HEAD_BYTES as u64 + 1));
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let read = reader.read_until(b'\n', &mut head)?;
        if read == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            // Cut off: by the peer, or by the size limit.
            let refusal = match head.len() > MAX_HEAD_BYTES {
                true => Refusal::HeadTooLarge,
                false => Refusal::BadRequest,
            };
            return Ok(Some(Err(refusal)));
        }
        if head.len() > MAX_HEAD_BYTES {
            return Ok(Some(Err(Refusal::HeadTooLarge)));
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    Ok(Some(parse_head(&head)))
}

/// RFC 9110's `tchar`: what a method or a header name is made of.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value may hold visible characters, spaces and tabs; any other control
/// character (a bare CR, NUL, DEL) is how request smuggling and header injection start.
fn is_clean_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

fn parse_head(head: &[u8]) -> Result<Request, Refusal> {
    let text = std::str::from_utf8(head).map_err(|_| Refusal::BadRequest)?;
    // Lines end in CRLF, or LF alone (RFC 9112 lets a server accept it); the head ends
    // with an empty line, which `read_request` stopped at.
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    let request_line = lines.next().ok_or(Refusal::BadRequest)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::BadRequest);
    };
    let target_is_clean = target.starts_with('/') && target.bytes().all(|b| b > 0x20 && b < 0x7f);
    if !is_token(method) || !matches!(version, "HTTP/1.0" | "HTTP/1.1") || !target_is_clean {
        return Err(Refusal::BadRequest);
    }
    let (mut hosts, mut cookies, mut has_body) = (Vec::new(), Vec::new(), false);
    for line in lines.take_while(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(Refusal::BadRequest)?;
        // No space before the colon and no folded continuation lines (RFC 9112 5.1, 5.2).
        if !is_token(name) || !is_clean_value(value) {
            return Err(Refusal::BadRequest);
        }
        let value = value.trim_matches([' ', '\t']);
        match name.to_ascii_lowercase().as_str() {
            "host" => hosts.push(value),
            "cookie" => cookies.push(value),
            "content-length" => has_body |= value != "0",
            "transfer-encoding" => has_body = true,
            _ => {}
        }
    }
    if has_body {
        return Err(Refusal::BodyNotAllowed);
    }
    if method != "GET" && method != "HEAD" {
        return Err(Refusal::MethodNotAllowed);
    }
    let [host] = hosts[..] else {
        return Err(Refusal::AmbiguousHost);
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        host: host.to_string(),
        cookies: cookies.join("; "),
    })
}

/// `%XX` sequences decoded; `None` when one is malformed or the bytes are not UTF-8.
/// `+` stays `+`: paths do not use the form encoding.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// The value of `name` in a query string, decoded.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| percent_decode(value))
}

/// The value of the cookie `name` in a `Cookie` header's `a=b; c=d` list.
pub fn cookie_value<'a>(cookies: &'a str, name: &str) -> Option<&'a str> {
    cookies
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A response: status, content type, body, whether it may be cached, and any further
/// headers.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Body,
    pub cacheable: bool,
    pub headers: Vec<(&'static str, String)>,
}

pub enum Body {
    Bytes(Vec<u8>),
    /// A file streamed from disk, with its length when it was opened.
    File(std::fs::File, u64),
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            body: Body::Bytes(body.into()),
            cacheable: false,
            headers: Vec::new(),
        }
    }

    /// A short text saying why the request was not served.
    pub fn error(status: u16, why: &str) -> Self {
        Response::new(status, "text/plain; charset=utf-8", format!("{why}\n"))
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The body's length, as `Content-Length` declares it.
    pub fn length(&self) -> u64 {
        match &self.body {
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::File(_, length) => *length,
        }
    }

    /// Writes the response; the body only for GET. The connection closes after it.
    pub fn write_to(self, mut stream: impl Write, with_body: bool) -> io::Result<()> {
        let length = self.length();
        let cache = match self.cacheable {
            true => "private, max-age=5",
            false => "no-store",
        };
        // No referrer: a token in the page's address must not leak to other sites.
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {length}\r\n\
             Cache-Control: {cache}\r\nX-Content-Type-Options: nosniff\r\n\
             Referrer-Policy: no-referrer\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
        );
        for (name, value) in &self.headers {
            head += &format!("{name}: {value}\r\n");
        }
        head += "\r\n";
        stream.write_all(head.as_bytes())?;
        if with_body {
            match self.body {
                Body::Bytes(bytes) => stream.write_all(&bytes)?,
                // A file that grows while it is sent stops at the length declared; one
                // that shrinks ends the connection early, which the peer can tell.
                Body::File(file, length) => {
                    io::copy(&mut file.take(length), &mut stream)?;
                }
            }
        }
        stream.flush()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &[u8]) -> Option<Result<Request, Refusal>> {
        read_request(text).unwrap()
    }

    #[test]
    fn a_get_splits_into_path_query_host_and_cookies() {
        let request = read(b"GET /files/a%20b?token=x%2By HTTP/1.1\r\nHost: h:80\r\nCookie: a=1\r\ncookie: b=2; c=3\r\n\r\n");
        let request = request.unwrap().unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/files/a%20b");
        assert_eq!(request.host, "h:80");
        assert_eq!(query_value(&request.query, "token").as_deref(), Some("x+y"));
        assert_eq!(cookie_value(&request.cookies, "b"), Some("2"));
        assert_eq!(cookie_value(&request.cookies, "c"), Some("3"));
        assert_eq!(cookie_value(&request.cookies, "d"), None);
        assert_eq!(read(b""), None);
        let bare_newlines = read(b"HEAD / HTTP/1.0\nHost: h\n\n").unwrap().unwrap();
        assert_eq!(
            (bare_newlines.method.as_str(), bare_newlines.path.as_str()),
            ("HEAD", "/")
        );
    }

    #[test]
    fn oversized_heads_bodies_other_methods_and_garbage_are_refused() {
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(vec![b'a'; MAX_HEAD_BYTES]);
        huge.extend(b"\r\n\r\n");
        assert_eq!(read(&huge), Some(Err(Refusal::HeadTooLarge)));
        let endless = vec![b'a'; 10 * MAX_HEAD_BYTES];
        assert_eq!(read(&endless), Some(Err(Refusal::HeadTooLarge)));
        let post = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999\r\n\r\n";
        assert_eq!(read(post), Some(Err(Refusal::BodyNotAllowed)));
        let delete = b"DELETE / HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(read(delete), Some(Err(Refusal::MethodNotAllowed)));
        let allow = Refusal::MethodNotAllowed.response().headers;
        assert_eq!(allow, vec![("Allow", "GET, HEAD".to_string())]);
        for garbage in [
            &b"hello\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost",
            b"GET http://x/ HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1garbage\r\nHost: h\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
            b"GET / http/1.1\r\nHost: h\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n",
        ] {
            let shown = String::from_utf8_lossy(garbage);
            assert_eq!(read(garbage), Some(Err(Refusal::BadRequest)), "{shown:?}");
        }
        for hosts in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ] {
            let shown = String::from_utf8_lossy(hosts);
            assert_eq!(read(hosts), Some(Err(Refusal::AmbiguousHost)), "{shown:?}");
        }
    }

    #[test]
    fn a_body_is_never_longer_than_declared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("growing.csv");
        std::fs::write(&path, "abc").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        std::fs::write(&path, "abcdefgh").unwrap();
        let response = Response {
            status: 200,
            content_type: "text/csv",
            body: Body::File(file, 3),
            cacheable: true,
            headers: Vec::new(),
        };
        let mut sent = Vec::new();
        response.write_to(&mut sent, true).unwrap();
        let sent = String::from_utf8(sent).unwrap();
        assert!(sent.contains("Content-Length: 3\r\n"), "{sent}");
        assert!(sent.ends_with("\r\n\r\nabc"), "{sent}");
    }

    #[test]
    fn percent_decoding_refuses_malformed_escapes() {
        assert_eq!(percent_decode("%2e%2E/x").as_deref(), Some("../x"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("a%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
