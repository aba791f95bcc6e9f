//! The Internet checksum (RFC 1071) used by IPv4 and UDP headers.

/// Adds `data` to a running ones'-complement sum (not yet folded).
#[inline]
pub fn accumulate(mut sum: u64, data: &[u8]) -> u64 {
    // Eight bytes at a time as two big-endian 32-bit words: carries collect in the upper bits
    // of the u64 and are folded once at the end.
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        sum += u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64;
        sum += u32::from_be_bytes([c[4], c[5], c[6], c[7]]) as u64;
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        sum += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = rest.remainder() {
        sum += (*last as u64) << 8;
    }
    sum
}

/// Folds a running sum to 16 bits and complements it: the value to store in a header.
#[inline]
pub fn finish(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Checksum of one buffer.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(accumulate(0, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example bytes: sum is 0xddf2, checksum its complement.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(checksum(&[0xab]), checksum(&[0xab, 0x00]));
        assert_eq!(checksum(&[1, 2, 3, 4, 5, 6, 7, 8, 9]), checksum(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0]));
    }
}
