//! Reading CRI log files back: whole, the last N lines, or following them as they grow and
//! rotate. `P` (partial) records are joined with the record that completes them, per stream.
//! Which file to read (`--previous`) is the caller's choice.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::shim::cri_log::Stream;

/// One logical line of container output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the line (its last piece) was written, RFC 3339.
    pub timestamp: String,
    pub stream: Stream,
    /// The line without its newline; partial records already joined.
    pub content: Vec<u8>,
}

impl LogLine {
    /// The content as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.content).into_owned()
    }
}

/// One record of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub timestamp: &'a str,
    pub stream: Stream,
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parses one record (a line without its newline). `None` for malformed lines.
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let timestamp = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Record {
        timestamp,
        stream,
        partial,
        content: parts.next().unwrap_or(&[]),
    })
}

/// Joins records into logical lines; pieces of one stream are joined even when the other
/// stream's records come between them.
#[derive(Debug, Default)]
struct Joiner {
    pending: [Vec<u8>; 2],
}

impl Joiner {
    fn push(&mut self, record: Record<'_>) -> Option<LogLine> {
        let slot = &mut self.pending[record.stream as usize];
        slot.extend_from_slice(record.content);
        if record.partial {
            return None;
        }
        Some(LogLine {
            timestamp: record.timestamp.to_owned(),
            stream: record.stream,
            content: std::mem::take(slot),
        })
    }
}

/// Reads a whole log file into logical lines; `tail` keeps only the last N.
pub fn read_log(path: &Path, tail: Option<usize>) -> io::Result<Vec<LogLine>> {
    let data = std::fs::read(path)?;
    let mut joiner = Joiner::default();
    let mut lines = VecDeque::new();
    for raw in data.split(|b| *b == b'\n') {
        if let Some(line) = parse_record(raw).and_then(|r| joiner.push(r)) {
            lines.push_back(line);
            if tail.is_some_and(|n| lines.len() > n) {
                lines.pop_front();
            }
        }
    }
    Ok(lines.into())
}

/// Follows a log file: first its last `tail` lines (all with `None`), then every new line,
/// across rotations (`path` renamed away and recreated) and truncation.
#[derive(Debug)]
pub struct LogFollower {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    offset: u64,
    buf: Vec<u8>,
    joiner: Joiner,
    ready: VecDeque<LogLine>,
    poll: Duration,
}

impl LogFollower {
    /// Starts following `path`. The file need not exist yet.
    pub fn open(path: impl Into<PathBuf>, tail: Option<usize>) -> io::Result<Self> {
        let mut f = Self {
            path: path.into(),
            file: None,
            inode: 0,
            offset: 0,
            buf: Vec::new(),
            joiner: Joiner::default(),
            ready: VecDeque::new(),
            poll: Duration::from_millis(100),
        };
        if f.path.exists() {
            let lines = read_log(&f.path, tail)?;
            f.ready.extend(lines);
            // Continue after what was just read.
            if let Ok(file) = File::open(&f.path) {
                let meta = file.metadata()?;
                f.inode = meta.ino();
                f.offset = std::fs::read(&f.path).map(|d| {
                    d.iter()
                        .rposition(|b| *b == b'\n')
                        .map_or(0, |p| p as u64 + 1)
                })?;
                f.file = Some(file);
            }
        }
        Ok(f)
    }

