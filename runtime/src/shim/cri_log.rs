//! Writing container output in the CRI log format, with size-based rotation:
//!
//! ```text
//! 2024-05-01T10:00:00.123456789Z stdout F a whole line
//! 2024-05-01T10:00:00.123456790Z stderr P the first 16 KiB of a long line...
//! 2024-05-01T10:00:00.123456791Z stderr F ...and its end
//! ```
//!
//! Rotation keeps `max_files` files: the live `path`, then `path.1` (newest) to
//! `path.<max_files-1>` (oldest).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::timefmt::write_rfc3339_nanos;

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The stream's name in the log format.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Splits a byte stream into lines of at most `max_line` bytes. A line longer than that comes
/// out as partial pieces followed by its full end.
#[derive(Debug)]
pub struct LineSplitter {
    pending: Vec<u8>,
    max_line: usize,
}

impl LineSplitter {
    /// A splitter for lines of at most `max_line` bytes (at least 1).
    pub fn new(max_line: usize) -> Self {
        Self {
            pending: Vec::new(),
            max_line: max_line.max(1),
        }
    }

    /// Feeds `data`; calls `emit(line, partial)` for every complete line (without its newline)
    /// and every full-length partial piece.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        while !data.is_empty() {
            match data.iter().position(|b| *b == b'\n') {
                Some(nl) => {
                    self.take(&data[..nl], &mut emit);
                    emit(&self.pending, false);
                    self.pending.clear();
                    data = &data[nl + 1..];
                }
                None => {
                    self.take(data, &mut emit);
                    data = &[];
                }
            }
        }
    }

    /// Appends `piece` (no newline in it) to the pending line, emitting full partial pieces.
    fn take(&mut self, mut piece: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
        while self.pending.len() + piece.len() > self.max_line {
            let room = self.max_line - self.pending.len();
            self.pending.extend_from_slice(&piece[..room]);
            piece = &piece[room..];
            // A piece that exactly fills a line and is followed by the newline is a full line,
            // which the caller emits; everything else overflowing is partial.
            emit(&self.pending, true);
            self.pending.clear();
        }
        self.pending.extend_from_slice(piece);
    }

    /// Emits what is left at end of stream as a full line (the stream ended without a final
    /// newline).
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        if !self.pending.is_empty() {
            emit(&self.pending, false);
            self.pending.clear();
        }
    }
}

/// Appends CRI records to a log file, rotating it by size.
#[derive(Debug)]
pub struct CriLogWriter {
    path: PathBuf,
    max_size: u64,
    max_files: u32,
    file: File,
    size: u64,
    record: Vec<u8>,
    stamp: String,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

impl CriLogWriter {
    /// Opens (appending to) `path`, creating its directory.
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            max_size: max_size.max(1),
            max_files: max_files.max(1),
            file,
            size,
            record: Vec::with_capacity(512),
            stamp: String::with_capacity(32),
        })
    }

    /// Writes one record with one `write(2)`.
    pub fn write_record(
        &mut self,
        stream: Stream,
        partial: bool,
        content: &[u8],
        now: SystemTime,
    ) -> io::Result<()> {
        self.stamp.clear();
        write_rfc3339_nanos(&mut self.stamp, now);
        self.record.clear();
        self.record.extend_from_slice(self.stamp.as_bytes());
        self.record.push(b' ');
        self.record.extend_from_slice(stream.as_str().as_bytes());
        self.record
            .extend_from_slice(if partial { b" P " } else { b" F " });
        self.record.extend_from_slice(content);
        self.record.push(b'\n');
        if self.size > 0 && self.size + self.record.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&self.record)?;
        self.size += self.record.len() as u64;
        Ok(())
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files <= 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let oldest = self.max_files - 1;
        crate::fsutil::remove_file_if_exists(&self.numbered(oldest))?;
        for n in (1..oldest).rev() {
            match std::fs::rename(self.numbered(n), self.numbered(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, self.numbered(1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let mut s = LineSplitter::new(max);
        for c in chunks {
            s.push(c, |l, p| {
                out.push((String::from_utf8_lossy(l).into_owned(), p))
            });
        }
        s.finish(|l, p| out.push((String::from_utf8_lossy(l).into_owned(), p)));
        out
    }

    fn lines(items: &[(&str, bool)]) -> Vec<(String, bool)> {
        items.iter().map(|(s, p)| (s.to_string(), *p)).collect()
    }

    /// max_line, input chunks, expected (line, partial) pieces.
    type SplitCase<'a> = (usize, &'a [&'a [u8]], &'a [(&'a str, bool)]);

    #[test]
    fn output_is_split_into_full_and_partial_lines() {
        let cases: &[SplitCase] = &[
            (10, &[b"a\nb\n"], &[("a", false), ("b", false)]),
            (
                10,
                &[b"hel", b"lo\nwor", b"ld\n"],
                &[("hello", false), ("world", false)],
            ),
            (10, &[b"\n\n"], &[("", false), ("", false)]),
            (
                4,
                &[b"abcdefghij\n"],
                &[("abcd", true), ("efgh", true), ("ij", false)],
            ),
            // Exactly max_line bytes then newline: one full line.
            (4, &[b"abcd\n"], &[("abcd", false)]),
            (4, &[b"abcdefgh\n"], &[("abcd", true), ("efgh", false)]),
            // No newline at the end: the rest is a full line.
            (10, &[b"tail"], &[("tail", false)]),
            (3, &[b"ab", b"cd", b"e"], &[("abc", true), ("de", false)]),
        ];
        for (max, chunks, want) in cases {
            assert_eq!(
                split(*max, chunks),
                lines(want),
                "max {max} chunks {chunks:?}"
            );
        }
    }

    #[test]
    fn records_are_cri_formatted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/0.log");
        let mut w = CriLogWriter::open(&path, 1 << 20, 3).unwrap();
        let t = UNIX_EPOCH + Duration::new(1_475_712_229, 669_794_202);
        w.write_record(Stream::Stdout, false, b"hello world", t)
            .unwrap();
        w.write_record(Stream::Stderr, true, b"part", t).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "2016-10-06T00:03:49.669794202Z stdout F hello world\n\
             2016-10-06T00:03:49.669794202Z stderr P part\n"
        );
    }

    #[test]
    fn rotation_keeps_max_files_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        // Each record is 30 (stamp) + 7 (" stdout") + 3 (" F ") + 2 + 1 = 43 bytes: one per file.
        let mut w = CriLogWriter::open(&path, 50, 3).unwrap();
        for i in 0..5 {
            w.write_record(
                Stream::Stdout,
                false,
                format!("r{i}").as_bytes(),
                SystemTime::now(),
            )
            .unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert!(read(&path).ends_with("r4\n"));
        assert!(read(&dir.path().join("0.log.1")).ends_with("r3\n"));
        assert!(read(&dir.path().join("0.log.2")).ends_with("r2\n"));
        assert!(!dir.path().join("0.log.3").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn reopening_appends_and_counts_existing_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "x".repeat(45)).unwrap();
        let mut w = CriLogWriter::open(&path, 50, 2).unwrap();
        w.write_record(Stream::Stdout, false, b"r", SystemTime::now())
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("0.log.1"))
                .unwrap()
                .len(),
            45
        );
    }
}
