//! A small blocking HTTP/1.1 client for plain `http://` servers: one request per connection,
//! bodies by length, chunked or to the end, and server-sent events read line by line. The
//! HTTP bench and the server's tests use it; it is not a general-purpose client (no TLS, no
//! redirects).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A parsed `http://host[:port][/prefix]` base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// Host name or address.
    pub host: String,
    /// Port (80 when not given).
    pub port: u16,
    /// Path prefix without a trailing slash (`""` or `/v1`-style prefixes).
    pub prefix: String,
}

impl BaseUrl {
    /// Parses a base URL; only plain `http://` is supported.
    pub fn parse(url: &str) -> Result<BaseUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// URLs are supported (no TLS in the bench client)"))?;
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("{url:?}: bad port {p:?}"))?),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let prefix = path.trim_end_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("/{prefix}") };
        Ok(BaseUrl { host: host.trim_matches(['[', ']']).to_string(), port, prefix })
    }

    /// `http://host:port/prefix`.
    pub fn display(&self) -> String {
        format!("http://{}:{}{}", self.host, self.port, self.prefix)
    }
}

/// A response whose body has not been read yet.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    body: Body,
}

enum Framing {
    Length(u64),
    Chunked { left: u64, done: bool },
    Close,
}

struct Body {
    reader: BufReader<TcpStream>,
    framing: Framing,
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.framing {
            Framing::Length(0) => Ok(0),
            Framing::Length(left) => {
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(bad("the connection closed before the body's end"));
                }
                *left -= n as u64;
                Ok(n)
            }
            Framing::Close => self.reader.read(buf),
            Framing::Chunked { done: true, .. } => Ok(0),
            Framing::Chunked { left, done } => {
                if *left == 0 {
                    let mut line = String::new();
                    self.reader.read_line(&mut line)?;
                    let size = line.trim().split(';').next().unwrap_or("");
                    *left = u64::from_str_radix(size, 16).map_err(|_| bad(format!("bad chunk size {line:?}")))?;
                    if *left == 0 {
                        *done = true;
                        // Trailers, then the blank line.
                        loop {
                            line.clear();
                            if self.reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                                break;
                            }
                        }
                        return Ok(0);
                    }
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(bad("the connection closed inside a chunk"));
                }
                *left -= n as u64;
                if *left == 0 {
                    let mut crlf = [0u8; 2];
                    self.reader.read_exact(&mut crlf)?;
                }
                Ok(n)
            }
        }
    }
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The whole body.
    pub fn bytes(mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.body.read_to_end(&mut out)?;
        Ok(out)
    }

    /// The whole body as JSON.
    pub fn json(self) -> std::io::Result<serde_json::Value> {
        let b = self.bytes()?;
        serde_json::from_slice(&b)
            .map_err(|e| bad(format!("the body is not JSON ({e}): {}", String::from_utf8_lossy(&b))))
    }

    /// The body as server-sent events: each call returns the next event's `data` (lines joined
    /// by newlines), or `None` at the end of the stream.
    pub fn next_event(&mut self) -> std::io::Result<Option<String>> {
        let mut data: Option<String> = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            let mut byte = [0u8; 1];
            loop {
                if self.body.read(&mut byte)? == 0 {
                    return Ok(data);
                }
                if byte[0] == b'\n' {
                    break;
                }
                line.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.strip_suffix('\r').unwrap_or(&text);
            if text.is_empty() {
                if data.is_some() {
                    return Ok(data);
                }
                continue;
            }
            if let Some(v) = text.strip_prefix("data:") {
                let v = v.strip_prefix(' ').unwrap_or(v);
                match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(v);
                    }
                    None => data = Some(v.to_string()),
                }
            }
            // Comments (keep-alives) and other fields are skipped.
        }
    }

    /// Closes the connection now (a client going away mid-stream).
    pub fn abort(self) {
        let _ = self.body.reader.get_ref().shutdown(Shutdown::Both);
    }
}

/// Sends one request (`Connection: close`) and reads the status line and headers.
pub fn send(
    base: &BaseUrl,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> std::io::Result<Response> {
    let addr = (base.host.as_str(), base.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| bad(format!("{} does not resolve", base.host)))?;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let mut head = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nAccept: */*\r\n",
        base.prefix, base.host, base.port
    );
    if let Some((ctype, b)) = body {
        head.push_str(&format!("Content-Type: {ctype}\r\nContent-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut w = &stream;
    w.write_all(head.as_bytes())?;
    if let Some((_, b)) = body {
        // A server may answer (413) before reading everything; its answer still counts.
        if let Err(e) = w.write_all(b) {
            if e.kind() != std::io::ErrorKind::BrokenPipe && e.kind() != std::io::ErrorKind::ConnectionReset {
                return Err(e);
            }
        }
    }
    w.flush()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let framing = if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        Framing::Chunked { left: 0, done: false }
    } else if let Some(n) = get("content-length") {
        Framing::Length(n.parse().map_err(|_| bad(format!("bad content-length {n:?}")))?)
    } else {
        Framing::Close
    };
    Ok(Response { status, headers, body: Body { reader, framing } })
}

/// POSTs a JSON value.
pub fn post_json(base: &BaseUrl, path: &str, v: &serde_json::Value, timeout: Duration) -> std::io::Result<Response> {
    send(base, "POST", path, Some(("application/json", v.to_string().as_bytes())), timeout)
}

/// GETs a path.
pub fn get(base: &BaseUrl, path: &str, timeout: Duration) -> std::io::Result<Response> {
    send(base, "GET", path, None, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_parse() {
        let u = BaseUrl::parse("http://127.0.0.1:8000/v1/").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.prefix.as_str()), ("127.0.0.1", 8000, "/v1"));
        assert_eq!(BaseUrl::parse("http://localhost").unwrap().port, 80);
        assert!(BaseUrl::parse("https://x").is_err());
        assert!(BaseUrl::parse("http://x:y").is_err());
    }
}
