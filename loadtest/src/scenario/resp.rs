//! The follower's one hot read, `XREAD` of `herald:events`, over a plain
//! RESP2 connection parsed in place.
//!
//! The load tool runs on the machine it measures. Through the `redis` crate
//! every field of every event became its own `Vec` inside a `Value` tree,
//! built by a parser-combinator: 17% of the load tool's CPU in the
//! throughput scenario (perf), CPU that Herald and Redis then did not get.
//! Here a reply is read into one buffer and walked as byte slices.
//!
//! Only what the follower needs: TCP (no TLS, no unix socket: the caller
//! falls back to the `redis` crate), AUTH and SELECT from the URL.

use std::io;

use redis::{ConnectionAddr, ConnectionInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct EventReader {
    stream: TcpStream,
    buf: Vec<u8>,
    out: Vec<u8>,
}

/// One stream entry: its id and its field/value pairs.
pub struct Entry<'a, 'f> {
    pub id: &'a [u8],
    pub fields: &'f [(&'a [u8], &'a [u8])],
}

impl EventReader {
    /// `None` when the address is not plain TCP.
    pub async fn connect(info: &ConnectionInfo) -> io::Result<Option<EventReader>> {
        let ConnectionAddr::Tcp(host, port) = info.addr() else {
            return Ok(None);
        };
        let stream = TcpStream::connect((host.as_str(), *port)).await?;
        stream.set_nodelay(true)?;
        let mut reader = EventReader {
            stream,
            buf: Vec::with_capacity(1 << 20),
            out: Vec::with_capacity(256),
        };
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = settings.username() {
                auth.push(user.as_bytes());
            }
            auth.push(password.as_bytes());
            reader.simple(&auth).await?;
        }
        if settings.db() != 0 {
            let db = settings.db().to_string();
            reader.simple(&[b"SELECT", db.as_bytes()]).await?;
        }
        Ok(Some(reader))
    }

    /// Send a command whose answer is `+OK` (or an error).
    async fn simple(&mut self, args: &[&[u8]]) -> io::Result<()> {
        self.send(args).await?;
        let end = self.read_reply().await?;
        self.buf.drain(..end);
        Ok(())
    }

    async fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        self.out.clear();
        self.out
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            self.out
                .extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            self.out.extend_from_slice(a);
            self.out.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&self.out).await
    }

    /// Read until `buf` holds one whole reply; its length. An error reply
    /// is an `io::Error` carrying Redis's text.
    async fn read_reply(&mut self) -> io::Result<usize> {
        self.buf.clear();
        loop {
            match skip(&self.buf, 0)? {
                Some(end) => return Ok(end),
                None => {
                    let start = self.buf.len();
                    self.buf.resize(start + 64 * 1024, 0);
                    let n = self.stream.read(&mut self.buf[start..]).await?;
                    self.buf.truncate(start + n);
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "redis closed the connection",
                        ));
                    }
                }
            }
        }
    }

    /// `XREAD [BLOCK ms] COUNT n STREAMS stream last_id`; calls `each` for
    /// every entry read, in order. Returns how many there were.
    pub async fn xread(
        &mut self,
        block_ms: Option<u64>,
        count: usize,
        stream: &str,
        last_id: &str,
        mut each: impl FnMut(Entry<'_, '_>),
    ) -> io::Result<usize> {
        let count = count.to_string();
        let block = block_ms.map(|b| b.to_string());
        let mut args: Vec<&[u8]> = vec![b"XREAD"];
        if let Some(b) = &block {
            args.extend([b"BLOCK".as_slice(), b.as_bytes()]);
        }
        args.extend([
            b"COUNT".as_slice(),
            count.as_bytes(),
            b"STREAMS",
            stream.as_bytes(),
            last_id.as_bytes(),
        ]);
        self.send(&args).await?;
        let end = self.read_reply().await?;
        let reply = &self.buf[..end];
        let mut n = 0;
        walk_xread(reply, |e| {
            n += 1;
            each(e);
        })
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(n)
    }
}

