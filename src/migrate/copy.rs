//! COPY's text format, written straight from what Redis gave: cells are escaped as they go in,
//! and JSON goes in through `Write` as it is serialized.

/// Lines of COPY text being written.
#[derive(Default)]
pub(crate) struct CopyText(pub(crate) Vec<u8>);

impl CopyText {
    /// A text cell: the text between special characters goes in whole.
    pub(crate) fn text(&mut self, text: &str) {
        let bytes = text.as_bytes();
        if memchr::memchr3(b'\\', b'\t', b'\n', bytes).is_none()
            && memchr::memchr(b'\r', bytes).is_none()
        {
            self.0.extend_from_slice(bytes);
            return;
        }
        for b in bytes {
            match b {
                b'\\' => self.0.extend_from_slice(b"\\\\"),
                b'\t' => self.0.extend_from_slice(b"\\t"),
                b'\n' => self.0.extend_from_slice(b"\\n"),
                b'\r' => self.0.extend_from_slice(b"\\r"),
                b => self.0.push(*b),
            }
        }
    }

    /// A NULL cell.
    pub(crate) fn null(&mut self) {
        self.0.extend_from_slice(b"\\N");
    }

    /// A JSON cell: JSON escapes tabs and line ends itself, so only its backslashes need
    /// doubling.
    pub(crate) fn json(&mut self, value: &impl serde::Serialize) {
        serde_json::to_writer(&mut *self, value).expect("JSON serializes into memory");
    }

    /// The end of a cell.
    pub(crate) fn tab(&mut self) {
        self.0.push(b'\t');
    }

    /// The end of a line.
    pub(crate) fn end(&mut self) {
        self.0.push(b'\n');
    }
}

impl std::io::Write for CopyText {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut start = 0;
        for at in memchr::memchr_iter(b'\\', buf) {
            self.0.extend_from_slice(&buf[start..=at]);
            self.0.push(b'\\');
            start = at + 1;
        }
        self.0.extend_from_slice(&buf[start..]);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_json_are_escaped_once() {
        let mut text = CopyText::default();
        text.text("tab\there\nline\r\\");
        text.tab();
        text.null();
        text.tab();
        text.text("k\\1");
        text.tab();
        text.json(&serde_json::json!({"v": "back\\slash\ttab"}));
        text.end();
        assert_eq!(
            std::str::from_utf8(&text.0).unwrap(),
            "tab\\there\\nline\\r\\\\\t\\N\tk\\\\1\t{\"v\":\"back\\\\\\\\slash\\\\ttab\"}\n"
        );
    }
}
