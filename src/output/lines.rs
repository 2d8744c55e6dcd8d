//! The pure part of worker output: cutting a byte stream into lines (16 KiB pieces at most,
//! never inside a UTF-8 sequence) and rendering each piece as an `output` event line, with a
//! line that is itself a JSON object embedded as `json`, byte for byte. No system calls.

use super::clean;

/// A line longer than this is split into pieces of at most this many bytes (SPEC, "Worker
/// output"); every piece but the last carries `partial: true`.
pub const MAX_PIECE_BYTES: usize = 16 * 1024;

/// What a piece of a line is: the whole line, a piece with more to follow (`partial: true`),
/// or the last piece of a split line. Only a whole line may be embedded as `json`: the tail
/// of a long text line that happens to read as an object is still text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    Whole,
    Partial,
    Last,
}

impl Piece {
    pub fn is_partial(self) -> bool {
        self == Piece::Partial
    }
}

/// The bytes of one stream not yet ended by a newline, carried from one read to the next.
#[derive(Debug, Default)]
pub struct LineSplitter {
    carry: Vec<u8>,
    /// Pieces of the carried line went out already: its end is a `Last` piece.
    is_continued: bool,
}

impl LineSplitter {
    /// Cuts `data` (what one read returned) into pieces: `emit(bytes, piece)` for each
    /// complete line (without its newline) and for each full 16 KiB piece of a longer line.
    /// What is left without a newline waits for the next call or for `finish`. The reference
    /// `push_rendered` is tested against.
    #[cfg(test)]
    pub fn push(&mut self, data: &[u8], emit: &mut impl FnMut(&[u8], Piece)) {
        let Some(mut rest) = self.complete_carried_line(data, emit) else {
            return;
        };
        while let Some(end) = find_newline(rest) {
            let (line, after) = rest.split_at(end);
            emit_line(line, false, emit);
            rest = after.get(1..).unwrap_or_default();
        }
        self.hold(rest, emit);
    }

    /// `push` and `render` in one pass, onto `out`: the hot path of the output. A plain line
    /// (see `clean`; most lines are) is escaped and copied by the scan that finds its newline;
    /// any other (and every line without AVX2) goes the way of `push`, then `render`. The bytes
    /// are the same. `prefix` is what `line_prefix` made.
    #[cfg(test)]
    pub fn push_rendered(&mut self, data: &[u8], prefix: &[u8], out: &mut Vec<u8>) {
        let taken = self.push_rendered_within(data, prefix, out, usize::MAX);
        assert_eq!(taken, data.len());
    }

