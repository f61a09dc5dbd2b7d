//! Avatars (DESIGN.md §8): an uploaded image made into a square 256×256 JPEG thumbnail by the `image` crate. The
//! thumbnail is encoded from decoded pixels, so nothing of the original's metadata (EXIF, GPS, ICC, XMP,
//! comments) survives; the EXIF orientation is applied first, so a phone photo stands the right way up.

use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, Rgb, RgbImage};

/// The side of an avatar thumbnail, in pixels.
pub const AVATAR_SIZE: u32 = 256;
/// JPEG quality of a thumbnail (1–100).
const QUALITY: u8 = 85;
/// Largest image side decoded: a 10 MiB upload of a larger image is a decompression bomb, not a photo.
const MAX_SIDE: u32 = 16_384;
/// Most memory one decode may take (a 16384×16384 RGBA image would need 1 GiB).
const MAX_ALLOC: u64 = 256 * 1024 * 1024;

/// Decodes the image at `path` (JPEG, PNG, GIF or WebP: the first frame), turns it by its EXIF orientation,
/// crops it to its central square, scales it to [`AVATAR_SIZE`] and encodes it as JPEG over a white background.
/// Fails when the bytes do not decode within the limits above.
pub fn thumbnail(path: &Path) -> Result<Vec<u8>, image::ImageError> {
    let mut reader = ImageReader::open(path)?.with_guessed_format()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder()?;
    let orientation = decoder.orientation()?;
    let mut image = DynamicImage::from_decoder(decoder)?;
    image.apply_orientation(orientation);
    // The central square first, then the scaling: scaling first (`resize_to_fill`) would blow a 16384×1 image up
    // to 4,194,304×256 pixels (4 GiB) before cutting it down.
    let side = image.width().min(image.height());
    let square = image.crop_imm((image.width() - side) / 2, (image.height() - side) / 2, side, side);
    let square = square.resize_exact(AVATAR_SIZE, AVATAR_SIZE, image::imageops::FilterType::Triangle);
    let rgba = square.to_rgba8();
    // Transparent parts over white (JPEG has no alpha; dropping it would show whatever colour they hide).
    let flat = RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = u16::from(p[3]);
        let blend = |c: u8| ((u16::from(c) * a + 255 * (255 - a)) / 255) as u8;
        Rgb([blend(p[0]), blend(p[1]), blend(p[2])])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, QUALITY).encode_image(&flat)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_transparent_png_becomes_a_white_backed_square_jpeg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.png");
        let img = image::RgbaImage::from_fn(600, 300, |x, _| image::Rgba([255, 0, 0, if x < 300 { 0 } else { 255 }]));
        img.save(&path).unwrap();
        let jpeg = thumbnail(&path).unwrap();
        let back = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (AVATAR_SIZE, AVATAR_SIZE));
        let left = back.to_rgb8().get_pixel(10, 128).0;
        assert!(left.iter().all(|c| *c > 240), "transparent becomes white: {left:?}");
    }

    /// Found by a hostile run: a 109-byte 10000×1 PNG took 19 s and 2 GiB, scaled before it was cropped.
    #[test]
    fn an_image_of_extreme_proportions_is_cropped_before_it_is_scaled() {
        let dir = tempfile::tempdir().unwrap();
        for (w, h) in [(16_384, 1), (1, 16_384), (3, 9_000)] {
            let path = dir.path().join(format!("{w}x{h}.png"));
            image::GrayImage::from_pixel(w, h, image::Luma([200])).save(&path).unwrap();
            let started = std::time::Instant::now();
            let back = image::load_from_memory(&thumbnail(&path).unwrap()).unwrap();
            assert_eq!((back.width(), back.height()), (AVATAR_SIZE, AVATAR_SIZE));
            assert!(started.elapsed() < std::time::Duration::from_secs(2), "{w}×{h} took {:?}", started.elapsed());
        }
    }

    #[test]
    fn bytes_that_are_no_image_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        std::fs::write(&path, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        assert!(thumbnail(&path).is_err());
    }
}
