//! The smallest HTTP/1.1 server the viewer needs: GET and HEAD, keep-alive, on a fixed number
//! of threads, each serving one connection at a time, so that threads, sockets in service and
//! memory stay bounded whatever clients do. Request heads are parsed by `httparse` and
//! limited in size; a slow or idle client is dropped after a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Largest request head (request line and headers) read.
const MAX_HEAD_BYTES: usize = 16 << 10;
const MAX_HEADERS: usize = 48;
/// How long a connection may take to send a request, or stay idle between two.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request as the handler sees it: its path, still percent-encoded (the query is the
/// page's own: the viewer reads it in the browser).
pub struct Request<'a> {
    pub path: &'a str,
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// A file sent after `body` in pieces, never held whole (probability.tiff can be large).
    pub file: Option<(std::fs::File, u64)>,
    /// Extra headers (fixed names and values from the server itself, never the client's).
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn ok(content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status: 200,
            content_type,
            body,
            file: None,
            headers: Vec::new(),
        }
    }

    /// `file` (of `len` bytes) as the body.
    pub fn file(content_type: &'static str, file: std::fs::File, len: u64) -> Response {
        Response {
            file: Some((file, len)),
            ..Response::ok(content_type, Vec::new())
        }
    }

    pub fn error(status: u16, message: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{status} {}: {message}\n", reason(status)).into_bytes(),
            file: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Header Fields Too Large",
        414 => "URI Too Long",
        500 => "Internal Server Error",
        _ => "Error",
    }
}

/// Serves `listener` on `threads` threads with `handle` until the process ends.
pub fn serve<H>(listener: TcpListener, threads: usize, handle: H) -> std::io::Result<()>
where
    H: Fn(&Request) -> Response + Send + Sync + 'static,
{
    let handle = Arc::new(handle);
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (listener, handle) = (listener.try_clone(), handle.clone());
            std::thread::spawn(move || -> std::io::Result<()> {
                let listener = listener?;
                loop {
                    // A connection that fails (reset, timed out) ends; the thread goes on. A
                    // failing accept (out of file handles) waits a moment, not a busy loop.
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = connection(stream, &*handle);
                        }
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker
            .join()
            .map_err(|_| std::io::Error::other("a server thread panicked"))??;
    }
    Ok(())
}

/// Requests of one connection, answered in order, until the client closes it, asks to,
/// errs or idles past the timeout.
fn connection(stream: TcpStream, handle: &dyn Fn(&Request) -> Response) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let head = match read_head(&mut reader)? {
            Head::Complete(head) => head,
            Head::Closed => return Ok(()),
            Head::TooLarge => {
                write(
                    &mut writer,
                    &mut Response::error(413, "request head too large"),
                    false,
                    true,
                )?;
                return Ok(());
            }
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let (method, target, keep_alive) = match parsed.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                let version = parsed.version.unwrap_or(0);
                let close = parsed.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("connection")
                        && String::from_utf8_lossy(h.value).eq_ignore_ascii_case("close")
                });
                let body = parsed.headers.iter().any(|h| {
                    (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
                        || h.name.eq_ignore_ascii_case("transfer-encoding")
                });
                (
                    parsed.method.unwrap_or("").to_string(),
                    parsed.path.unwrap_or("").to_string(),
                    version == 1 && !close && !body,
                )
            }
            _ => {
                write(
                    &mut writer,
                    &mut Response::error(400, "malformed request"),
                    false,
                    true,
                )?;
                return Ok(());
            }
        };
        let head_only = method == "HEAD";
        let mut response = if method != "GET" && !head_only {
            Response::error(405, "only GET and HEAD")
        } else if target.len() > 4096 {
            Response::error(414, "request target longer than 4096 bytes")
        } else {
            let path = target.split_once('?').map_or(target.as_str(), |(p, _)| p);
            handle(&Request { path })
        };
        write(&mut writer, &mut response, head_only, !keep_alive)?;
        if !keep_alive {
            return Ok(());
        }
    }
}

enum Head {
    Complete(Vec<u8>),
    Closed,
    TooLarge,
}

/// Bytes up to and including the blank line ending a request head.
fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Head> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = reader
            .by_ref()
            .take((MAX_HEAD_BYTES + 1 - head.len()) as u64)
            .read_until(b'\n', &mut head)?;
        if n == 0 {
            return Ok(if head.is_empty() {
                Head::Closed
            } else {
                Head::TooLarge
            });
        }
        if head.len() > MAX_HEAD_BYTES {
            return Ok(Head::TooLarge);
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            // Blank lines before a request line are tolerated (RFC 9112 §2.2).
            if before == 0 {
                head.clear();
                continue;
            }
            return Ok(Head::Complete(head));
        }
    }
}

fn write(w: &mut TcpStream, r: &mut Response, head_only: bool, close: bool) -> std::io::Result<()> {
    let length = r.body.len() as u64 + r.file.as_ref().map_or(0, |f| f.1);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {length}\r\nX-Content-Type-Options: nosniff\r\n",
        r.status,
        reason(r.status),
        r.content_type,
    );
    for (name, value) in &r.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(if close {
        "Connection: close\r\n\r\n"
    } else {
        "\r\n"
    });
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&r.body);
    }
    w.write_all(&bytes)?;
    if let (false, Some((file, len))) = (head_only, r.file.as_mut()) {
        // A file that shrank since is cut short: the client sees a short body, not a hang.
        let sent = std::io::copy(&mut file.take(*len), w)?;
        if sent < *len {
            return Err(std::io::Error::other("file shorter than announced"));
        }
    }
    w.flush()
}
