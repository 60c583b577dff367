//! Fuzz the wire decoder: `check` and `decode` on arbitrary bytes must never
//! panic, must agree with each other, and whatever decodes must re-encode to
//! exactly the bytes it came from.
//!
//! Arbitrary bytes rarely get past the header checksum, so each input is
//! also tried as a body behind a valid header: the first byte picks the
//! message kind, the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payrail_api::wire::{self, kinds, Check, WireLimits};

fn decode_and_compare(bytes: &[u8]) {
    let limits = WireLimits::default();
    let checked = wire::check(bytes, &limits);
    let decoded = wire::decode(bytes, &limits);
    match (&checked, &decoded) {
        (Ok(Check::Incomplete { needed }), Ok(None)) => assert!(*needed > bytes.len()),
        (Ok(Check::Complete { frame_len }), Ok(Some((frame, used)))) => {
            assert_eq!(frame_len, used);
            let mut again = Vec::new();
            let encoded = wire::encode(frame.request_id, &frame.message, &mut again);
            assert!(encoded.is_ok(), "{encoded:?}");
            assert_eq!(&again[..], &bytes[..*used], "encoding is not canonical");
        }
        (Ok(Check::Complete { .. }), Err(error)) => assert!(!error.is_header_error(), "{error}"),
        (Err(check_error), Err(decode_error)) => {
            assert_eq!(check_error, decode_error);
            assert!(check_error.is_header_error());
        }
        other => panic!("check and decode disagree: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    decode_and_compare(data);

    if let Some((&selector, body)) = data.split_first() {
        let kind = kinds::ALL[usize::from(selector) % kinds::ALL.len()];
        let mut frame = Vec::with_capacity(wire::HEADER_LEN + body.len());
        if wire::encode_raw(u64::from(selector), kind, body, &mut frame).is_ok() {
            decode_and_compare(&frame);
        }
    }
});