    /// Waits for the next line.
    pub async fn next_line(&mut self) -> io::Result<LogLine> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Ok(line);
            }
            if !self.read_more()? {
                tokio::time::sleep(self.poll).await;
            }
        }
    }

    /// Every line available now, without waiting.
    pub fn available(&mut self) -> io::Result<Vec<LogLine>> {
        while self.read_more()? {}
        Ok(self.ready.drain(..).collect())
    }

    /// Reads new data; `Ok(false)` when there was none.
    fn read_more(&mut self) -> io::Result<bool> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(file) => {
                    self.inode = file.metadata()?.ino();
                    self.offset = 0;
                    self.file = Some(file);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        let file = self.file.as_mut().expect("opened above");
        let len = file.metadata()?.len();
        if len < self.offset {
            // Truncated in place: start over.
            self.offset = 0;
            self.buf.clear();
        }
        if len > self.offset {
            file.seek(SeekFrom::Start(self.offset))?;
            let mut chunk = Vec::new();
            file.take(len - self.offset).read_to_end(&mut chunk)?;
            self.offset += chunk.len() as u64;
            self.buf.extend_from_slice(&chunk);
            while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let raw: Vec<u8> = self.buf.drain(..=nl).collect();
                if let Some(line) =
                    parse_record(&raw[..raw.len() - 1]).and_then(|r| self.joiner.push(r))
                {
                    self.ready.push_back(line);
                }
            }
            return Ok(true);
        }
        // Fully read: has the file been rotated away?
        match std::fs::metadata(&self.path) {
            Ok(meta) if meta.ino() != self.inode => {
                self.file = None;
                self.buf.clear();
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::cri_log::CriLogWriter;
    use std::time::SystemTime;

    #[test]
    fn records_parse_and_malformed_lines_are_skipped() {
        let r = parse_record(b"2024-01-01T00:00:00.000000001Z stdout F hello world").unwrap();
        assert_eq!(r.stream, Stream::Stdout);
        assert!(!r.partial);
        assert_eq!(r.content, b"hello world");
        let empty = parse_record(b"2024-01-01T00:00:00Z stderr F ").unwrap();
        assert_eq!(empty.content, b"");
        for bad in [&b""[..], b"ts", b"ts stdin F x", b"ts stdout X x"] {
            assert!(
                parse_record(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn write_log(path: &Path, records: &[(Stream, bool, &str)]) {
        let mut w = CriLogWriter::open(path, 1 << 20, 2).unwrap();
        for (s, p, c) in records {
            w.write_record(*s, *p, c.as_bytes(), SystemTime::now())
                .unwrap();
        }
    }

    #[test]
    fn partial_records_are_joined_per_stream_and_tail_counts_logical_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        write_log(
            &path,
            &[
                (Stream::Stdout, false, "one"),
                (Stream::Stdout, true, "lo"),
                (Stream::Stderr, false, "err"),
                (Stream::Stdout, true, "ng "),
                (Stream::Stdout, false, "line"),
                (Stream::Stdout, false, "three"),
            ],
        );
        let all: Vec<(Stream, String)> = read_log(&path, None)
            .unwrap()
            .iter()
            .map(|l| (l.stream, l.text()))
            .collect();
        assert_eq!(
            all,
            vec![
                (Stream::Stdout, "one".into()),
                (Stream::Stderr, "err".into()),
                (Stream::Stdout, "long line".into()),
                (Stream::Stdout, "three".into()),
            ]
        );
        let tail: Vec<String> = read_log(&path, Some(2))
            .unwrap()
            .iter()
            .map(LogLine::text)
            .collect();
        assert_eq!(tail, vec!["long line", "three"]);
        assert!(read_log(&path, Some(0)).unwrap().is_empty());
    }

    #[tokio::test]
    async fn following_sees_new_lines_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        write_log(
            &path,
            &[
                (Stream::Stdout, false, "old1"),
                (Stream::Stdout, false, "old2"),
            ],
        );
        let mut f = LogFollower::open(&path, Some(1)).unwrap();
        f.poll = Duration::from_millis(10);
        assert_eq!(f.next_line().await.unwrap().text(), "old2");

        // Each record is 43+ bytes: a 60-byte limit rotates on every second record.
        let mut w = CriLogWriter::open(&path, 60, 3).unwrap();
        w.write_record(Stream::Stdout, false, b"new1", SystemTime::now())
            .unwrap();
        assert_eq!(f.next_line().await.unwrap().text(), "new1");
        w.write_record(Stream::Stderr, false, b"new2", SystemTime::now())
            .unwrap();
        assert_eq!(f.next_line().await.unwrap().text(), "new2");
        w.write_record(Stream::Stdout, false, b"new3", SystemTime::now())
            .unwrap();
        assert!(dir.path().join("0.log.2").exists(), "rotated twice");
        assert_eq!(f.next_line().await.unwrap().text(), "new3");
        assert!(f.available().unwrap().is_empty());
    }

    #[tokio::test]
    async fn following_a_file_that_does_not_exist_yet_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later.log");
        let mut f = LogFollower::open(&path, None).unwrap();
        f.poll = Duration::from_millis(10);
        assert!(f.available().unwrap().is_empty());
        write_log(&path, &[(Stream::Stdout, false, "hi")]);
        assert_eq!(f.next_line().await.unwrap().text(), "hi");
    }
}
