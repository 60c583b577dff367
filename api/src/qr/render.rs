//! A payload drawn as a QR code in a terminal, two modules per character
//! with Unicode half blocks (▀ ▄ █), quiet zone included.

use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};

use super::error::QrError;
use super::PAYLOAD_CHARS_MAX;

/// The QR code symbol of `payload` (its UTF-8 bytes, error correction level
/// M) as lines of text. With `invert` false, dark modules are drawn as block
/// characters, for dark text on a light background; set it for a terminal
/// with light text on a dark background.
pub fn render_terminal(payload: &str, invert: bool) -> Result<String, QrError> {
    let len = payload.chars().count();
    if len > PAYLOAD_CHARS_MAX {
        return Err(QrError::PayloadTooLong {
            len,
            max: PAYLOAD_CHARS_MAX,
        });
    }
    let code = QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M)
        .map_err(|_| QrError::Unrenderable)?;
    let mut renderer = code.render::<Dense1x2>();
    renderer.quiet_zone(true);
    if invert {
        renderer
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark);
    }
    Ok(renderer.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_half_block_lines_of_the_symbol_size() {
        let payload = "00020101021126580014br.gov.bcb.pix0136123e4567-e12b-12d1-a456-4266554400005204000053039865802BR5913Fulano de Tal6008BRASILIA62070503***63041D3D";
        let code = QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M).unwrap();
        let side = code.width() + 8; // 4 modules of quiet zone on each side
        let text = render_terminal(payload, false).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), side.div_ceil(2));
        assert!(lines.iter().all(|line| line.chars().count() == side));
        assert!(text
            .chars()
            .all(|c| matches!(c, ' ' | '\u{2580}' | '\u{2584}' | '\u{2588}' | '\n')));
        let inverted = render_terminal(payload, true).unwrap();
        assert_ne!(text, inverted);
        assert_eq!(inverted.lines().count(), lines.len());
    }

    #[test]
    fn longest_payload_still_fits_a_symbol() {
        // 512 three-byte characters: 1,536 bytes, within version 40-M.
        let payload = "中".repeat(PAYLOAD_CHARS_MAX);
        assert!(render_terminal(&payload, false).is_ok());
        let too_long = "a".repeat(PAYLOAD_CHARS_MAX + 1);
        assert_eq!(
            render_terminal(&too_long, false),
            Err(QrError::PayloadTooLong {
                len: PAYLOAD_CHARS_MAX + 1,
                max: PAYLOAD_CHARS_MAX
            })
        );
    }
}
