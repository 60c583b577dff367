//! CRC-16/CCITT-FALSE, the checksum of EMVCo QR payloads (data object 63).
//!
//! Polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR,
//! computed over the payload's UTF-8 bytes up to and including "6304".

/// Bytes of the CRC field's ID and length, which the checksum covers.
pub(crate) const CRC_HEADER: &str = "6304";

const TABLE: [u16; 256] = table();

const fn table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

/// CRC-16/CCITT-FALSE of `bytes`.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &byte in bytes {
        crc = (crc << 8) ^ TABLE[usize::from((crc >> 8) as u8 ^ byte)];
    }
    crc
}

/// The value of four hexadecimal digits (either case), if they are that.
pub(crate) fn parse_hex4(text: &[u8]) -> Option<u16> {
    if text.len() != 4 {
        return None;
    }
    let mut value: u16 = 0;
    for &byte in text {
        let digit = char::from(byte).to_digit(16)?;
        value = value << 4 | digit as u16;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_of_crc16_ccitt_false() {
        // The catalogue check value of CRC-16/CCITT-FALSE.
        assert_eq!(crc16(b"123456789"), 0x29B1);
        assert_eq!(crc16(b""), 0xFFFF);
    }

    #[test]
    fn table_matches_bitwise_computation() {
        fn bitwise(bytes: &[u8]) -> u16 {
            let mut crc: u16 = 0xFFFF;
            for &byte in bytes {
                crc ^= u16::from(byte) << 8;
                for _ in 0..8 {
                    crc = if crc & 0x8000 != 0 {
                        (crc << 1) ^ 0x1021
                    } else {
                        crc << 1
                    };
                }
            }
            crc
        }
        let text = "00020101021226580009SG.PAYNOW ไทย 中文 6304".as_bytes();
        for end in 0..text.len() {
            assert_eq!(crc16(&text[..end]), bitwise(&text[..end]));
        }
    }

    #[test]
    fn hex_digits_in_either_case() {
        assert_eq!(parse_hex4(b"1D3D"), Some(0x1D3D));
        assert_eq!(parse_hex4(b"1d3d"), Some(0x1D3D));
        assert_eq!(parse_hex4(b"1D3"), None);
        assert_eq!(parse_hex4(b"1D3G"), None);
        assert_eq!(parse_hex4(b"+D3D"), None);
    }
}
