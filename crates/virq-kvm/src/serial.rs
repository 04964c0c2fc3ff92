//! Guest console output as text and as `LogLine` events: the 16550's writer and the
//! virtio-console line callback both end up here.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use virq_events::{EventKind, EventLog, EventSink};

/// Longest line kept as one event; longer output is split.
const MAX_LINE: usize = 4096;

/// Collects a console's bytes, splitting them into lines recorded as [`EventKind::LogLine`].
#[derive(Clone)]
pub struct LineLog {
    inner: Arc<Mutex<LineState>>,
    events: Arc<EventLog>,
}

#[derive(Default)]
struct LineState {
    text: String,
    partial: Vec<u8>,
}

impl LineLog {
    pub fn new(events: Arc<EventLog>) -> Self {
        LineLog {
            inner: Arc::new(Mutex::new(LineState::default())),
            events,
        }
    }

    /// Feed raw console bytes.
    pub fn push_bytes(&self, data: &[u8]) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for &b in data {
            match b {
                b'\n' => {
                    let line = std::mem::take(&mut s.partial);
                    Self::finish(&mut s, &self.events, &line);
                }
                b'\r' => {}
                _ => {
                    s.partial.push(b);
                    if s.partial.len() >= MAX_LINE {
                        let line = std::mem::take(&mut s.partial);
                        Self::finish(&mut s, &self.events, &line);
                    }
                }
            }
        }
    }

    /// Feed one complete line (without its newline).
    pub fn push_line(&self, line: &[u8]) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let line: Vec<u8> = line.iter().copied().filter(|b| *b != b'\r').collect();
        Self::finish(&mut s, &self.events, &line);
    }

    fn finish(s: &mut LineState, events: &EventLog, line: &[u8]) {
        let text = String::from_utf8_lossy(line).into_owned();
        s.text.push_str(&text);
        s.text.push('\n');
        events.emit(EventKind::LogLine { text });
    }

    /// Flush a trailing partial line and return the whole text.
    pub fn finish_text(&self) -> String {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !s.partial.is_empty() {
            let line = std::mem::take(&mut s.partial);
            Self::finish(&mut s, &self.events, &line);
        }
        s.text.clone()
    }
}

/// The `Write` end handed to the 16550.
pub struct SerialOut(pub LineLog);

impl Write for SerialOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.push_bytes(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
