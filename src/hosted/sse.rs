//! Server-sent events as real servers send them: `data:` lines (one or several per event) ended
//! by a blank line, `\r\n` or `\n`, `:` comments (llama-server's pings) and other fields
//! ignored, and a bare JSON object outside any event (an error body sent into the stream) read
//! by brace balance, as google-genai's parser does.
use std::io::BufRead;

/// One event or bare JSON document is refused past this size.
const MAX_EVENT: usize = 64 << 20;

pub(crate) struct Events<R> {
    r: R,
    line: String,
    data: Option<String>,
    raw: String,
    depth: i64,
    in_string: bool,
    escaped: bool,
}

impl<R: BufRead> Events<R> {
    pub fn new(r: R) -> Self {
        Events {
            r,
            line: String::new(),
            data: None,
            raw: String::new(),
            depth: 0,
            in_string: false,
            escaped: false,
        }
    }

    /// The next event's data (or bare JSON document); `None` at the end of the stream.
    pub fn next_event(&mut self) -> std::io::Result<Option<String>> {
        loop {
            self.line.clear();
            let n = self.r.read_line(&mut self.line)?;
            if n == 0 {
                if !self.raw.is_empty() {
                    return Ok(Some(std::mem::take(&mut self.raw)));
                }
                return Ok(self.data.take());
            }
            let line = self.line.trim_end_matches(['\n', '\r']);
            if self.depth > 0 {
                let line = line.to_string();
                if let Some(doc) = self.raw_line(&line)? {
                    return Ok(Some(doc));
                }
                continue;
            }
            if line.is_empty() {
                if let Some(d) = self.data.take() {
                    return Ok(Some(d));
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            if line.starts_with('{') || line.starts_with('[') {
                let line = line.to_string();
                if let Some(doc) = self.raw_line(&line)? {
                    return Ok(Some(doc));
                }
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            if field == "data" {
                let d = self.data.get_or_insert_with(String::new);
                if !d.is_empty() {
                    d.push('\n');
                }
                d.push_str(value);
                if d.len() > MAX_EVENT {
                    return Err(too_big());
                }
            }
            // event:, id:, retry: and unknown fields carry nothing the answer needs.
        }
    }

    /// Adds a line of a bare JSON document; the document once its braces balance.
    fn raw_line(&mut self, line: &str) -> std::io::Result<Option<String>> {
        if !self.raw.is_empty() {
            self.raw.push('\n');
        }
        self.raw.push_str(line);
        if self.raw.len() > MAX_EVENT {
            return Err(too_big());
        }
        for c in line.chars() {
            if self.in_string {
                match (self.escaped, c) {
                    (true, _) => self.escaped = false,
                    (false, '\\') => self.escaped = true,
                    (false, '"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => self.in_string = true,
                '{' | '[' => self.depth += 1,
                '}' | ']' => self.depth -= 1,
                _ => {}
            }
        }
        if self.depth <= 0 {
            self.depth = 0;
            self.in_string = false;
            return Ok(Some(std::mem::take(&mut self.raw)));
        }
        Ok(None)
    }
}

fn too_big() -> std::io::Error {
    std::io::Error::other("a streamed event is larger than 64 MB")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &str) -> Vec<String> {
        let mut e = Events::new(std::io::Cursor::new(s.as_bytes().to_vec()));
        let mut out = vec![];
        while let Some(x) = e.next_event().unwrap() {
            out.push(x);
        }
        out
    }

    #[test]
    fn events_comments_crlf_and_bare_json() {
        let s = ": ping\r\ndata: {\"a\":1}\r\n\r\nevent: x\nid: 3\ndata: {\"b\":\ndata: 2}\n\n\n{\"error\": {\"message\": \"a } in a string\",\n \"code\": 500}}\ndata: [DONE]\n\ndata: tail";
        assert_eq!(
            all(s),
            [
                "{\"a\":1}",
                "{\"b\":\n2}",
                "{\"error\": {\"message\": \"a } in a string\",\n \"code\": 500}}",
                "[DONE]",
                "tail"
            ]
        );
        assert!(all("").is_empty());
        assert!(all(": only a comment\n\n").is_empty());
    }
}
