//! The fast path of worker output: plain lines (ASCII, not starting with `{`, at most 16 KiB,
//! ended by a newline), the bulk of most output, rendered by the one pass that finds each
//! line's newline and escapes while it copies the text, 32 bytes at a time with AVX2. Every
//! other line goes the general way (`lines`); both give the same bytes.

use super::lines::{escape, MAX_PIECE_BYTES};

/// `"line":"`: after the prefix, where the text of a line starts.
pub const LINE_KEY: &[u8] = b"\"line\":\"";
/// What ends a plain line's event.
const LINE_END: &[u8] = b"\"}\n";

/// Renders the plain lines at the start of `data` onto `out`, as many as follow each other,
/// with AVX2 where the CPU has it; returns how many bytes of `data` they took. It stops (0 when
/// at once, and always without AVX2) before a line that is not plain or that ends too close to
/// the end of `data` for whole 32-byte blocks: the general path takes that one. `line_prefix` is what
/// `lines::line_prefix` made (it ends with `LINE_KEY`).
/// It also stops once `out` holds `limit` bytes or more (overshooting by one line at most).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub fn render_plain_lines(
    out: &mut Vec<u8>,
    line_prefix: &[u8],
    data: &[u8],
    limit: usize,
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2::render_lines(out, line_prefix, data, limit) };
    }
    0
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{escape, LINE_END, MAX_PIECE_BYTES};
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_cmpgt_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
        _mm256_or_si256, _mm256_set1_epi8, _mm256_storeu_si256,
    };
    use std::mem::MaybeUninit;

    /// Room one line may need past `out`'s length: the prefix, then at most 6 bytes (`\u00XX`)
    /// for each byte scanned (16 KiB and a block), then the end and a block's overshoot.
    fn room_for_a_line(prefix_bytes: usize) -> usize {
        prefix_bytes + 6 * (MAX_PIECE_BYTES + 32) + 64
    }

    /// `render_plain_lines` with AVX2. The lines are written into `out`'s spare capacity, and
    /// its length moves past them only once they are whole.
    #[target_feature(enable = "avx2")]
    pub fn render_lines(out: &mut Vec<u8>, line_prefix: &[u8], data: &[u8], limit: usize) -> usize {
        let room = room_for_a_line(line_prefix.len());
        let mut taken = 0;
        loop {
            if out.len() >= limit {
                return taken;
            }
            let rest = data.get(taken..).unwrap_or_default();
            // Room for many lines at once (a line of 100 bytes renders to about 200), but
            // lines start only while `out` is short of `limit`.
            let wanted = rest
                .len()
                .saturating_mul(4)
                .min(limit.saturating_sub(out.len()));
            out.reserve(room.saturating_add(wanted));
            let length = out.len();
            let spare = out.spare_capacity_mut();
            let usable = spare
                .len()
                .min(room.saturating_add(limit.saturating_sub(length)));
            let spare = spare.get_mut(..usable).unwrap_or_default();
            let (used, written, is_stopped) = render_while_room(spare, room, line_prefix, rest);
            // SAFETY: `render_while_room` initialised the first `written` bytes of the spare
            // capacity, which starts at `length`.
            unsafe { out.set_len(length + written) };
            taken += used;
            if is_stopped {
                return taken;
            }
        }
    }

    /// Plain lines of `rest` into `spare` while it has `room` for one more: (bytes of `rest`
    /// taken, bytes written, whether a line stopped it rather than the room).
    #[target_feature(enable = "avx2")]
    fn render_while_room(
        spare: &mut [MaybeUninit<u8>],
        room: usize,
        line_prefix: &[u8],
        rest: &[u8],
    ) -> (usize, usize, bool) {
        let (mut used, mut written) = (0, 0);
        while spare.len().saturating_sub(written) >= room {
            let (Some(slots), Some(line)) = (spare.get_mut(written..), rest.get(used..)) else {
                break;
            };
            match render_one(slots, line_prefix, line) {
                Some((line_used, line_written)) => {
                    used += line_used;
                    written += line_written;
                }
                None => return (used, written, true),
            }
        }
        (used, written, false)
    }

    /// One plain line of `rest` into `spare`: (bytes of `rest` it took, bytes written), or None
    /// when it is not plain or not whole in 32-byte blocks (what was written is not kept).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn render_one(
        spare: &mut [MaybeUninit<u8>],
        line_prefix: &[u8],
        rest: &[u8],
    ) -> Option<(usize, usize)> {
        if rest.first().is_none_or(|byte| *byte == b'{') {
            return None;
        }
        let mut at = copy_prefix(spare, line_prefix)?;
        let mut index = 0;
        loop {
            if index > MAX_PIECE_BYTES {
                return None;
            }
            let mask = copy_block(rest.get(index..index + 32)?, spare.get_mut(at..at + 32)?)?;
            if mask == 0 {
                index += 32;
                at += 32;
                continue;
            }
            let stop = mask.trailing_zeros() as usize;
            index += stop;
            at += stop;
            let byte = *rest.get(index)?;
            let sequence = match byte {
                b'\n' => {
                    if index > MAX_PIECE_BYTES {
                        return None;
                    }
                    write(spare.get_mut(at..at + LINE_END.len())?, LINE_END);
                    return Some((index + 1, at + LINE_END.len()));
                }
                0x80.. => return None,
                _ => escape(byte),
            };
            let (sequence, length) = sequence;
            write(spare.get_mut(at..at + length)?, sequence.get(..length)?);
            index += 1;
            at += length;
        }
    }

    /// The prefix, in 32-byte blocks (the last one overlapping the one before); returns its
    /// length. None when it is shorter than a block (never: a timestamp alone is 24 bytes and
    /// the rest of the prefix more than that).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn copy_prefix(spare: &mut [MaybeUninit<u8>], prefix: &[u8]) -> Option<usize> {
        let last = prefix.len().checked_sub(32)?;
        let mut at = 0;
        loop {
            // One call site: the block code is inlined once (the static binary's size).
            let block_at = at.min(last);
            copy_block(
                prefix.get(block_at..block_at + 32)?,
                spare.get_mut(block_at..block_at + 32)?,
            )?;
            if block_at == last {
                return Some(prefix.len());
            }
            at += 32;
        }
    }

    /// Stores the 32 bytes of `block` into `slot` and returns the mask of its bytes that stop
    /// a plain line: below 0x20 (the newline among them), `"`, `\\` and from 0x80. None (and
    /// nothing stored) when either is shorter than 32 bytes (never: the callers slice them so).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn copy_block(block: &[u8], slot: &mut [MaybeUninit<u8>]) -> Option<u32> {
        if block.len() < 32 || slot.len() < 32 {
            return None;
        }
        // SAFETY: the load reads 32 bytes of `block` and the store writes 32 bytes of `slot`,
        // both checked to be that long (unaligned both allowed); AVX2 is enabled here.
        let mask = unsafe {
            let word = _mm256_loadu_si256(block.as_ptr().cast::<__m256i>());
            _mm256_storeu_si256(slot.as_mut_ptr().cast::<__m256i>(), word);
            // Signed compare: below 0x20 and also every byte from 0x80 (negative).
            let low_or_high = _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), word);
            let quote = _mm256_cmpeq_epi8(word, _mm256_set1_epi8(b'"' as i8));
            let backslash = _mm256_cmpeq_epi8(word, _mm256_set1_epi8(b'\\' as i8));
            _mm256_movemask_epi8(_mm256_or_si256(
                low_or_high,
                _mm256_or_si256(quote, backslash),
            ))
        };
        Some(mask.cast_unsigned())
    }

    /// A few bytes (an escape, the end of a line) into `slot`.
    fn write(slot: &mut [MaybeUninit<u8>], bytes: &[u8]) {
        for (slot, byte) in slot.iter_mut().zip(bytes) {
            slot.write(*byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lines::{line_head, line_prefix, render, LineSplitter, Piece};
    use super::*;

    /// The output of `chunks` through the general path: `push`, then `render` each piece.
    fn general(prefix: &[u8], chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut splitter = LineSplitter::default();
        let mut emit = |piece: &[u8], kind: Piece| render(&mut out, prefix, piece, kind);
        for chunk in chunks {
            splitter.push(chunk, &mut emit);
        }
        splitter.finish(&mut emit);
        out
    }

    /// The output of `chunks` through `push_rendered` (the fast path where it applies).
    fn fast(prefix: &[u8], chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut splitter = LineSplitter::default();
        for chunk in chunks {
            splitter.push_rendered(chunk, prefix, &mut out);
        }
        splitter.finish(&mut |piece, kind| render(&mut out, prefix, piece, kind));
        out
    }

    fn batch_prefix() -> Vec<u8> {
        let mut prefix = Vec::new();
        line_prefix(
            &mut prefix,
            "2026-01-01T00:00:00.000Z",
            &line_head("api", "stdout"),
        );
        prefix
    }

    /// Chunk sizes from a small linear congruential generator: reads of any size, repeatably.
    fn chunked(data: &[u8], seed: u64, largest: usize) -> Vec<&[u8]> {
        let mut state = seed;
        let mut chunks = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let size = 1 + usize::try_from(state >> 33).unwrap() % largest;
            let (chunk, after) = rest.split_at(size.min(rest.len()));
            chunks.push(chunk);
            rest = after;
        }
        chunks
    }

    /// Lines of every kind the fast path must either render exactly or leave alone.
    fn mixed_lines() -> Vec<u8> {
        let mut data = Vec::new();
        let plain =
            |length: usize| -> Vec<u8> { (0..length).map(|i| b'a' + (i % 26) as u8).collect() };
        for length in [0, 1, 15, 16, 31, 32, 33, 63, 64, 99, 100, 200] {
            data.extend(plain(length));
            data.push(b'\n');
        }
        for line in [
            &b"quotes \" and \\ backslashes \"\"\\\\ in a line long enough for a block or two"[..],
            b"\ttab, cr\r, bell \x07, nul \x00, esc \x1b, unit sep \x1f, del \x7f, form \x0c, bs \x08",
            "multibyte: héllo wörld € 😀 and more text after it, past a block".as_bytes(),
            b"invalid \xff\xfe bytes \xe2\x82 and a lone continuation \x80 here, long enough",
            br#"{"level":"warn","msg":"an object","n":1.50,"nested":{"a":[1,2]}}"#,
            b"{not json, but it starts like one and goes on for more than a block",
            br#"{"a":1} trailing text after an object, long enough for a block"#,
            br#" {"a":1} with a space in front: a line, not an object, long enough"#,
            b"crlf line\r",
            b"",
            b"\"",
            b"\\",
        ] {
            data.extend_from_slice(line);
            data.push(b'\n');
        }
        // At, around and past the 16 KiB piece limit, plain and with an escape near the end.
        for length in [16_383, 16_384, 16_385, 40_000] {
            data.extend(plain(length));
            data.push(b'\n');
            let mut line = plain(length);
            line[length - 2] = b'"';
            data.extend(line);
            data.push(b'\n');
        }
        data.extend_from_slice(b"a last line without a newline");
        data
    }

    #[test]
    fn the_fast_path_renders_what_the_general_path_does_whatever_the_reads() {
        let data = mixed_lines();
        // A short prefix too: shorter than a block, the fast path leaves every line.
        for prefix in [batch_prefix(), [&b"{"[..], LINE_KEY].concat()] {
            let want = general(&prefix, &[&data]);
            assert_eq!(fast(&prefix, &[&data]), want, "one read");
            for largest in [1, 7, 32, 33, 100, 4096, 20_000] {
                for seed in 0..8 {
                    let chunks = chunked(&data, seed, largest);
                    assert_eq!(
                        fast(&prefix, &chunks),
                        want,
                        "reads up to {largest} bytes, seed {seed}"
                    );
                }
            }
        }
    }

    #[test]
    fn many_short_lines_render_to_many_times_their_size_in_one_read() {
        // Empty and one-byte lines grow a hundredfold: the output outgrows the room reserved
        // for the read over and over, and each time more is reserved between two lines.
        let mut data = Vec::new();
        for i in 0..50_000 {
            data.extend_from_slice(if i % 3 == 0 { &b"x\n"[..] } else { b"\n" });
        }
        data.extend_from_slice(&[b'y'; 40]);
        data.push(b'\n');
        let prefix = batch_prefix();
        let want = general(&prefix, &[&data]);
        assert!(want.len() > 100 * data.len() / 2);
        assert_eq!(fast(&prefix, &[&data]), want);
    }

    #[test]
    fn every_byte_that_needs_escaping_is_escaped_at_every_position_of_a_block() {
        let prefix = batch_prefix();
        for special in (0u8..0x20)
            .filter(|b| *b != b'\n')
            .chain([b'"', b'\\', 0x7f])
        {
            let mut data = Vec::new();
            for length in 1..80 {
                for at in 0..length {
                    let mut line = vec![b'x'; length];
                    line[at] = special;
                    data.extend(line);
                    data.push(b'\n');
                }
            }
            let out = fast(&prefix, &[&data]);
            assert_eq!(out, general(&prefix, &[&data]), "byte {special:#04x}");
            // And each line is the text back, as JSON.
            let texts = data.split(|b| *b == b'\n');
            for (line, text) in out
                .split(|b| *b == b'\n')
                .zip(texts)
                .filter(|(l, _)| !l.is_empty())
            {
                let value: serde_json::Value = serde_json::from_slice(line).unwrap();
                assert_eq!(value["line"].as_str().unwrap().as_bytes(), text);
            }
        }
    }

    #[test]
    fn utf8_split_across_reads_and_invalid_bytes_at_read_boundaries_stay_exact() {
        let prefix = batch_prefix();
        let mut data = Vec::new();
        for filler in ["é", "€", "😀"] {
            for lead in 0..40 {
                data.extend(vec![b'a'; lead]);
                data.extend_from_slice(filler.repeat(20).as_bytes());
                data.push(b'\n');
            }
        }
        data.extend_from_slice(b"bad at the end \xe2\x82");
        let want = general(&prefix, &[&data]);
        // Cut at every offset near the start, then in two at every point of a window.
        for cut in 0..200 {
            let (first, second) = data.split_at(cut);
            assert_eq!(fast(&prefix, &[first, second]), want, "cut at {cut}");
        }
        let text = String::from_utf8_lossy(&want);
        assert!(text.contains("😀😀"));
        assert!(text.ends_with("\"line\":\"bad at the end \u{fffd}\"}\n"));
    }

    #[test]
    fn plain_lines_take_the_fast_path_and_others_are_left_to_the_general_one() {
        let line_prefix = batch_prefix();
        assert!(line_prefix.ends_with(LINE_KEY));
        let mut out = Vec::new();
        // Two plain lines, then an object: the first two, whole, and nothing of the third.
        let data = [
            &[b'p'; 40][..],
            b"\n",
            &[b'q'; 40],
            b"\n",
            br#"{"a":"an object with enough bytes to fill a block"}"#,
            b"\n",
        ]
        .concat();
        let taken = render_plain_lines(&mut out, &line_prefix, &data, usize::MAX);
        if std::arch::is_x86_feature_detected!("avx2") {
            assert_eq!(taken, 82);
            assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 2);
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(text.ends_with(&format!("\"line\":\"{}\"}}\n", "q".repeat(40))));
        }
        // What it leaves to the general path is left untouched: an object, a byte above 0x7f,
        // a line without a newline, or with its newline too near the end for a whole block.
        for data in [
            &data[82..],
            b"non-ascii \xc3\xa9 line, long enough for more than one block\n",
            b"no newline yet, but long enough for more than one block",
            b"short\n",
        ] {
            let before = out.clone();
            assert_eq!(
                render_plain_lines(&mut out, &line_prefix, data, usize::MAX),
                0
            );
            assert_eq!(out, before);
        }
    }
}
