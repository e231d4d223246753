//! Byte-driven choices. Invariant: a zero byte (what an exhausted `Unstructured` reads) always
//! selects the first, simplest choice, and no choice can fail, so decoding never errors.

use arbitrary::Unstructured;

/// The next input byte; 0 once the input is exhausted.
pub(super) fn byte(u: &mut Unstructured<'_>) -> u8 {
    u.arbitrary::<u8>().unwrap_or(0)
}

/// The next two input bytes as a little-endian number; 0 once exhausted.
pub(super) fn word16(u: &mut Unstructured<'_>) -> u16 {
    u.arbitrary::<u16>().unwrap_or(0)
}

/// True with about `percent`% probability over uniform bytes; false on a zero byte.
pub(super) fn chance(u: &mut Unstructured<'_>, percent: u32) -> bool {
    debug_assert!(percent <= 100);
    u32::from(byte(u)) * 100 >= (100 - percent) * 256 && percent > 0
}

/// A value below `n` (`n >= 1`); 0 on a zero byte.
pub(super) fn below(u: &mut Unstructured<'_>, n: u64) -> u64 {
    debug_assert!(n >= 1);
    if n <= 256 { u64::from(byte(u)) % n } else { u64::from(word16(u)) % n }
}

/// A value in `lo..=hi`; `lo` on a zero byte.
pub(super) fn in_range(u: &mut Unstructured<'_>, lo: u64, hi: u64) -> u64 {
    debug_assert!(lo <= hi);
    lo + below(u, hi - lo + 1)
}

/// One of `table`'s values with probability proportional to its weight; the first on a zero
/// byte, the last on 0xff.
pub(super) fn weighted<T: Copy>(u: &mut Unstructured<'_>, table: &[(u32, T)]) -> T {
    let total: u32 = table.iter().map(|&(w, _)| w).sum();
    debug_assert!(total > 0);
    let mut r = u32::from(byte(u)) * total / 256;
    for &(w, v) in table {
        if r < w {
            return v;
        }
        r -= w;
    }
    table[table.len() - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_bytes_pick_the_first_choice() {
        let mut u = Unstructured::new(&[]);
        assert!(!chance(&mut u, 99));
        assert_eq!(below(&mut u, 1000), 0);
        assert_eq!(in_range(&mut u, 3, 9), 3);
        assert_eq!(weighted(&mut u, &[(1, 'a'), (99, 'b')]), 'a');
    }

    #[test]
    fn ff_bytes_pick_the_last_choice() {
        let ff = [0xffu8; 8];
        let mut u = Unstructured::new(&ff);
        assert!(chance(&mut u, 1));
        assert_eq!(weighted(&mut u, &[(99, 'a'), (1, 'b')]), 'b');
        assert_eq!(in_range(&mut u, 0, 9), 5);
    }

    #[test]
    fn chance_is_roughly_calibrated() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut u = Unstructured::new(&bytes);
        let hits = (0..256).filter(|_| chance(&mut u, 30)).count();
        assert!((70..=85).contains(&hits), "30% of 256 bytes, got {hits}");
    }
}
