//! Reading ID-length-value data objects, counting characters, not bytes.
//!
//! Every data object is a two-digit ID, a two-digit length from 01 to 99 and
//! a value of that many characters. Lengths count Unicode scalar values, so a
//! merchant name in Thai or Chinese is as long as it looks, however many UTF-8
//! bytes it takes. IDs and lengths are ASCII digits, so the four header bytes
//! always end on a character boundary and slicing after them is safe.

use super::error::QrError;

/// One data object as read from the payload.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field<'a> {
    pub tag: u8,
    pub value: &'a str,
    /// Character position of the object's ID in the whole payload.
    pub at: usize,
}

/// Reads consecutive data objects from `text`, whose first character is
/// character `base` of the whole payload.
pub(crate) struct Fields<'a> {
    text: &'a str,
    /// Byte offset of the next object in `text`.
    byte: usize,
    /// Character position of the next object in the whole payload.
    at: usize,
}

impl<'a> Fields<'a> {
    pub fn new(text: &'a str, base: usize) -> Fields<'a> {
        Fields {
            text,
            byte: 0,
            at: base,
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, QrError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.text.get(self.byte..)?;
        if rest.is_empty() {
            return None;
        }
        let result = read_field(rest, self.at);
        match result {
            Ok((field, bytes, chars)) => {
                self.byte += bytes;
                self.at += chars;
                Some(Ok(field))
            }
            Err(error) => {
                // A malformed object ends the walk: nothing after it can be
                // framed reliably.
                self.byte = self.text.len();
                Some(Err(error))
            }
        }
    }
}

/// Reads the object at the start of `rest` (which starts at character `at`);
/// returns it and the bytes and characters it takes.
fn read_field(rest: &str, at: usize) -> Result<(Field<'_>, usize, usize), QrError> {
    let bytes = rest.as_bytes();
    let (Some(&id_high), Some(&id_low)) = (bytes.first(), bytes.get(1)) else {
        return Err(QrError::Truncated { at });
    };
    let tag = two_digits(id_high, id_low).ok_or(QrError::NonDigitId { at })?;
    let (Some(&length_high), Some(&length_low)) = (bytes.get(2), bytes.get(3)) else {
        return Err(QrError::Truncated { at });
    };
    let length = two_digits(length_high, length_low).ok_or(QrError::BadLength { tag, at })?;
    if length == 0 {
        return Err(QrError::BadLength { tag, at });
    }
    // The four header bytes are ASCII digits, so byte 4 starts a character.
    let after_header = rest.get(4..).ok_or(QrError::Truncated { at })?;
    let value_bytes =
        byte_length_of_chars(after_header, usize::from(length)).ok_or(QrError::Truncated { at })?;
    let value = after_header
        .get(..value_bytes)
        .ok_or(QrError::Truncated { at })?;
    Ok((
        Field { tag, value, at },
        4 + value_bytes,
        4 + usize::from(length),
    ))
}

fn two_digits(high: u8, low: u8) -> Option<u8> {
    if high.is_ascii_digit() && low.is_ascii_digit() {
        Some((high - b'0') * 10 + (low - b'0'))
    } else {
        None
    }
}

/// Bytes taken by the first `count` characters of `text`, if it has that many.
pub(crate) fn byte_length_of_chars(text: &str, count: usize) -> Option<usize> {
    if count == 0 {
        return Some(0);
    }
    let (index, last) = text.char_indices().nth(count - 1)?;
    Some(index + last.len_utf8())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str) -> Vec<Result<(u8, String, usize), QrError>> {
        Fields::new(text, 10)
            .map(|field| field.map(|f| (f.tag, f.value.to_owned(), f.at)))
            .collect()
    }

    #[test]
    fn lengths_count_characters() {
        assert_eq!(
            read_all("5903ไทย6002北京"),
            vec![
                Ok((59, "ไทย".to_owned(), 10)),
                Ok((60, "北京".to_owned(), 17))
            ]
        );
    }

    #[test]
    fn malformed_headers_are_precise() {
        assert_eq!(read_all("5"), vec![Err(QrError::Truncated { at: 10 })]);
        assert_eq!(
            read_all("5x02ab"),
            vec![Err(QrError::NonDigitId { at: 10 })]
        );
        assert_eq!(read_all("590"), vec![Err(QrError::Truncated { at: 10 })]);
        assert_eq!(
            read_all("59x2ab"),
            vec![Err(QrError::BadLength { tag: 59, at: 10 })]
        );
        assert_eq!(
            read_all("5900"),
            vec![Err(QrError::BadLength { tag: 59, at: 10 })]
        );
        assert_eq!(read_all("5903ab"), vec![Err(QrError::Truncated { at: 10 })]);
        assert_eq!(
            read_all("5902ab5x"),
            vec![
                Ok((59, "ab".to_owned(), 10)),
                Err(QrError::NonDigitId { at: 16 })
            ]
        );
        assert_eq!(
            read_all("é902ab"),
            vec![Err(QrError::NonDigitId { at: 10 })]
        );
        assert_eq!(
            read_all("59é2ab"),
            vec![Err(QrError::BadLength { tag: 59, at: 10 })]
        );
    }
}
