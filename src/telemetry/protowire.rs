//! Protocol Buffers' wire format, written straight into a byte buffer: just what OTLP's
//! trace messages need (varints, fixed64/32, length-delimited fields), so that a span is
//! encoded without first being built as a message of its own.

/// A field's wire type.
#[derive(Clone, Copy)]
enum WireType {
    Varint = 0,
    Fixed64 = 1,
    Len = 2,
    Fixed32 = 5,
}

#[inline]
pub(crate) fn varint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    let mut bytes = [0u8; 10];
    let len = varint_into(&mut bytes, v);
    out.extend_from_slice(&bytes[..len]);
}

/// `v` as a varint at the start of `bytes`; returns its length.
#[inline]
pub(crate) fn varint_into(bytes: &mut [u8; 10], mut v: u64) -> usize {
    let mut len = 0;
    while v >= 0x80 {
        bytes[len] = (v as u8) | 0x80;
        v >>= 7;
        len += 1;
    }
    bytes[len] = v as u8;
    len + 1
}

/// How many bytes `varint` writes for `v`.
#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
fn tag(out: &mut Vec<u8>, field: u32, wire: WireType) {
    varint(out, u64::from(field << 3 | wire as u32));
}

/// A length-delimited field whose content is `bytes`: a string, bytes, or a message encoded
/// already.
#[inline]
pub(crate) fn bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    tag(out, field, WireType::Len);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Only the tag and length of a length-delimited field of `len` bytes, its content to follow.
#[inline]
pub(crate) fn len_prefix(out: &mut Vec<u8>, field: u32, len: usize) {
    tag(out, field, WireType::Len);
    varint(out, len as u64);
}

/// The bytes `len_prefix` writes for `field` (< 16) and `len`, plus `len` itself.
#[inline]
pub(crate) fn len_field_size(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

#[inline]
pub(crate) fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, WireType::Varint);
    varint(out, v);
}

/// An `int64` (a negative one takes ten bytes, as protobuf says).
#[inline]
pub(crate) fn int(out: &mut Vec<u8>, field: u32, v: i64) {
    uint(out, field, v as u64);
}

#[inline]
pub(crate) fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, WireType::Fixed64);
    out.extend_from_slice(&v.to_le_bytes());
}

#[inline]
pub(crate) fn fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    tag(out, field, WireType::Fixed32);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A message field whose content `write` appends; its length is known only once written, so
/// the content goes through `scratch` (cleared first) and is copied once.
#[inline]
pub(crate) fn message(out: &mut Vec<u8>, field: u32, scratch: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    scratch.clear();
    write(scratch);
    bytes(out, field, scratch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_as_protobuf_writes_them() {
        for (v, expected) in [
            (0u64, &[0u8][..]),
            (1, &[1]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (u64::MAX, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        ] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out, expected, "{v}");
            assert_eq!(varint_len(v), expected.len(), "{v}");
        }
    }
}
