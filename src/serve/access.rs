//! Who `cellnets serve` answers: a request must name this server in its `Host` header
//! (so a site that rebinds its own DNS name to 127.0.0.1 is refused, as Jupyter and
//! Vite refuse it) and carry the token, in the query (`?token=`, printed in the URL) or
//! in the cookie that opening that URL sets. The token is compared in constant time.

use super::http::{cookie_value, query_value, Request, Response};
use std::net::IpAddr;

pub struct Access {
    token: String,
    /// Cookies are kept per host, not per port: each server's has its port in its name,
    /// so two studies served from one machine do not overwrite each other's.
    cookie_name: String,
    /// Lower case, without a trailing dot.
    names: Vec<String>,
}

impl Access {
    /// `allowed` adds names to the loopback ones and this machine's.
    pub fn new(token: String, port: u16, allowed: &[String]) -> Self {
        let this_host = crate::cluster::process::this_host();
        let short = this_host.split('.').next().unwrap_or_default().to_string();
        let names = ["localhost".to_string(), this_host, short]
            .into_iter()
            .chain(allowed.iter().cloned())
            .map(|name| normalised(&name))
            .collect();
        Access {
            token,
            cookie_name: format!("cellnets-{port}"),
            names,
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The `Set-Cookie` value that keeps the token for the rest of the session: not
    /// readable by scripts, and sent only with requests this server's own pages make.
    pub fn cookie(&self) -> String {
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie_name, self.token
        )
    }

    /// Whether the token came in the query string (and is right).
    pub fn token_in_query(&self, request: &Request) -> bool {
        query_value(&request.query, "token").is_some_and(|given| self.is_token(&given))
    }

    /// `Ok` when `request` may be answered, else the 403 to send.
    pub fn check(&self, request: &Request) -> Result<(), Response> {
        if !self.host_allowed(&request.host) {
            return Err(Response::error(
                403,
                &format!(
                    "the Host header {:?} is not a name of this server: open it by IP \
                     address, localhost or this machine's name, or start serve with \
                     --allow-host NAME",
                    request.host
                ),
            ));
        }
        let in_cookie = cookie_value(&request.cookies, &self.cookie_name)
            .is_some_and(|given| self.is_token(given));
        if !in_cookie && !self.token_in_query(request) {
            return Err(Response::error(
                403,
                "this server needs the token printed in its URL when it started: open that \
                 URL once (the browser keeps the token in a cookie), or add ?token=... to \
                 each request",
            ));
        }
        Ok(())
    }

    fn is_token(&self, given: &str) -> bool {
        same_secret(given.as_bytes(), self.token.as_bytes())
    }

    /// An IP address is always allowed: DNS rebinding needs a name. A name must be one
    /// of ours; the port is not checked (a tunnel may forward another one).
    fn host_allowed(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            Some(bracketed) => match bracketed.split_once(']') {
                Some((ip, rest)) => return ip.parse::<IpAddr>().is_ok() && is_port(rest),
                None => return false,
            },
            None => match host.rsplit_once(':') {
                Some((name, port)) if is_port(&format!(":{port}")) => name,
                Some(_) => return false,
                None => host,
            },
        };
        name.parse::<IpAddr>().is_ok() || self.names.contains(&normalised(name))
    }
}

/// Empty, or `:` and a port number.
fn is_port(rest: &str) -> bool {
    rest.is_empty()
        || rest
            .strip_prefix(':')
            .is_some_and(|port| port.parse::<u16>().is_ok())
}

fn normalised(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
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

    fn request(host: &str, query: &str, cookies: &str) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            query: query.into(),
            host: host.into(),
            cookies: cookies.into(),
        }
    }

    #[test]
    fn secrets_are_compared_whole() {
        assert!(same_secret(b"abcd", b"abcd"));
        assert!(!same_secret(b"abce", b"abcd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"abcd"));
    }

    #[test]
    fn the_token_may_come_in_the_query_or_this_ports_cookie() {
        let access = Access::new("s3cret".into(), 8022, &[]);
        let ok = |query: &str, cookies: &str| {
            access.check(&request("localhost", query, cookies)).is_ok()
        };
        assert!(ok("token=s3cret", ""));
        assert!(ok("a=1&token=s3cret", ""));
        assert!(ok("", "x=1; cellnets-8022=s3cret"));
        assert!(!ok("", ""));
        assert!(!ok("token=s3cre", ""));
        assert!(!ok("", "cellnets-8023=s3cret"));
        assert!(!ok("", "cellnets-8022=wrong"));
        assert_eq!(
            access.cookie(),
            "cellnets-8022=s3cret; Path=/; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn only_addresses_and_our_names_may_be_the_host() {
        let access = Access::new("t".into(), 8022, &["Study.Example.org".into()]);
        let host = crate::cluster::process::this_host();
        for allowed in [
            "127.0.0.1",
            "127.0.0.1:8022",
            "10.1.2.3:80",
            "[::1]:8022",
            "[::1]",
            "localhost",
            "LOCALHOST.:8022",
            "study.example.org",
            host.as_str(),
        ] {
            assert!(access.host_allowed(allowed), "{allowed}");
        }
        for refused in [
            "",
            "evil.example.com",
            "evil.example.com:8022",
            "localhost.evil.example.com",
            "127.0.0.1.nip.io",
            "localhost:http",
            "[::1",
            "[evil]:8022",
            "[::1]x",
        ] {
            assert!(!access.host_allowed(refused), "{refused}");
        }
    }
}
