//! Word encodings that make every 8-byte word on media self-describing (docs/design.md §6).
//!
//! - A *data word* is written only by the harness: it names the file incarnation, the word
//!   offset in that file and the write version. Top byte `0xDA`.
//! - A *poison word* is what mkfs leaves in every data block: the "old contents" that must never
//!   leak. It names the block, the word inside it and the image generation. Top byte `0x5E`.
//! - Zero is neither.

/// Bits of the file id in a data word.
pub const FILE_ID_BITS: u32 = 12;
/// Bits of the word offset in a data word: 2^20 words = 8 MiB, the file size bound.
pub const WORD_OFF_BITS: u32 = 20;
/// Bits of the version in a data word.
pub const VERSION_BITS: u32 = 24;

const DATA_TOP: u64 = 0xDA;
const POISON_TOP: u64 = 0x5E;
const _: () = assert!(8 + FILE_ID_BITS + WORD_OFF_BITS + VERSION_BITS == 64);

/// A decoded data word.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct DataTag {
    /// File incarnation: a new id each time a file is created, never reused in a run.
    pub file_id: u32,
    /// Offset of the word in the file, in words.
    pub word_off: u64,
    /// Write version, from 1; later writes of the same word have larger versions.
    pub version: u32,
}

impl DataTag {
    pub fn encode(self) -> u64 {
        debug_assert!(self.file_id < 1 << FILE_ID_BITS);
        debug_assert!(self.word_off < 1 << WORD_OFF_BITS);
        debug_assert!(self.version >= 1 && self.version < 1 << VERSION_BITS);
        (DATA_TOP << 56)
            | (u64::from(self.file_id) << (WORD_OFF_BITS + VERSION_BITS))
            | (self.word_off << VERSION_BITS)
            | u64::from(self.version)
    }
}

/// A decoded poison word.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Poison {
    pub generation: u8,
    pub block: u64,
    pub word_in_block: u16,
}

impl Poison {
    pub fn encode(self) -> u64 {
        debug_assert!(self.block < 1 << 32);
        (POISON_TOP << 56)
            | (u64::from(self.generation) << 48)
            | (self.block << 16)
            | u64::from(self.word_in_block)
    }
}

/// What an 8-byte word read from media is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Word {
    Zero,
    Data(DataTag),
    Poison(Poison),
    /// Anything else (metadata, torn garbage).
    Other(u64),
}

impl Word {
    pub fn decode(w: u64) -> Word {
        match w >> 56 {
            _ if w == 0 => Word::Zero,
            DATA_TOP if w & ((1 << VERSION_BITS) - 1) != 0 => Word::Data(DataTag {
                file_id: ((w >> (WORD_OFF_BITS + VERSION_BITS)) & ((1 << FILE_ID_BITS) - 1)) as u32,
                word_off: (w >> VERSION_BITS) & ((1 << WORD_OFF_BITS) - 1),
                version: (w & ((1 << VERSION_BITS) - 1)) as u32,
            }),
            POISON_TOP => Word::Poison(Poison {
                generation: (w >> 48) as u8,
                block: (w >> 16) & 0xffff_ffff,
                word_in_block: w as u16,
            }),
            _ => Word::Other(w),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_poison_round_trip_and_never_collide() {
        let d = DataTag { file_id: 4095, word_off: (1 << 20) - 1, version: 77 };
        assert_eq!(Word::decode(d.encode()), Word::Data(d));
        let p = Poison { generation: 3, block: 123_456, word_in_block: 511 };
        assert_eq!(Word::decode(p.encode()), Word::Poison(p));
        assert_eq!(Word::decode(0), Word::Zero);
        assert!(matches!(Word::decode(0xDA00_0000_0000_0000), Word::Other(_)), "version 0 is not data");
    }
}