    /// `push_rendered` that stops at the end of the line that takes `out` to `limit` bytes or
    /// more, and returns how many bytes of `data` it took: what follows is for a later call
    /// (one read of short lines renders to many times its size, and a stream's buffer stays
    /// bounded by its room, plus one line).
    pub fn push_rendered_within(
        &mut self,
        data: &[u8],
        prefix: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> usize {
        let mut rest = {
            let mut emit = |bytes: &[u8], piece: Piece| render(out, prefix, bytes, piece);
            match self.complete_carried_line(data, &mut emit) {
                Some(rest) => rest,
                None => return data.len(),
            }
        };
        loop {
            if out.len() >= limit {
                return data.len().saturating_sub(rest.len());
            }
            let taken = clean::render_plain_lines(out, prefix, rest, limit);
            rest = rest.get(taken..).unwrap_or_default();
            if out.len() >= limit {
                return data.len().saturating_sub(rest.len());
            }
            let Some(end) = find_newline(rest) else {
                break;
            };
            let (line, after) = rest.split_at(end);
            emit_line(line, false, &mut |bytes, piece| {
                render(out, prefix, bytes, piece)
            });
            rest = after.get(1..).unwrap_or_default();
        }
        self.hold(rest, &mut |bytes, piece| render(out, prefix, bytes, piece));
        data.len()
    }

    /// A line begun in an earlier read is ended by the first newline of `data`: emitted, and
    /// the rest of `data` returned. No newline: all of `data` is carried (None).
    fn complete_carried_line<'a>(
        &mut self,
        data: &'a [u8],
        emit: &mut impl FnMut(&[u8], Piece),
    ) -> Option<&'a [u8]> {
        if self.carry.is_empty() {
            return Some(data);
        }
        let Some(end) = find_newline(data) else {
            self.hold(data, emit);
            return None;
        };
        let (line, after) = data.split_at(end);
        self.carry.extend_from_slice(line);
        emit_line(&self.carry, std::mem::take(&mut self.is_continued), emit);
        self.carry.clear();
        Some(after.get(1..).unwrap_or_default())
    }

    /// Keeps `rest` (no newline in it) for the next read, but no more than 16 KiB of it.
    fn hold(&mut self, rest: &[u8], emit: &mut impl FnMut(&[u8], Piece)) {
        self.carry.extend_from_slice(rest);
        self.emit_full_pieces(emit);
    }

    /// End of the stream: a last line without a newline goes out as it is.
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8], Piece)) {
        if !self.carry.is_empty() {
            emit_line(&self.carry, std::mem::take(&mut self.is_continued), emit);
            self.carry.clear();
        }
    }

    /// Bytes held back waiting for a newline.
    pub fn carried_bytes(&self) -> usize {
        self.carry.len()
    }

    /// A carry over 16 KiB cannot be one piece whatever follows: its full pieces go now, so
    /// that what is held stays bounded.
    fn emit_full_pieces(&mut self, emit: &mut impl FnMut(&[u8], Piece)) {
        let mut start = 0;
        while self.carry.len().saturating_sub(start) > MAX_PIECE_BYTES {
            let rest = self.carry.get(start..).unwrap_or_default();
            let cut = piece_end(rest);
            emit(rest.get(..cut).unwrap_or_default(), Piece::Partial);
            self.is_continued = true;
            start += cut;
        }
        if start > 0 {
            self.carry.drain(..start);
        }
    }
}

