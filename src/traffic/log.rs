//! The load balancer's access log: one JSON object per line, as the `runner` log format of
//! templates/nginx.conf.hbs writes it, followed as it grows (across truncation and rotation).

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::Deserialize;

/// A longer line is not a request line of ours (nginx's longest is about 300 bytes plus the
/// path); it is counted as unparseable without holding more of it than this.
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// A log time this far past the clock is not a time nginx wrote.
const FUTURE_SLACK_S: f64 = 60.0;

/// One request as the load balancer logged it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry<'a> {
    /// When nginx wrote the line, in seconds since the epoch (`$msec`).
    pub(crate) time: f64,
    pub(crate) status: u16,
    /// `$request_time`, in milliseconds.
    pub(crate) ms: f64,
    /// `$uri`, without the query string (which may carry credentials).
    pub(crate) path: Cow<'a, str>,
    /// Sent by runner's own probes and gates ([`crate::AGENT`]): not a user's request.
    pub(crate) ours: bool,
}

#[derive(Deserialize)]
struct Fields<'a> {
    time: f64,
    status: u16,
    request_time: f64,
    #[serde(borrow, default)]
    path: Cow<'a, str>,
    #[serde(borrow, default)]
    agent: Cow<'a, str>,
}

/// Reads one line; `None` if it is not one the format writes. nginx's `escape=json` passes
/// bytes above 0x7f through as they came (a path may hold any), so a line that is not UTF-8
/// is read again with those bytes replaced.
pub(crate) fn parse(line: &[u8], now: f64) -> Option<Entry<'static>> {
    let fields = match serde_json::from_slice::<Fields<'_>>(line) {
        Ok(f) => into_entry(f),
        Err(_) => {
            let text = String::from_utf8_lossy(line);
            into_entry(serde_json::from_str::<Fields<'_>>(&text).ok()?)
        }
    }?;
    (fields.time <= now + FUTURE_SLACK_S).then_some(fields)
}