/// The end of the reply starting at `pos`, `None` if `buf` does not hold
/// all of it yet.
fn skip(buf: &[u8], pos: usize) -> io::Result<Option<usize>> {
    let Some((kind, n, next)) = header(buf, pos)? else {
        return Ok(None);
    };
    match kind {
        b'+' | b':' => Ok(Some(next)),
        b'-' => Err(io::Error::other(format!(
            "redis: {}",
            String::from_utf8_lossy(&buf[pos + 1..next - 2])
        ))),
        b'$' if n < 0 => Ok(Some(next)),
        b'$' => {
            let end = next + n as usize + 2;
            Ok((buf.len() >= end).then_some(end))
        }
        b'*' if n < 0 => Ok(Some(next)),
        b'*' => {
            let mut at = next;
            for _ in 0..n {
                match skip(buf, at)? {
                    Some(end) => at = end,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected RESP type byte {other:#x}"),
        )),
    }
}

/// A reply's first line: its type byte, its number (length, count or
/// value; 0 for `+`/`-`) and where the next line starts.
fn header(buf: &[u8], pos: usize) -> io::Result<Option<(u8, i64, usize)>> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(len) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = &buf[pos + 1..pos + len];
    let n = match kind {
        b'$' | b'*' | b':' => std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad RESP length line"))?,
        _ => 0,
    };
    Ok(Some((kind, n, pos + len + 2)))
}

/// A complete reply's bulk string at `pos`, and where the next reply starts.
fn bulk(buf: &[u8], pos: usize) -> Result<(&[u8], usize), &'static str> {
    match header(buf, pos) {
        Ok(Some((b'$', n, next))) if n >= 0 => {
            Ok((&buf[next..next + n as usize], next + n as usize + 2))
        }
        Ok(Some((b'+', _, next))) => Ok((&buf[pos + 1..next - 2], next)),
        _ => Err("expected a string in the XREAD reply"),
    }
}

/// An array header at `pos`: its length (-1 for nil) and where its first
/// element starts.
fn array(buf: &[u8], pos: usize) -> Result<(i64, usize), &'static str> {
    match header(buf, pos) {
        Ok(Some((b'*', n, next))) => Ok((n, next)),
        _ => Err("expected an array in the XREAD reply"),
    }
}

/// Walk a complete RESP2 `XREAD` reply: nil (the block timed out) or
/// `[[stream, [[id, [field, value, …]], …]], …]`.
fn walk_xread(buf: &[u8], mut each: impl FnMut(Entry<'_, '_>)) -> Result<(), &'static str> {
    // One list for every entry's pairs: no allocation per event.
    let mut fields = Vec::new();
    let (streams, mut at) = array(buf, 0)?;
    for _ in 0..streams.max(0) {
        let (two, next) = array(buf, at)?;
        if two != 2 {
            return Err("a stream in the XREAD reply is not [name, entries]");
        }
        let (_name, next) = bulk(buf, next)?;
        let (entries, mut next) = array(buf, next)?;
        for _ in 0..entries.max(0) {
            let (two, n) = array(buf, next)?;
            if two != 2 {
                return Err("an XREAD entry is not [id, fields]");
            }
            let (id, n) = bulk(buf, n)?;
            let (count, mut n) = array(buf, n)?;
            fields.clear();
            for _ in 0..count.max(0) / 2 {
                let (k, m) = bulk(buf, n)?;
                let (v, m) = bulk(buf, m)?;
                fields.push((k, v));
                n = m;
            }
            each(Entry {
                id,
                fields: &fields,
            });
            next = n;
        }
        at = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &[u8] = b"*1\r\n*2\r\n$13\r\nherald:events\r\n*2\r\n\
        *2\r\n$3\r\n1-0\r\n*4\r\n$2\r\nid\r\n$3\r\nm-0\r\n$6\r\nstatus\r\n$4\r\nsent\r\n\
        *2\r\n$3\r\n1-1\r\n*2\r\n$2\r\nid\r\n$0\r\n\r\n";

    #[test]
    fn a_reply_is_complete_only_when_all_of_it_arrived() {
        for cut in 0..REPLY.len() {
            assert_eq!(skip(&REPLY[..cut], 0).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(skip(REPLY, 0).unwrap(), Some(REPLY.len()));
        assert_eq!(skip(b"*-1\r\n", 0).unwrap(), Some(5));
        assert!(skip(b"-ERR wrong\r\n", 0).is_err());
    }

    #[test]
    fn entries_come_out_in_order_with_their_fields() {
        let mut seen = Vec::new();
        walk_xread(REPLY, |e| {
            let fields: Vec<(String, String)> = e
                .fields
                .iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect();
            seen.push((String::from_utf8_lossy(e.id).into_owned(), fields));
        })
        .unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, "1-0");
        assert_eq!(
            seen[0].1,
            vec![
                ("id".to_owned(), "m-0".to_owned()),
                ("status".to_owned(), "sent".to_owned())
            ]
        );
        assert_eq!(seen[1].1, vec![("id".to_owned(), String::new())]);
        // A timed-out block.
        walk_xread(b"*-1\r\n", |_| panic!("no entries")).unwrap();
    }
}