/// A line's end (all of it unless `is_continued`: its first pieces went out already): in
/// pieces when it is over 16 KiB, the last one not partial.
fn emit_line(line: &[u8], is_continued: bool, emit: &mut impl FnMut(&[u8], Piece)) {
    let mut rest = line;
    let mut is_split = is_continued;
    while rest.len() > MAX_PIECE_BYTES {
        let cut = piece_end(rest);
        let (piece, after) = rest.split_at(cut);
        emit(piece, Piece::Partial);
        is_split = true;
        rest = after;
    }
    emit(rest, if is_split { Piece::Last } else { Piece::Whole });
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

/// Renders one piece as an `output` event line (with its newline) onto `out`. `prefix` is what
/// `line_prefix` made, shared by the lines of a batch.
pub fn render(out: &mut Vec<u8>, prefix: &[u8], piece: &[u8], kind: Piece) {
    let is_partial = kind.is_partial();
    // The text may go under `json` instead: the prefix up to the key.
    let prefix = prefix.strip_suffix(clean::LINE_KEY).unwrap_or(prefix);
    out.reserve(prefix.len() + piece.len() + 32);
    out.extend_from_slice(prefix);
    let could_be_json = kind == Piece::Whole && piece.first() == Some(&b'{');
    let start = out.len();
    out.extend_from_slice(b"\"line\":");
    // Most lines are ASCII: escaped in one pass, no UTF-8 validation needed.
    if could_be_json || !push_escaped(out, piece, true) {
        out.truncate(start);
        match std::str::from_utf8(piece) {
            Ok(text) if could_be_json && is_json_object(text) => {
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
    }
    if is_partial {
        out.extend_from_slice(b",\"partial\":true");
    }
    out.extend_from_slice(b"}\n");
}

/// `{"ts":"TS`, `head` and `"line":"`: what every line of a batch of one pipe starts with
/// (the text of a plain line follows at once; `render` cuts the key off for the others).
pub fn line_prefix(prefix: &mut Vec<u8>, ts: &str, head: &str) {
    prefix.clear();
    prefix.extend_from_slice(b"{\"ts\":\"");
    prefix.extend_from_slice(ts.as_bytes());
    prefix.extend_from_slice(head.as_bytes());
    prefix.extend_from_slice(clean::LINE_KEY);
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
/// text byte for byte), and one a strict parser takes: every string's escapes decoded (a lone
/// surrogate such as `\ud800` is refused) and every number in range (`1e999999` is refused).
/// `RawValue` checks neither, and jq stopped at such a line, unable to read the rest of the
/// stream (the robustness audit); it now goes out as a `line` string instead.
fn is_json_object(text: &str) -> bool {
    text.starts_with('{') && text.ends_with('}') && serde_json::from_str::<Strict>(text).is_ok()
}

/// A JSON value read as a strict parser reads it, and dropped: nothing is built. (`IgnoredAny`
/// skips over strings and numbers without decoding them.)
struct Strict;

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_str<E>(self, _: &str) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        while seq.next_element::<Strict>()?.is_some() {}
        Ok(Strict)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        while map.next_entry::<Strict, Strict>()?.is_some() {}
        Ok(Strict)
    }
}

/// `text` as a JSON string: `"`, `\\` and control characters escaped, the rest as it is.
pub fn push_json_string(out: &mut Vec<u8>, text: &str) {
    push_escaped(out, text.as_bytes(), false);
}

/// `bytes` as a JSON string. With `is_ascii_only`, a byte above 0x7f stops it (false; `out` then
/// holds a partial string for the caller to cut); otherwise `bytes` must be valid UTF-8. The runs
/// between escapes are found sixteen bytes at a time (`clean` has the hot loop of the output).
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8], is_ascii_only: bool) -> bool {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    while let Some(index) = next_escape(bytes, start, is_ascii_only) {
        out.extend_from_slice(bytes.get(start..index).unwrap_or_default());
        let byte = bytes.get(index).copied().unwrap_or(0);
        if byte >= 0x80 {
            return false;
        }
        push_escape(out, byte);
        start = index + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
    true
}

/// The JSON escape of `byte`, an ASCII byte `next_escape` stopped at.
fn push_escape(out: &mut Vec<u8>, byte: u8) {
    let (sequence, length) = escape(byte);
    out.extend_from_slice(sequence.get(..length).unwrap_or_default());
}

/// The JSON escape of a byte below 0x20, `"` or `\\`: its bytes and how many of them count.
pub(super) fn escape(byte: u8) -> ([u8; 6], usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = |letter: u8| ([b'\\', letter, 0, 0, 0, 0], 2);
    match byte {
        b'"' | b'\\' => short(byte),
        b'\n' => short(b'n'),
        b'\r' => short(b'r'),
        b'\t' => short(b't'),
        0x08 => short(b'b'),
        0x0c => short(b'f'),
        _ => (
            [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xF)],
            ],
            6,
        ),
    }
}

/// The first byte at or after `from` that JSON needs escaped (below 0x20, `"`, `\\`), or with
/// `is_ascii_only` that is not ASCII.
fn next_escape(bytes: &[u8], from: usize, is_ascii_only: bool) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte of `word` below `n` (n <= 0x80) sets its high bit in this: the lowest flagged
    // byte is always a true one (a borrow only runs upwards from a true one).
    let below = |word: u64, n: u64| word.wrapping_sub(ONES * n) & !word & HIGHS;
    let high_mask = if is_ascii_only { HIGHS } else { 0 };
    let mut index = from;
    #[cfg(target_arch = "x86_64")]
    {
        let (found, scanned) = sse2::next_escape(bytes, index, is_ascii_only);
        if found.is_some() {
            return found;
        }
        index = scanned;
    }
    while let Some(chunk) = bytes.get(index..index + 8) {
        let mut word_bytes = [0u8; 8];
        word_bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word_bytes);
        let found = below(word, 0x20)
            | below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1)
            | (word & high_mask);
        if found != 0 {
            return Some(index + (found.trailing_zeros() / 8) as usize);
        }
        index += 8;
    }
    bytes
        .get(index..)?
        .iter()
        .position(|b| *b < 0x20 || *b == b'"' || *b == b'\\' || (is_ascii_only && *b >= 0x80))
        .map(|offset| index + offset)
}

