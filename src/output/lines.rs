//! The pure part of worker output: cutting a byte stream into lines (16 KiB pieces at most,
//! never inside a UTF-8 sequence) and rendering each piece as an `output` event line, with a
//! line that is itself a JSON object embedded as `json`, byte for byte. No system calls.

use serde_json::value::RawValue;

/// A line longer than this is split into pieces of at most this many bytes (SPEC, "Worker
/// output"); every piece but the last carries `partial: true`.
pub const MAX_PIECE_BYTES: usize = 16 * 1024;

/// The bytes of one stream not yet ended by a newline, carried from one read to the next.
#[derive(Debug, Default)]
pub struct LineSplitter {
    carry: Vec<u8>,
}

impl LineSplitter {
    /// Cuts `data` (what one read returned) into pieces: `emit(bytes, is_partial)` for each
    /// complete line (without its newline) and for each full 16 KiB piece of a longer line.
    /// What is left without a newline waits for the next call or for `finish`.
    pub fn push(&mut self, data: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
        let mut rest = data;
        if !self.carry.is_empty() {
            match find_newline(rest) {
                Some(end) => {
                    let (line, after) = rest.split_at(end);
                    self.carry.extend_from_slice(line);
                    emit_line(&self.carry, emit);
                    self.carry.clear();
                    rest = after.get(1..).unwrap_or_default();
                }
                None => {
                    self.carry.extend_from_slice(rest);
                    self.emit_full_pieces(emit);
                    return;
                }
            }
        }
        while let Some(end) = find_newline(rest) {
            let (line, after) = rest.split_at(end);
            emit_line(line, emit);
            rest = after.get(1..).unwrap_or_default();
        }
        self.carry.extend_from_slice(rest);
        self.emit_full_pieces(emit);
    }

    /// End of the stream: a last line without a newline goes out as it is.
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        if !self.carry.is_empty() {
            emit_line(&self.carry, emit);
            self.carry.clear();
        }
    }

    /// Bytes held back waiting for a newline.
    pub fn carried_bytes(&self) -> usize {
        self.carry.len()
    }

    /// A carry over 16 KiB cannot be one piece whatever follows: its full pieces go now, so
    /// that what is held stays bounded.
    fn emit_full_pieces(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        let mut start = 0;
        while self.carry.len().saturating_sub(start) > MAX_PIECE_BYTES {
            let rest = self.carry.get(start..).unwrap_or_default();
            let cut = piece_end(rest);
            emit(rest.get(..cut).unwrap_or_default(), true);
            start += cut;
        }
        if start > 0 {
            self.carry.drain(..start);
        }
    }
}

/// A whole line: in pieces when it is over 16 KiB, the last one not partial.
fn emit_line(line: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
    let mut rest = line;
    while rest.len() > MAX_PIECE_BYTES {
        let cut = piece_end(rest);
        let (piece, after) = rest.split_at(cut);
        emit(piece, true);
        rest = after;
    }
    emit(rest, false);
}

/// Where a 16 KiB piece of `bytes` (longer than that) ends: before a UTF-8 sequence that would
/// straddle the cut, so that each piece decodes on its own to what the whole line would.
fn piece_end(bytes: &[u8]) -> usize {
    let is_continuation = |index: usize| bytes.get(index).is_some_and(|b| b & 0xC0 == 0x80);
    let mut cut = MAX_PIECE_BYTES;
    // A sequence is at most 4 bytes: at most 3 continuation bytes to step back over.
    while cut > MAX_PIECE_BYTES - 3 && is_continuation(cut) {
        cut -= 1;
    }
    let is_lead = bytes.get(cut).is_some_and(|b| *b >= 0xC0);
    if cut < MAX_PIECE_BYTES && is_lead {
        cut
    } else {
        // At a character boundary already, or not valid UTF-8 around the cut (any cut is as
        // good as another then).
        MAX_PIECE_BYTES
    }
}

/// The first newline in `bytes`, through libc's memchr (vectorised; this is the hot loop).
fn find_newline(bytes: &[u8]) -> Option<usize> {
    if bytes.is_empty() {
        return None;
    }
    // SAFETY: the pointer and length describe the live `bytes` slice; memchr only reads it.
    let found = unsafe { libc::memchr(bytes.as_ptr().cast(), i32::from(b'\n'), bytes.len()) };
    if found.is_null() {
        return None;
    }
    (found as usize).checked_sub(bytes.as_ptr() as usize)
}

