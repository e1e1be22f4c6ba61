//! The canonical byte encoder used for entries and checkpoints.
//!
//! All integers are big-endian; variable-length fields carry a 32-bit
//! big-endian length prefix. See `docs/audit-log.md` for the full layout.

/// Builds canonical bytes field by field.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer with room for `n` bytes.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }

    /// One byte.
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Two bytes, big-endian.
    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Eight bytes, big-endian.
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Eight bytes, big-endian two's complement.
    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Bytes without a length prefix (fixed-size fields).
    pub(crate) fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// u32 big-endian length, then the bytes.
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        // Lengths are bounded far below u32::MAX by validation before encoding.
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(v);
    }

    /// A UTF-8 string, length-prefixed like [`Writer::bytes`].
    pub(crate) fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    /// 0x00 for none, or 0x01 then the string.
    pub(crate) fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }

    /// 0x00 for none, or 0x01 then the length-prefixed bytes.
    pub(crate) fn opt_bytes(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.u8(0),
            Some(b) => {
                self.u8(1);
                self.bytes(b);
            }
        }
    }

    /// u32 big-endian count, then each string.
    pub(crate) fn list(&mut self, v: &[String]) {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        for s in v {
            self.str(s);
        }
    }

    /// The encoded bytes.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}
