//! The qtest line protocol, spoken to QEMU (`-qtest stdio`) or to virq's device behind
//! `virq_serve::Session`: one request line, any number of asynchronous `IRQ` lines, one reply.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use thiserror::Error;

/// How long one reply may take before the peer is declared stuck.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a qtest request failed.
#[derive(Debug, Error)]
pub enum WireError {
    /// The peer closed the connection.
    #[error("qtest peer closed the connection")]
    Closed,
    /// No reply in time.
    #[error("qtest peer sent no reply to {request:?} within {timeout:?}")]
    Timeout {
        /// The request.
        request: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The peer answered `FAIL`.
    #[error("qtest request {request:?} failed: {reply}")]
    Fail {
        /// The request.
        request: String,
        /// The reply.
        reply: String,
    },
    /// The reply is not one the protocol allows for the request.
    #[error("qtest reply {reply:?} to {request:?} is not what the protocol allows")]
    Malformed {
        /// The request.
        request: String,
        /// The reply.
        reply: String,
    },
    /// Reading or writing the connection failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// One byte-stream peer: send a line, receive lines.
trait Peer {
    fn send(&mut self, line: &str) -> Result<(), WireError>;
    fn recv(&mut self, request: &str) -> Result<String, WireError>;
}

/// QEMU's qtest chardev on the child's standard input and output. A reader thread feeds a
/// channel so a stuck QEMU is a timeout, not a hang.
struct ProcessPeer {
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Peer for ProcessPeer {
    fn send(&mut self, line: &str) -> Result<(), WireError> {
        self.stdin.write_all(line.as_bytes())?;
        self.stdin.write_all(b"\n")?;
        self.stdin.flush()?;
        Ok(())
    }
    fn recv(&mut self, request: &str) -> Result<String, WireError> {
        match self.lines.recv_timeout(REPLY_TIMEOUT) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => Err(WireError::Timeout {
                request: request.to_string(),
                timeout: REPLY_TIMEOUT,
            }),
            Err(RecvTimeoutError::Disconnected) => Err(WireError::Closed),
        }
    }
}

/// virq's device in-process: `Session::request` answers with the IRQ lines and the reply.
struct SessionPeer {
    session: Box<virq_serve::Session>,
    pending: std::collections::VecDeque<String>,
}

impl Peer for SessionPeer {
    fn send(&mut self, line: &str) -> Result<(), WireError> {
        let out = self.session.request(line);
        self.pending.extend(out.lines().map(str::to_string));
        Ok(())
    }
    fn recv(&mut self, _request: &str) -> Result<String, WireError> {
        self.pending.pop_front().ok_or(WireError::Closed)
    }
}

/// A qtest connection with the interrupt line levels its `IRQ raise/lower` lines reported.
pub struct Wire {
    peer: Box<dyn Peer>,
    levels: BTreeMap<u32, bool>,
    /// Every `IRQ` line seen, in order, as (irq, level); the caller drains it.
    pub irq_log: Vec<(u32, bool)>,
    /// Requests sent (for the report).
    pub requests: u64,
}

impl Wire {
    /// Speak to a child spawned with `-qtest stdio` (its stdout must be piped).
    pub fn process(child: &mut Child) -> Result<Wire, WireError> {
        let stdin = child.stdin.take().ok_or(WireError::Closed)?;
        let stdout = child.stdout.take().ok_or(WireError::Closed)?;
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self::new(Box::new(ProcessPeer { stdin, lines: rx })))
    }

    /// Speak to virq's device through an in-process `virq serve` session.
    pub fn session(session: virq_serve::Session) -> Wire {
        Self::new(Box::new(SessionPeer {
            session: Box::new(session),
            pending: Default::default(),
        }))
    }

    fn new(peer: Box<dyn Peer>) -> Wire {
        Wire {
            peer,
            levels: BTreeMap::new(),
            irq_log: Vec::new(),
            requests: 0,
        }
    }

    /// Send `line`; return the reply's words after `OK` (IRQ lines are recorded on the way).
    pub fn request(&mut self, line: &str) -> Result<String, WireError> {
        self.requests += 1;
        self.peer.send(line)?;
        loop {
            let reply = self.peer.recv(line)?;
            if let Some(rest) = reply.strip_prefix("IRQ ") {
                self.irq_line(rest);
                continue;
            }
            if reply == "OK" {
                return Ok(String::new());
            }
            if let Some(rest) = reply.strip_prefix("OK ") {
                return Ok(rest.to_string());
            }
            if reply.starts_with("FAIL") || reply.starts_with("ERR") {
                return Err(WireError::Fail {
                    request: line.to_string(),
                    reply,
                });
            }
            return Err(WireError::Malformed {
                request: line.to_string(),
                reply,
            });
        }
    }

    fn irq_line(&mut self, rest: &str) {
        let mut words = rest.split_whitespace();
        let level = match words.next() {
            Some("raise") => true,
            Some("lower") => false,
            // `IRQ msi ADDR DATA` (virq serve): the message also landed in RAM, where the
            // platform looks for it, exactly as with QEMU.
            _ => return,
        };
        if let Some(n) = words.next().and_then(|n| n.parse::<u32>().ok()) {
            self.levels.insert(n, level);
            self.irq_log.push((n, level));
        }
    }

    /// The level of input `irq` of the intercepted interrupt controller, as last reported.
    pub fn level(&self, irq: u32) -> bool {
        self.levels.get(&irq).copied().unwrap_or(false)
    }

    /// A sized read reply as a number.
    pub fn value(&mut self, line: &str) -> Result<u64, WireError> {
        let reply = self.request(line)?;
        parse_hex(&reply).ok_or(WireError::Malformed {
            request: line.to_string(),
            reply,
        })
    }
}

/// `0x...` (any width) as a number.
pub fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    u64::from_str_radix(digits, 16).ok()
}
