//! Byte streams in and out: standard input/output, or a Unix socket server taking one client
//! at a time.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use crate::parse::{MAX_LINE_LEN, ProtocolError};
use crate::{ServeError, ServeOptions, Session};

/// Input is read in chunks of this size; replies are flushed whenever no complete request
/// is left in it, so a lock-step client gets every reply at once and a pipelining client
/// gets them in large writes.
const IO_BUFFER: usize = 64 * 1024;

enum LineStatus {
    /// A line (possibly the last one, without newline) is in the buffer.
    Line,
    /// A line longer than the limit was read and thrown away.
    TooLong,
    Eof,
}

/// Read one line into `line` (newline and a trailing carriage return removed), keeping at
/// most `max` bytes: a longer line is consumed to its end and reported as [`LineStatus::TooLong`].
fn read_line_bounded(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineStatus> {
    line.clear();
    let mut too_long = false;
    let mut read_any = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(match (read_any, too_long) {
                (false, _) => LineStatus::Eof,
                (true, true) => LineStatus::TooLong,
                (true, false) => LineStatus::Line,
            });
        }
        read_any = true;
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if !too_long {
            let body = if done { &buf[..take - 1] } else { &buf[..take] };
            if line.len() + body.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(body);
            }
        }
        reader.consume(take);
        if done {
            break;
        }
    }
    if too_long {
        return Ok(LineStatus::TooLong);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(LineStatus::Line)
}

/// Serve `session` over a pair of streams until the input ends. Returns the number of
/// requests answered; only I/O errors of the streams end a session early.
pub fn serve_stream(
    session: &mut Session,
    input: impl Read,
    output: impl Write,
) -> io::Result<u64> {
    serve_stream_limited(session, input, output, MAX_LINE_LEN)
}

fn serve_stream_limited(
    session: &mut Session,
    input: impl Read,
    output: impl Write,
    max_line: usize,
) -> io::Result<u64> {
    let start = session.requests();
    let mut reader = BufReader::with_capacity(IO_BUFFER, input);
    let mut writer = io::BufWriter::with_capacity(IO_BUFFER, output);
    let mut line = Vec::new();
    loop {
        match read_line_bounded(&mut reader, &mut line, max_line)? {
            LineStatus::Eof => break,
            LineStatus::Line => session.handle_line(&line, &mut writer)?,
            LineStatus::TooLong => {
                session.refuse(&ProtocolError::LineTooLong { max: max_line }, &mut writer)?
            }
        }
        // Drop a huge line's buffer rather than keep 32 MiB for the session's life.
        if line.capacity() > IO_BUFFER {
            line = Vec::new();
        }
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
    writer.flush()?;
    Ok(session.requests() - start)
}

/// The line a server writes once it is ready for its first client: the machine is built (and
/// the memory file exists at its size) and, with a socket, the socket is listening. Words may
/// be added after `READY`, never removed.
pub const READY_LINE: &str = "READY\n";

fn announce(ready: Option<&mut dyn Write>) -> io::Result<()> {
    if let Some(w) = ready {
        w.write_all(READY_LINE.as_bytes())?;
        w.flush()?;
    }
    Ok(())
}

/// Serve one session on standard input and output until standard input ends. A client that
/// closes its end of standard output early ends the session too, without an error. `ready`
/// gets [`READY_LINE`] once the machine is built.
pub fn serve_stdio(
    options: &ServeOptions,
    ready: Option<&mut dyn Write>,
) -> Result<u64, ServeError> {
    let mut session = Session::new(options)?;
    announce(ready)?;
    let stdin = io::stdin();
    let stdout = io::stdout();
    match serve_stream(&mut session, stdin.lock(), stdout.lock()) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(session.requests()),
        Err(e) => Err(e.into()),
    }
}

