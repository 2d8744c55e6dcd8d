//! The generation id: 128 random bits naming one run of fleet-init. It is in the handoff file
//! and in every worker's environment (`FLEET_INIT_GENERATION`), and it is what finds a dead
//! generation's processes: never a worker name, never a command line.

use std::io::Read;

/// 128 bits, written as 32 lowercase hex digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Generation(pub [u8; 16]);

impl Generation {
    /// A fresh id from the kernel's random pool. Never blocks: `GRND_NONBLOCK`, then
    /// `/dev/urandom` (which never blocks either), then, on a system with neither, bits from
    /// the clock and the pid, which still differ between two runs on one host.
    pub fn new_random() -> Generation {
        Generation(random_bytes())
    }

    pub fn parse(text: &str) -> Option<Generation> {
        let bytes = text.as_bytes();
        if bytes.len() != 32 {
            return None;
        }
        let mut id = [0u8; 16];
        for (slot, pair) in id.iter_mut().zip(bytes.chunks_exact(2)) {
            let high = hex_value(*pair.first()?)?;
            let low = hex_value(*pair.get(1)?)?;
            *slot = (high << 4) | low;
        }
        Some(Generation(id))
    }
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 32];
        for (pair, byte) in text.chunks_exact_mut(2).zip(self.0) {
            for (slot, nibble) in pair.iter_mut().zip([byte >> 4, byte & 0x0f]) {
                *slot = DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0');
            }
        }
        f.write_str(std::str::from_utf8(&text).unwrap_or_default())
    }
}

/// Lowercase only: the one spelling fleet-init writes.
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// 16 random bytes; see `Generation::new_random` for the order of sources.
pub fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom(2) writes at most `len` bytes into the buffer we own.
    let got =
        unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), libc::GRND_NONBLOCK) };
    if usize::try_from(got).ok() == Some(bytes.len()) {
        return bytes;
    }
    let from_urandom =
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if from_urandom.is_ok() {
        return bytes;
    }
    log::warn!("no random source: the generation id comes from the clock and the pid");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mixed = nanos ^ (u128::from(std::process::id()) << 96);
    mixed.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_written_as_32_lowercase_hex_digits_and_parses_back() {
        let id = Generation([
            0x00, 0x01, 0x0f, 0x10, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff, 0x12, 0x34, 0x56, 0x78,
            0x9a, 0xbc,
        ]);
        let text = id.to_string();
        assert_eq!(text, "00010f107f80abcdefff123456789abc");
        let want: String = id.0.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(text, want);
        assert_eq!(Generation::parse(&text), Some(id));
    }

    #[test]
    fn round_trips_and_refuses_anything_else() {
        let id = Generation::new_random();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(Generation::parse(&text), Some(id));
        assert_ne!(Generation::new_random(), id, "two draws differ");
        for bad in [
            "",
            "00",
            "0123456789abcdef0123456789abcdeg",
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcdef0",
            " 123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(Generation::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            Generation([0xab; 16]).to_string(),
            "abababababababababababababababab"
        );
    }
}