/// Renders one piece as an `output` event line (with its newline) onto `out`. `head` is what
/// follows the timestamp up to the text (see `line_head`), shared by every line of a pipe.
pub fn render(out: &mut Vec<u8>, ts: &str, head: &str, piece: &[u8], is_partial: bool) {
    out.extend_from_slice(b"{\"ts\":\"");
    out.extend_from_slice(ts.as_bytes());
    out.extend_from_slice(head.as_bytes());
    match std::str::from_utf8(piece) {
        Ok(text) if !is_partial && is_json_object(text) => {
            out.extend_from_slice(b"\"json\":");
            out.extend_from_slice(piece);
        }
        Ok(text) => {
            out.extend_from_slice(b"\"line\":");
            push_json_string(out, text);
        }
        Err(_) => {
            out.extend_from_slice(b"\"line\":");
            push_json_string(out, &String::from_utf8_lossy(piece));
        }
    }
    if is_partial {
        out.extend_from_slice(b",\"partial\":true");
    }
    out.extend_from_slice(b"}\n");
}

/// `","level":"info","event":"output","worker":NAME,"stream":STREAM,`: the fixed middle of
/// every line of one pipe.
pub fn line_head(worker: &str, stream: &str) -> String {
    let mut head = Vec::with_capacity(96);
    head.extend_from_slice(b"\",\"level\":\"info\",\"event\":\"output\",\"worker\":");
    push_json_string(&mut head, worker);
    head.extend_from_slice(b",\"stream\":");
    push_json_string(&mut head, stream);
    head.push(b',');
    String::from_utf8(head).unwrap_or_default()
}

/// A line that is exactly one JSON object, nothing around it (so that embedding it keeps the
/// text byte for byte).
fn is_json_object(text: &str) -> bool {
    if !text.starts_with('{') {
        return false;
    }
    match serde_json::from_str::<&RawValue>(text) {
        Ok(raw) => raw.get().len() == text.len(),
        Err(_) => false,
    }
}

