//! The little of HTTP/1.1 that `cellnets serve` speaks: GET and HEAD requests without a
//! body, one per connection, with every part of a request bounded before it is read, and
//! plain responses. A study's page polls a few small resources; this needs no async
//! runtime, and keeping the parser this small keeps every limit in sight.

use std::io::{self, BufRead, BufReader, Read, Write};

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
}

/// Why a request is refused before it is routed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// Not HTTP, or not understood.
    BadRequest,
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
            Refusal::BadRequest => 400,
            Refusal::HeadTooLarge => 431,
            Refusal::BodyNotAllowed => 413,
            Refusal::MethodNotAllowed => 405,
        }
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

fn parse_head(head: &[u8]) -> Result<Request, Refusal> {
    let text = std::str::from_utf8(head).map_err(|_| Refusal::BadRequest)?;
    let mut lines = text.lines();
    let request_line = lines.next().ok_or(Refusal::BadRequest)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::BadRequest);
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(Refusal::BadRequest);
    }
    for line in lines.take_while(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(Refusal::BadRequest)?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        let has_body = match name.as_str() {
            "content-length" => value != "0",
            "transfer-encoding" => true,
            _ => false,
        };
        if has_body {
            return Err(Refusal::BodyNotAllowed);
        }
    }
    if method != "GET" && method != "HEAD" {
        return Err(Refusal::MethodNotAllowed);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
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

/// A response: status, content type, body, and whether it may be cached.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Body,
    pub cacheable: bool,
}

pub enum Body {
    Bytes(Vec<u8>),
    /// A file streamed from disk, with its length.
    File(std::fs::File, u64),
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            body: Body::Bytes(body.into()),
            cacheable: false,
        }
    }

    /// A short text saying why the request was not served.
    pub fn error(status: u16, why: &str) -> Self {
        Response::new(status, "text/plain; charset=utf-8", format!("{why}\n"))
    }

    /// Writes the response; the body only for GET. The connection closes after it.
    pub fn write_to(self, mut stream: impl Write, with_body: bool) -> io::Result<()> {
        let length = match &self.body {
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::File(_, length) => *length,
        };
        let cache = match self.cacheable {
            true => "private, max-age=5",
            false => "no-store",
        };
        // No referrer: a token in the page's address must not leak to other sites.
        write!(
            stream,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {length}\r\n\
             Cache-Control: {cache}\r\nX-Content-Type-Options: nosniff\r\n\
             Referrer-Policy: no-referrer\r\nConnection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
        )?;
        if with_body {
            match self.body {
                Body::Bytes(bytes) => stream.write_all(&bytes)?,
                Body::File(mut file, _) => {
                    io::copy(&mut file, &mut stream)?;
                }
            }
        }
        stream.flush()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
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
    fn a_get_splits_into_path_and_query() {
        let request = read(b"GET /files/a%20b?token=x%2By HTTP/1.1\r\nHost: h\r\n\r\n");
        let request = request.unwrap().unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/files/a%20b");
        assert_eq!(query_value(&request.query, "token").as_deref(), Some("x+y"));
        assert_eq!(read(b""), None);
    }

    #[test]
    fn oversized_heads_bodies_other_methods_and_garbage_are_refused() {
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(vec![b'a'; MAX_HEAD_BYTES]);
        huge.extend(b"\r\n\r\n");
        assert_eq!(read(&huge), Some(Err(Refusal::HeadTooLarge)));
        let endless = vec![b'a'; 10 * MAX_HEAD_BYTES];
        assert_eq!(read(&endless), Some(Err(Refusal::HeadTooLarge)));
        let post = b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n";
        assert_eq!(read(post), Some(Err(Refusal::BodyNotAllowed)));
        let delete = b"DELETE / HTTP/1.1\r\n\r\n";
        assert_eq!(read(delete), Some(Err(Refusal::MethodNotAllowed)));
        assert_eq!(read(b"hello\r\n\r\n"), Some(Err(Refusal::BadRequest)));
        assert_eq!(
            read(b"GET / HTTP/1.1\r\nHost"),
            Some(Err(Refusal::BadRequest))
        );
        assert_eq!(
            read(b"GET http://x/ HTTP/1.1\r\n\r\n"),
            Some(Err(Refusal::BadRequest))
        );
    }

    #[test]
    fn percent_decoding_refuses_malformed_escapes() {
        assert_eq!(percent_decode("%2e%2E/x").as_deref(), Some("../x"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("a%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
