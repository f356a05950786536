//! ECS Exec's pure parts: the frames an exec session's stream carries, and the command string
//! ExecuteCommand takes, split into words as the ECS exec agent splits it.
//!
//! A session's stream (after the HTTP upgrade on the session URL, see ARCHITECTURE.md) is a
//! sequence of frames: one byte of [`Frame`] kind, the payload's length as 4 bytes big-endian,
//! then the payload (at most [`MAX_PAYLOAD`] bytes). The client sends stdin, its end and terminal
//! resizes; the agent sends stdout, stderr, then the exit code or an error, and closes. The
//! server relays the frames between them as they are, reading only the last one (what the
//! session record keeps).

/// The largest payload a frame may carry; a longer one is a protocol error.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// One frame of an exec session's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes for the command's stdin (client → agent).
    Stdin(Vec<u8>),
    /// The client's stdin ended: the command's stdin is closed.
    StdinEof,
    /// The client's terminal size, columns then rows (interactive sessions).
    Resize { cols: u16, rows: u16 },
    /// Bytes the command wrote to stdout (with a TTY: everything it wrote).
    Stdout(Vec<u8>),
    /// Bytes the command wrote to stderr.
    Stderr(Vec<u8>),
    /// The command ended with this exit code; the last frame of a session.
    Exit(i64),
    /// The session could not run (or broke); the last frame of a session.
    Error(String),
}

impl Frame {
    fn kind(&self) -> u8 {
        match self {
            Frame::Stdin(_) => 0,
            Frame::StdinEof => 1,
            Frame::Resize { .. } => 2,
            Frame::Stdout(_) => 3,
            Frame::Stderr(_) => 4,
            Frame::Exit(_) => 5,
            Frame::Error(_) => 6,
        }
    }

    /// The frame as it goes on the stream.
    pub fn encode(&self) -> Vec<u8> {
        let payload: Vec<u8> = match self {
            Frame::Stdin(b) | Frame::Stdout(b) | Frame::Stderr(b) => b.clone(),
            Frame::StdinEof => Vec::new(),
            Frame::Resize { cols, rows } => [cols.to_be_bytes(), rows.to_be_bytes()].concat(),
            Frame::Exit(code) => code.to_be_bytes().to_vec(),
            Frame::Error(m) => m.as_bytes().to_vec(),
        };
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(self.kind());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown exec frame kind {0}")]
    Kind(u8),
    #[error("exec frame of {0} bytes is longer than the limit of {MAX_PAYLOAD}")]
    TooLong(usize),
    #[error("malformed exec frame of kind {0}")]
    Malformed(u8),
}

/// Splits a byte stream into frames: [`Decoder::push`] what was read, then take frames with
/// [`Decoder::next_frame`] until it has none.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame with its encoded length, `None` while more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<(Frame, usize)>, FrameError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let kind = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLong(len));
        }
        if kind > 6 {
            return Err(FrameError::Kind(kind));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let payload: Vec<u8> = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        let frame = match kind {
            0 => Frame::Stdin(payload),
            1 => Frame::StdinEof,
            2 => match payload[..] {
                [a, b, c, d] => {
                    Frame::Resize { cols: u16::from_be_bytes([a, b]), rows: u16::from_be_bytes([c, d]) }
                }
                _ => return Err(FrameError::Malformed(kind)),
            },
            3 => Frame::Stdout(payload),
            4 => Frame::Stderr(payload),
            5 => match <[u8; 8]>::try_from(&payload[..]) {
                Ok(b) => Frame::Exit(i64::from_be_bytes(b)),
                Err(_) => return Err(FrameError::Malformed(kind)),
            },
            _ => Frame::Error(String::from_utf8_lossy(&payload).into_owned()),
        };
        Ok(Some((frame, 5 + len)))
    }
}

/// Splits ExecuteCommand's `command` into the program and its arguments as a POSIX shell
/// splits words (whitespace separates; single quotes keep everything; double quotes keep all but
/// `\` before `"`, `\`, `$` or `` ` ``; a backslash outside quotes keeps the next character),
/// without expanding anything: `sh -c 'echo hi | cat'` is three words, and a pipe needs a
/// shell, as with ECS Exec. `None` for an unterminated quote.
pub fn split_command(command: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        x => cur.push(x),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            x @ ('"' | '\\' | '$' | '`') => cur.push(x),
                            '\n' => {}
                            x => {
                                cur.push('\\');
                                cur.push(x);
                            }
                        },
                        x => cur.push(x),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(x) => cur.push(x),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

/// Joins words into one command string that [`split_command`] splits back into them: each
/// word that needs it is single-quoted (a `'` inside written as `'\''`).
pub fn join_command<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| {
            let w = w.as_ref();
            let plain =
                !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c));
            if plain { w.to_string() } else { format!("'{}'", w.replace('\'', r"'\''")) }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_split_anywhere() {
        let frames = vec![
            Frame::Stdin(b"ls\n".to_vec()),
            Frame::StdinEof,
            Frame::Resize { cols: 120, rows: 40 },
            Frame::Stdout(vec![0, 255, 10]),
            Frame::Stderr(Vec::new()),
            Frame::Exit(-1),
            Frame::Exit(137),
            Frame::Error("no such container".into()),
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        for chunk in [1, 2, 3, 7, bytes.len()] {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for part in bytes.chunks(chunk) {
                d.push(part);
                while let Some((f, _)) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, frames, "in chunks of {chunk}");
        }
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let check = |bytes: &[u8], want: FrameError| {
            let mut d = Decoder::default();
            d.push(bytes);
            assert_eq!(d.next_frame(), Err(want));
        };
        check(&[9, 0, 0, 0, 0], FrameError::Kind(9));
        check(&[3, 0xff, 0, 0, 0], FrameError::TooLong(0xff00_0000));
        check(&[2, 0, 0, 0, 1, 7], FrameError::Malformed(2));
        check(&[5, 0, 0, 0, 2, 0, 1], FrameError::Malformed(5));
        let mut d = Decoder::default();
        d.push(&[3, 0, 0, 0, 4, b'h']);
        assert_eq!(d.next_frame(), Ok(None), "a partial frame waits for more");
    }

    #[test]
    fn commands_split_as_a_shell_does() {
        let check = |cmd: &str, want: Option<&[&str]>| {
            let got = split_command(cmd);
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, want, "{cmd}");
        };
        check("/bin/sh", Some(&["/bin/sh"]));
        check("  ls   -la /tmp ", Some(&["ls", "-la", "/tmp"]));
        check("sh -c 'echo hi | cat'", Some(&["sh", "-c", "echo hi | cat"]));
        check(r#"echo "a \"b\" \$c \x" ''"#, Some(&["echo", r#"a "b" $c \x"#, ""]));
        check(r"echo a\ b", Some(&["echo", "a b"]));
        check("echo 'open", None);
        check("echo \"open", None);
        check("", Some(&[]));
    }

    #[test]
    fn joined_commands_split_back() {
        for words in [
            vec!["sh", "-c", "echo hi"],
            vec!["echo", "it's", "", "a\"b", "$HOME", "tab\there", "x\\y"],
            vec!["/bin/true"],
        ] {
            let joined = join_command(&words);
            assert_eq!(split_command(&joined).unwrap(), words, "{joined}");
        }
        assert_eq!(join_command(&["sh", "-c", "echo hi"]), "sh -c 'echo hi'");
    }
}