/// `text` as a JSON string: `"`, `\` and control characters escaped, the rest as it is.
pub fn push_json_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        if byte >= 0x20 && byte != b'"' && byte != b'\\' {
            continue;
        }
        out.extend_from_slice(bytes.get(start..index).unwrap_or_default());
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xF)],
            ]),
        }
        start = index + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every piece the splitter makes of `chunks`, EOF included.
    fn split(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut splitter = LineSplitter::default();
        let mut pieces = Vec::new();
        let mut emit = |piece: &[u8], partial: bool| pieces.push((piece.to_vec(), partial));
        for chunk in chunks {
            splitter.push(chunk, &mut emit);
        }
        splitter.finish(&mut emit);
        pieces
    }

    fn rendered(piece: &[u8], partial: bool) -> Value {
        let mut out = Vec::new();
        render(
            &mut out,
            "2026-01-01T00:00:00.000Z",
            &line_head("api", "stdout"),
            piece,
            partial,
        );
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn lines_are_cut_at_newlines_whatever_the_reads() {
        let table: &[(&[&[u8]], &[(&[u8], bool)])] = &[
            (&[b"a\nbc\n"], &[(b"a", false), (b"bc", false)]),
            (&[b"a", b"b\nc", b"\n"], &[(b"ab", false), (b"c", false)]),
            (&[b"\n\n"], &[(b"", false), (b"", false)]),
            (&[b"last without newline"], &[(b"last without newline", false)]),
            (&[b"x\n", b"tail"], &[(b"x", false), (b"tail", false)]),
            (&[b"crlf\r\n"], &[(b"crlf\r", false)]),
            (&[], &[]),
        ];
        for (chunks, want) in table {
            let want: Vec<(Vec<u8>, bool)> = want.iter().map(|(b, p)| (b.to_vec(), *p)).collect();
            assert_eq!(split(chunks), want, "{chunks:?}");
        }
    }

    #[test]
    fn a_long_line_is_split_in_16k_pieces_that_rejoin() {
        for (length, reads) in [(40_000usize, 1usize), (40_000, 7), (16_384, 1), (16_385, 3)] {
            let line: Vec<u8> = (0..length).map(|i| b'a' + (i % 26) as u8).collect();
            let mut data = line.clone();
            data.extend_from_slice(b"\nnext\n");
            let chunks: Vec<&[u8]> = data.chunks(data.len().div_ceil(reads)).collect();
            let pieces = split(&chunks);
            let (last, rest) = pieces.split_last().unwrap();
            assert_eq!(last, &(b"next".to_vec(), false));
            let joined: Vec<u8> = rest.iter().flat_map(|(b, _)| b.clone()).collect();
            assert_eq!(joined, line, "{length} in {reads} reads");
            assert!(rest.iter().all(|(b, _)| b.len() <= MAX_PIECE_BYTES));
            let flags: Vec<bool> = rest.iter().map(|(_, p)| *p).collect();
            let mut want = vec![true; length.div_ceil(MAX_PIECE_BYTES) - 1];
            want.push(false);
            assert_eq!(flags, want, "{length} in {reads} reads");
        }
    }

    #[test]
    fn pieces_never_split_a_utf8_sequence() {
        for prefix in 0..4 {
            // 'é' is 2 bytes, '€' 3, '😀' 4: every alignment against the 16 KiB cut.
            for filler in ["é", "€", "😀"] {
                let text = "x".repeat(prefix) + &filler.repeat(20_000 / filler.len());
                let mut data = text.clone().into_bytes();
                data.push(b'\n');
                let pieces = split(&[&data]);
                let mut joined = String::new();
                for (piece, _) in &pieces {
                    let piece = std::str::from_utf8(piece).expect("each piece is valid UTF-8");
                    joined.push_str(piece);
                }
                assert_eq!(joined, text);
                assert!(pieces[0].0.len() > MAX_PIECE_BYTES - 4);
            }
        }
        // Invalid bytes at the cut: cut anywhere, but exactly at 16 KiB.
        let data = vec![0x80u8; 20_000];
        let pieces = split(&[&data]);
        assert_eq!(pieces[0].0.len(), MAX_PIECE_BYTES);
        assert_eq!(pieces.len(), 2);
    }

    #[test]
    fn what_is_carried_stays_bounded() {
        let mut splitter = LineSplitter::default();
        let mut count = 0;
        for _ in 0..100 {
            splitter.push(&[b'z'; 10_000], &mut |_, partial| {
                assert!(partial);
                count += 1;
            });
            assert!(splitter.carried_bytes() <= MAX_PIECE_BYTES);
        }
        assert_eq!(count, 1_000_000 / MAX_PIECE_BYTES);
    }

    #[test]
    fn text_round_trips_exactly() {
        for text in [
            "plain ascii",
            "multibyte: héllo wörld € 😀",
            "quotes \" and \\ backslashes",
            "tab\tcontrol\u{1}\u{1f}del\u{7f}",
            "",
            "{not json",
            "{\"a\":1} trailing",
            " {\"a\":1}",
            "[1,2]",
        ] {
            let value = rendered(text.as_bytes(), false);
            assert_eq!(value["line"], text, "{text:?}");
            assert!(value.get("json").is_none(), "{text:?}");
            assert!(value.get("partial").is_none());
            assert_eq!(value["event"], "output");
            assert_eq!(value["worker"], "api");
            assert_eq!(value["stream"], "stdout");
            assert_eq!(value["level"], "info");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let value = rendered(b"bad \xff\xfe byte \xe2\x82", false);
        assert_eq!(value["line"], "bad \u{fffd}\u{fffd} byte \u{fffd}");
    }

    #[test]
    fn a_json_object_line_is_embedded_byte_for_byte() {
        let line = br#"{"level":"warn", "msg":"x\u00e9", "n":1.50, "nested":{"a":[1,2]}}"#;
        let mut out = Vec::new();
        render(&mut out, "T", &line_head("api", "stderr"), line, false);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.contains(&format!("\"json\":{}}}", std::str::from_utf8(line).unwrap())),
            "{text}"
        );
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["json"]["msg"], "xé");
        assert_eq!(value["stream"], "stderr");
        assert!(value.get("line").is_none());
        // A partial piece is never embedded, even when it happens to parse.
        let value = rendered(b"{}", true);
        assert_eq!(value["line"], "{}");
        assert_eq!(value["partial"], true);
    }
}
