//! The building blocks of the compact fuzz encodings: a two-byte header (a magic byte naming
//! the format, then its version), single bytes, and unsigned LEB128 varints, read back by a
//! [`Reader`] that checks every length against what is left and rejects trailing bytes.
//!
//! Nothing here allocates by a decoded number: a [`Reader`] only borrows the input, and a
//! caller grows its vectors one decoded element at a time, each under its own bound.

/// Why bytes are not a compact input. Never a panic: any byte string decodes to a workload or
/// to one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The first byte is not the format's magic (so the bytes are something else, such as the
    /// generator's raw bytes).
    #[error("not a compact input: first byte {found:#04x}, the format's magic is {magic:#04x}")]
    BadMagic {
        /// The input's first byte (0 for an empty input).
        found: u8,
        /// The format's magic byte.
        magic: u8,
    },
    /// The magic matched but the format version is not the one this build reads.
    #[error("compact format version {found}: this build reads version {supported}")]
    Version {
        /// The version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The input ends inside a field.
    #[error("compact input ends inside a field at byte {at}")]
    Truncated {
        /// The offset where a field was cut.
        at: usize,
    },
    /// A varint runs past 64 bits or has a redundant trailing zero group.
    #[error("compact input: bad varint at byte {at}")]
    BadVarint {
        /// The varint's first byte.
        at: usize,
    },
    /// Bytes left after the last field.
    #[error("compact input: {count} bytes after the last field")]
    Trailing {
        /// How many.
        count: usize,
    },
    /// A field's value is out of its range.
    #[error("compact input: {what} {value} at byte {at} is out of range (max {max})")]
    OutOfRange {
        /// What the field is.
        what: &'static str,
        /// Its value.
        value: u64,
        /// Its largest allowed value.
        max: u64,
        /// Its offset.
        at: usize,
    },
    /// Every field decoded but the workload breaks a rule of its language.
    #[error("compact input decodes to an invalid workload: {0}")]
    Invalid(String),
}

/// Appends fields to a compact encoding.
#[derive(Debug, Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// A writer that starts with the header `magic`, `version`.
    pub fn with_header(magic: u8, version: u8) -> Writer {
        Writer { bytes: vec![magic, version] }
    }

    /// Appends one byte.
    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    /// Appends an unsigned LEB128 varint (1 byte below 128, at most 10).
    pub fn varint(&mut self, mut value: u64) {
        loop {
            let low = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.bytes.push(low);
                return;
            }
            self.bytes.push(low | 0x80);
        }
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// The encoding.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads fields of a compact encoding, front to back.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader past the header, or why the header is not `magic`, `version`.
    pub fn with_header(bytes: &'a [u8], magic: u8, version: u8) -> Result<Reader<'a>, CodecError> {
        let found = bytes.first().copied().unwrap_or(0);
        if found != magic {
            return Err(CodecError::BadMagic { found, magic });
        }
        let mut r = Reader { bytes, pos: 1 };
        let found = r.u8()?;
        if found != version {
            return Err(CodecError::Version { found, supported: version });
        }
        Ok(r)
    }

    /// The offset of the next field.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The next byte.
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        let b = *self.bytes.get(self.pos).ok_or(CodecError::Truncated { at: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    /// The next byte, at most `max`.
    pub fn u8_max(&mut self, what: &'static str, max: u8) -> Result<u8, CodecError> {
        let at = self.pos;
        let b = self.u8()?;
        if b > max {
            return Err(CodecError::OutOfRange { what, value: u64::from(b), max: u64::from(max), at });
        }
        Ok(b)
    }

    /// The next varint (canonical: no redundant trailing zero group, at most 64 bits).
    pub fn varint(&mut self) -> Result<u64, CodecError> {
        let at = self.pos;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let group = u64::from(b & 0x7f);
            if shift == 63 && group > 1 {
                return Err(CodecError::BadVarint { at });
            }
            value |= group << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    return Err(CodecError::BadVarint { at });
                }
                return Ok(value);
            }
        }
        Err(CodecError::BadVarint { at })
    }

    /// The next varint, at most `max`.
    pub fn varint_max(&mut self, what: &'static str, max: u64) -> Result<u64, CodecError> {
        let at = self.pos;
        let value = self.varint()?;
        if value > max {
            return Err(CodecError::OutOfRange { what, value, max, at });
        }
        Ok(value)
    }

    /// The next `len` bytes, borrowed (checked against what is left before anything is used).
    pub fn bytes(&mut self, len: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(len).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(CodecError::Truncated { at: self.bytes.len() })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// Ok when every byte was read.
    pub fn finish(self) -> Result<(), CodecError> {
        match self.bytes.len() - self.pos {
            0 => Ok(()),
            count => Err(CodecError::Trailing { count }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(values: &[u64]) -> Vec<u8> {
        let mut w = Writer::with_header(0xab, 3);
        for &v in values {
            w.varint(v);
        }
        w.finish()
    }

    #[test]
    fn varints_round_trip_at_their_edges() {
        let values = [0, 1, 127, 128, 16383, 16384, u64::from(u32::MAX), u64::MAX - 1, u64::MAX];
        let bytes = encoded(&values);
        let mut r = Reader::with_header(&bytes, 0xab, 3).unwrap();
        for &v in &values {
            assert_eq!(r.varint(), Ok(v));
        }
        r.finish().unwrap();
    }

    #[test]
    fn bad_headers_varints_and_lengths_are_typed_errors() {
        assert_eq!(Reader::with_header(&[], 1, 1).unwrap_err(), CodecError::BadMagic { found: 0, magic: 1 });
        assert_eq!(Reader::with_header(&[1], 1, 1).unwrap_err(), CodecError::Truncated { at: 1 });
        assert_eq!(
            Reader::with_header(&[1, 2], 1, 1).unwrap_err(),
            CodecError::Version { found: 2, supported: 1 }
        );
        let mut r = Reader::with_header(&[1, 1, 0x80, 0x00], 1, 1).unwrap();
        assert_eq!(r.varint(), Err(CodecError::BadVarint { at: 2 }), "overlong zero group");
        let eleven = [[1u8, 1].as_slice(), &[0xff; 10], &[0x01]].concat();
        assert_eq!(
            Reader::with_header(&eleven, 1, 1).unwrap().varint(),
            Err(CodecError::BadVarint { at: 2 })
        );
        let mut r = Reader::with_header(&[1, 1, 5, 9], 1, 1).unwrap();
        assert_eq!(r.varint_max("x", 4), Err(CodecError::OutOfRange { what: "x", value: 5, max: 4, at: 2 }));
        assert_eq!(r.bytes(usize::MAX), Err(CodecError::Truncated { at: 4 }));
        assert_eq!(r.finish(), Err(CodecError::Trailing { count: 1 }));
    }
}