fn into_entry(f: Fields<'_>) -> Option<Entry<'static>> {
    let sane = f.time.is_finite()
        && f.time > 0.0
        && f.request_time.is_finite()
        && f.request_time >= 0.0
        && (100..600).contains(&f.status);
    sane.then(|| Entry {
        time: f.time,
        status: f.status,
        ms: f.request_time * 1000.0,
        ours: f.agent.starts_with(crate::AGENT),
        path: Cow::Owned(f.path.into_owned()),
    })
}

/// What the tail hands on.
#[derive(Debug, PartialEq)]
pub(crate) enum Line<'a> {
    Complete(&'a [u8]),
    /// A line longer than [`MAX_LINE`], dropped.
    Overlong,
}

/// What to do with the bytes before the next newline.
#[derive(Debug, PartialEq)]
enum Cut {
    Keep,
    /// They belong to an overlong line.
    Overlong,
    /// They end a line that began before where reading started.
    Resume,
}

/// A file followed from an offset: complete lines are handed on, a torn last line waits for
/// its newline.
pub(crate) struct Tail {
    path: PathBuf,
    file: Option<(File, u64)>,
    offset: u64,
    lines: Splitter,
}

/// Cuts bytes into lines, keeping the start of the last one until its newline comes.
struct Splitter {
    partial: Vec<u8>,
    cut: Cut,
}

impl Tail {
    /// Follows `path` from where it ends now; a file that does not exist yet is read from its
    /// start when it appears (all of it is new).
    pub(crate) fn at_end(path: PathBuf) -> Self {
        Self::back(path, 0)
    }

    /// Follows `path` from `bytes` before its end (the line cut there is dropped).
    pub(crate) fn back(path: PathBuf, bytes: u64) -> Self {
        let mut tail = Tail {
            path,
            file: None,
            offset: 0,
            lines: Splitter {
                partial: Vec::new(),
                cut: Cut::Keep,
            },
        };
        if let Ok(file) = File::open(&tail.path)
            && let Ok(meta) = file.metadata()
        {
            tail.offset = meta.len().saturating_sub(bytes);
            if bytes > 0 && tail.offset > 0 {
                tail.lines.cut = Cut::Resume;
            }
            tail.file = Some((file, meta.ino()));
        }
        tail
    }

    /// Hands on every line completed since the last call. A file replaced (rotation: another
    /// inode) is read to its end, then the new one from its start; a file that shrank
    /// (truncation) is read again from its start.
    pub(crate) fn read(&mut self, sink: &mut dyn FnMut(Line<'_>)) -> io::Result<()> {
        let current = match std::fs::metadata(&self.path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let replaced = match (&self.file, &current) {
            (Some((_, ino)), Some(meta)) => meta.ino() != *ino,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if let Some((file, _)) = &mut self.file {
            let meta = file.metadata()?;
            if meta.len() < self.offset {
                self.restart();
            }
            self.drain(sink)?;
        }
        if replaced {
            let file = File::open(&self.path)?;
            let ino = file.metadata()?.ino();
            self.file = Some((file, ino));
            self.restart();
            self.drain(sink)?;
        }
        Ok(())
    }

    fn restart(&mut self) {
        self.offset = 0;
        self.lines.partial.clear();
        self.lines.cut = Cut::Keep;
    }

    fn drain(&mut self, sink: &mut dyn FnMut(Line<'_>)) -> io::Result<()> {
        let Some((file, _)) = &mut self.file else {
            return Ok(());
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                return Ok(());
            }
            self.offset += n as u64;
            self.lines.feed(&buffer[..n], sink);
        }
    }
}

impl Splitter {
    fn feed(&mut self, mut bytes: &[u8], sink: &mut dyn FnMut(Line<'_>)) {
        while let Some(end) = memchr::memchr(b'\n', bytes) {
            let head = &bytes[..end];
            match self.cut {
                Cut::Keep if self.partial.len() + head.len() > MAX_LINE => sink(Line::Overlong),
                Cut::Keep if self.partial.is_empty() => sink(Line::Complete(head)),
                Cut::Keep => {
                    self.partial.extend_from_slice(head);
                    sink(Line::Complete(&self.partial));
                }
                Cut::Overlong => sink(Line::Overlong),
                Cut::Resume => {}
            }
            self.partial.clear();
            self.cut = Cut::Keep;
            bytes = &bytes[end + 1..];
        }
        if self.cut == Cut::Keep {
            if self.partial.len() + bytes.len() > MAX_LINE {
                self.partial.clear();
                self.cut = Cut::Overlong;
            } else {
                self.partial.extend_from_slice(bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const NOW: f64 = 1_800_000_000.0;

    fn line(time: f64, status: u16, seconds: &str) -> String {
        format!(
            r#"{{"time":{time},"status":{status},"request_time":{seconds},"upstream_time":"0.001","upstream":"10.0.0.2:3000","method":"GET","path":"/api/v1/key"}}"#
        )
    }

    #[test]
    fn reads_the_lines_nginx_writes_and_nothing_else() {
        let ok = parse(line(NOW, 502, "0.250").as_bytes(), NOW).unwrap();
        assert_eq!(
            (ok.status, ok.ms, ok.path.as_ref()),
            (502, 250.0, "/api/v1/key")
        );
        for bad in [
            String::new(),
            "garbage".into(),
            "{}".into(),
            r#"{"time":"soon","status":200,"request_time":0.1}"#.into(),
            line(NOW, 200, "-0.001"),
            line(NOW, 200, "1e400"),
            line(NOW, 99, "0.1"),
            line(NOW, 600, "0.1"),
            line(NOW, 200, "0.1").replace("200", "70000"),
            line(-1.0, 200, "0.1"),
            line(NOW + 3600.0, 200, "0.1"),
            line(NOW, 200, "0.1")[..40].to_string(),
        ] {
            assert_eq!(parse(bad.as_bytes(), NOW), None, "{bad}");
        }
        let huge = parse(line(NOW, 200, "86400").as_bytes(), NOW).unwrap();
        assert_eq!(huge.ms, 86_400_000.0, "a long request is a long request");
    }

    #[test]
    fn runner_s_own_requests_are_marked_as_ours() {
        let now = 1_800_000_001.0;
        let ours = format!(
            r#"{{"time":1800000000.5,"status":200,"request_time":0.003,"path":"/api/k","agent":"{}"}}"#,
            crate::AGENT
        );
        let user = r#"{"time":1800000000.5,"status":200,"request_time":0.003,"path":"/api/k","agent":"curl/8.0"}"#;
        let none = r#"{"time":1800000000.5,"status":200,"request_time":0.003,"path":"/api/k"}"#;
        assert!(parse(ours.as_bytes(), now).unwrap().ours);
        assert!(!parse(user.as_bytes(), now).unwrap().ours);
        assert!(!parse(none.as_bytes(), now).unwrap().ours);
    }

    #[test]
    fn a_path_that_is_not_utf8_keeps_its_line() {
        let mut bytes =
            br#"{"time":1800000000.5,"status":500,"request_time":0.003,"path":"/k/"#.to_vec();
        bytes.extend_from_slice(b"\xff\xfe\"}");
        let entry = parse(&bytes, NOW).unwrap();
        assert_eq!(
            (entry.status, entry.path.as_ref()),
            (500, "/k/\u{fffd}\u{fffd}")
        );
    }

    fn collect(tail: &mut Tail) -> Vec<String> {
        let mut out = Vec::new();
        tail.read(&mut |l| {
            out.push(match l {
                Line::Complete(b) => String::from_utf8_lossy(b).into_owned(),
                Line::Overlong => "<overlong>".into(),
            })
        })
        .unwrap();
        out
    }

    #[test]
    fn follows_appends_waits_for_a_torn_line_and_bounds_a_huge_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "before\n").unwrap();
        let mut tail = Tail::at_end(path.clone());
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(file, "one\ntw").unwrap();
        assert_eq!(
            collect(&mut tail),
            ["one"],
            "only what came after, not the torn line"
        );
        writeln!(file, "o").unwrap();
        assert_eq!(collect(&mut tail), ["two"]);
        file.write_all(&vec![b'x'; MAX_LINE * 3]).unwrap();
        assert_eq!(collect(&mut tail), Vec::<String>::new());
        assert!(
            tail.lines.partial.len() <= MAX_LINE,
            "a huge line is not held"
        );
        write!(file, "xx\nthree\n").unwrap();
        assert_eq!(collect(&mut tail), ["<overlong>", "three"]);
    }

    #[test]
    fn rereads_a_truncated_or_rotated_file_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut tail = Tail::at_end(path.clone());
        assert_eq!(collect(&mut tail), Vec::<String>::new(), "no file yet");
        std::fs::write(&path, "first\nsecond\n").unwrap();
        assert_eq!(
            collect(&mut tail),
            ["first", "second"],
            "a new file is all new"
        );
        std::fs::write(&path, "new\n").unwrap();
        assert_eq!(collect(&mut tail), ["new"], "truncated and written again");
        let mut old = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        writeln!(old, "late").unwrap();
        std::fs::write(&path, "rotated\n").unwrap();
        assert_eq!(
            collect(&mut tail),
            ["late", "rotated"],
            "the old file to its end, then the new one"
        );
    }

    #[test]
    fn reading_from_the_back_drops_the_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "aaaa\nbbbb\ncccc\n").unwrap();
        let mut tail = Tail::back(path.clone(), 7);
        assert_eq!(collect(&mut tail), ["cccc"]);
        let mut all = Tail::back(path, 1000);
        assert_eq!(collect(&mut all), ["aaaa", "bbbb", "cccc"]);
    }
}