/// Listen on a Unix socket at `path` and serve clients one at a time, each on a fresh
/// machine, until `max_clients` were served (forever with `None`). A stale socket file left
/// by a dead server is replaced; a live one, or any other file, is an error. `ready` gets
/// [`READY_LINE`] once the socket listens.
///
/// The machine for the next client is built before that client is accepted, so a memory file
/// is zeroed before, never during, the session of the client that maps it.
pub fn serve_unix(
    path: &Path,
    options: &ServeOptions,
    max_clients: Option<u64>,
    ready: Option<&mut dyn Write>,
) -> Result<(), ServeError> {
    // Refuse bad options before touching the file system.
    let mut session = Session::new(options)?;
    let socket_err = |source: io::Error| ServeError::Socket {
        path: path.display().to_string(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(socket_err(io::Error::new(
                ErrorKind::AlreadyExists,
                "exists and is not a socket",
            )));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(socket_err(io::Error::new(
                ErrorKind::AddrInUse,
                "another server is listening there",
            )));
        }
        std::fs::remove_file(path).map_err(socket_err)?;
    }
    let listener = UnixListener::bind(path).map_err(socket_err)?;
    announce(ready)?;
    let mut served = 0u64;
    while max_clients.is_none_or(|m| served < m) {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(socket_err(e)),
        };
        served += 1;
        let Ok(write_half) = stream.try_clone() else {
            continue;
        };
        // A client that vanishes mid-session ends only its own session.
        let _ = serve_stream(&mut session, stream, write_half);
        if max_clients.is_none_or(|m| served < m) {
            session = Session::new(options)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], max_line: usize) -> String {
        let mut s = Session::new(&ServeOptions::default()).unwrap();
        let mut out = Vec::new();
        serve_stream_limited(&mut s, input, &mut out, max_line).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn one_reply_per_request_and_none_for_blank_lines() {
        let out = run(
            b"inb 0x80\n\n  \r\noutl 0xcf8 0x80000000\r\ninl 0xcfc",
            1 << 20,
        );
        assert_eq!(out, "OK 0xff\nOK\nOK 0x12378086\n");
    }

    #[test]
    fn over_long_lines_fail_and_the_session_goes_on() {
        let mut input = vec![b'x'; 1000];
        input.extend_from_slice(b"\ninb 0x80\n");
        input.extend_from_slice(&[b'w'; 5000]); // unterminated, at end of input
        let out = run(&input, 100);
        assert_eq!(
            out,
            "FAIL request line longer than 100 bytes\nOK 0xff\n\
             FAIL request line longer than 100 bytes\n"
        );
    }

    #[test]
    fn garbage_bytes_get_fail_lines() {
        let out = run(b"\x00\x01\x02\n\xff\xfe\n\x1b[2J\ninw 0xcfc\n", 1 << 20);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[..3].iter().all(|l| l.starts_with("FAIL ")), "{out}");
        assert_eq!(lines[3], "OK 0xffff");
    }

    #[test]
    fn a_line_split_across_reads_is_reassembled() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(3);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut s = Session::new(&ServeOptions::default()).unwrap();
        let mut out = Vec::new();
        let n = serve_stream(
            &mut s,
            Trickle(b"writel 0x1000 0xdeadbeef\nreadl 0x1000\n"),
            &mut out,
        )
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(String::from_utf8(out).unwrap(), "OK\nOK 0xdeadbeef\n");
    }

    #[test]
    fn unix_socket_serves_clients_one_after_another_on_fresh_machines() {
        let dir = std::env::temp_dir().join(format!("virq-serve-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let p = path.clone();
        let server =
            std::thread::spawn(move || serve_unix(&p, &ServeOptions::default(), Some(2), None));
        let connect = || loop {
            if let Ok(s) = UnixStream::connect(&path) {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        for _ in 0..2 {
            let mut c = connect();
            c.write_all(b"readl 0x10\nwritel 0x10 7\nreadl 0x10\n")
                .unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let mut reply = String::new();
            c.read_to_string(&mut reply).unwrap();
            // Each client starts from zeroed RAM.
            assert_eq!(reply, "OK 0x00000000\nOK\nOK 0x00000007\n");
        }
        server.join().unwrap().unwrap();
        // The stale socket file is replaced by the next server.
        let p = path.clone();
        let server =
            std::thread::spawn(move || serve_unix(&p, &ServeOptions::default(), Some(1), None));
        let mut c = connect();
        c.write_all(b"virq_info\n").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("OK device=blk bdf=00:01.0"), "{reply}");
        server.join().unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_regular_file_in_the_way_is_not_removed() {
        let path = std::env::temp_dir().join(format!("virq-serve-file-{}", std::process::id()));
        std::fs::write(&path, b"keep me").unwrap();
        let err = serve_unix(&path, &ServeOptions::default(), Some(1), None).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
        std::fs::remove_file(&path).unwrap();
    }
}