/// `next_escape` sixteen bytes at a time with SSE2, which every x86_64 has.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_loadu_si128,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };

    /// The first escape in whole 16-byte blocks from `from`, or where the blocks ended (the
    /// rest, under 16 bytes, is for the caller).
    pub fn next_escape(bytes: &[u8], from: usize, is_ascii_only: bool) -> (Option<usize>, usize) {
        let mut index = from;
        while let Some(block) = bytes.get(index..index + 16) {
            // SAFETY: SSE2 is part of x86_64; the load reads the 16 bytes of `block`
            // (unaligned load allowed).
            let mask = unsafe {
                let word = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
                // Signed compare: below 0x20 and also every byte from 0x80 (negative).
                let low_or_high = _mm_cmplt_epi8(word, _mm_set1_epi8(0x20));
                let flagged = if is_ascii_only {
                    low_or_high
                } else {
                    let is_ascii = _mm_cmpgt_epi8(word, _mm_set1_epi8(-1));
                    _mm_and_si128(low_or_high, is_ascii)
                };
                let quote = _mm_cmpeq_epi8(word, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(word, _mm_set1_epi8(b'\\' as i8));
                _mm_movemask_epi8(_mm_or_si128(flagged, _mm_or_si128(quote, backslash)))
            };
            if mask != 0 {
                return (Some(index + mask.trailing_zeros() as usize), index);
            }
            index += 16;
        }
        (None, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every piece the splitter makes of `chunks`, EOF included.
    fn split(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut splitter = LineSplitter::default();
        let mut pieces = Vec::new();
        let mut emit = |piece: &[u8], kind: Piece| pieces.push((piece.to_vec(), kind.is_partial()));
        for chunk in chunks {
            splitter.push(chunk, &mut emit);
        }
        splitter.finish(&mut emit);
        pieces
    }

    fn rendered(piece: &[u8], partial: bool) -> Value {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        line_prefix(
            &mut prefix,
            "2026-01-01T00:00:00.000Z",
            &line_head("api", "stdout"),
        );
        let kind = if partial {
            Piece::Partial
        } else {
            Piece::Whole
        };
        render(&mut out, &prefix, piece, kind);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn lines_are_cut_at_newlines_whatever_the_reads() {
        type Pieces<'a> = &'a [(&'a [u8], bool)];
        let table: &[(&[&[u8]], Pieces)] = &[
            (&[b"a\nbc\n"], &[(b"a", false), (b"bc", false)]),
            (&[b"a", b"b\nc", b"\n"], &[(b"ab", false), (b"c", false)]),
            (&[b"\n\n"], &[(b"", false), (b"", false)]),
            (
                &[b"last without newline"],
                &[(b"last without newline", false)],
            ),
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
    fn the_tail_of_a_split_line_is_text_even_when_it_reads_as_an_object() {
        // `q` x 16 KiB then `{"inj":1}`: the last piece went out as `json` (no `line`, so the
        // rejoin recipe failed, and a collector took fields from the tail of a text line).
        let mut line = vec![b'q'; MAX_PIECE_BYTES];
        line.extend_from_slice(b"{\"inj\":1}\n");
        let mut prefix = Vec::new();
        line_prefix(&mut prefix, "T", &line_head("api", "stdout"));
        // In one read, and in reads that cut the line anywhere (the carry's way).
        for cut in [
            line.len(),
            10,
            MAX_PIECE_BYTES,
            MAX_PIECE_BYTES + 1,
            MAX_PIECE_BYTES + 3,
        ] {
            let mut splitter = LineSplitter::default();
            let mut out = Vec::new();
            splitter.push_rendered(&line[..cut], &prefix, &mut out);
            splitter.push_rendered(&line[cut..], &prefix, &mut out);
            let events: Vec<Value> = out
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect();
            assert_eq!(events.len(), 2, "cut at {cut}");
            assert_eq!(events[0]["partial"], true);
            assert_eq!(events[1]["line"], "{\"inj\":1}", "cut at {cut}");
            assert!(events[1].get("json").is_none() && events[1].get("partial").is_none());
        }
        // A whole line that is an object is still embedded.
        let mut out = Vec::new();
        LineSplitter::default().push_rendered(b"{\"inj\":1}\n", &prefix, &mut out);
        let event: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(event["json"]["inj"], 1);
    }

    #[test]
    fn a_read_of_short_lines_renders_no_further_than_its_limit_and_the_rest_follows() {
        // 128 KiB of empty lines renders to ~14 MB: the whole read went into the stream's
        // buffer, far past its 512 KiB (the audit: 16 MB of VmHWM; events dropped behind it
        // with a healthy reader).
        let mut prefix = Vec::new();
        line_prefix(
            &mut prefix,
            "2026-01-01T00:00:00.000Z",
            &line_head("api", "stdout"),
        );
        for data in [vec![b'\n'; 128 * 1024], b"ab\n".repeat(40_000), {
            let mut mixed = b"x\xff\n".repeat(5_000);
            mixed.extend_from_slice(&[b'{'; 40_000]);
            mixed.extend_from_slice(b"\nlast");
            mixed
        }] {
            let mut whole = Vec::new();
            let mut reference = LineSplitter::default();
            reference.push_rendered(&data, &prefix, &mut whole);
            let mut splitter = LineSplitter::default();
            let (mut out, mut rest, mut calls) = (Vec::new(), &data[..], 0);
            while !rest.is_empty() {
                let mut batch = Vec::new();
                let taken = splitter.push_rendered_within(rest, &prefix, &mut batch, 64 * 1024);
                // One line past the limit at most (a 16 KiB piece of escapes is ~100 KiB).
                assert!(batch.len() < 64 * 1024 + 100 * 1024, "{}", batch.len());
                assert!(taken > 0);
                out.extend_from_slice(&batch);
                rest = &rest[taken..];
                calls += 1;
            }
            assert_eq!(out, whole, "the same bytes, in {calls} calls");
            assert_eq!(splitter.carried_bytes(), reference.carried_bytes());
        }
    }

    #[test]
    fn what_is_carried_stays_bounded() {
        let mut splitter = LineSplitter::default();
        let mut count = 0;
        for _ in 0..100 {
            splitter.push(&[b'z'; 10_000], &mut |_, piece| {
                assert!(piece.is_partial());
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
    fn every_byte_that_needs_escaping_is_found_at_every_position() {
        for special in (0u8..0x20).chain([b'"', b'\\']) {
            for length in 0..40 {
                for at in 0..length {
                    let mut bytes = vec![b'a'; length];
                    bytes[at] = special;
                    let text = String::from_utf8(bytes).unwrap();
                    let mut out = Vec::new();
                    push_json_string(&mut out, &text);
                    let back: String = serde_json::from_slice(&out).unwrap();
                    assert_eq!(back, text);
                    assert_eq!(out, serde_json::to_vec(&text).unwrap(), "{text:?}");
                }
            }
        }
        // Bytes above 0x7f (UTF-8) and DEL are left alone.
        let text = "é\u{7f}€\u{1}ÿ";
        let mut out = Vec::new();
        push_json_string(&mut out, text);
        assert_eq!(out, serde_json::to_vec(text).unwrap());
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
        let mut prefix = Vec::new();
        line_prefix(&mut prefix, "T", &line_head("api", "stderr"));
        render(&mut out, &prefix, line, Piece::Whole);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.contains(&format!(
                "\"json\":{}}}",
                std::str::from_utf8(line).unwrap()
            )),
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

    #[test]
    fn an_object_a_strict_parser_refuses_goes_out_as_a_line() {
        for line in [
            &br#"{"a":"\ud800"}"#[..],
            br#"{"a":"x\udc00y"}"#,
            br#"{"n":1e999999}"#,
            br#"{"n":-1e400}"#,
            br#"{"a":1} "#,
            br#"{"a":1}{"b":2}"#,
        ] {
            // `rendered` parses the whole event strictly: it must be valid JSON either way.
            let value = rendered(line, false);
            assert!(value.get("json").is_none(), "{value}");
            assert_eq!(value["line"], std::str::from_utf8(line).unwrap());
        }
        for line in [
            &br#"{"e":"\ud83d\ude00","n":1e300,"big":123456789012345678901234567890}"#[..],
            br#"{"deep":[[[{"a":null,"b":true,"c":false}]]],"s":"\"\\\/\b\f\n\r\t"}"#,
        ] {
            let value = rendered(line, false);
            assert!(value.get("json").is_some(), "{value}");
        }
    }
}
