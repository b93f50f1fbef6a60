//! Reading images: decoding with limits (a decompression bomb is an error, not an out-of-memory
//! kill) and EXIF orientation applied, so that phone photos come out upright and every
//! coordinate the analyzer returns refers to the upright image.

use std::io::{BufRead, Cursor, Seek};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::{Error, Result};

/// Bounds on what decoding an image may cost. The defaults accept any photo a camera makes
/// (up to 16384 pixels a side, 512 MiB of decoded pixels) and refuse crafted headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted width, in pixels.
    pub max_width: u32,
    /// Largest accepted height, in pixels.
    pub max_height: u32,
    /// Largest allocation the decoder may make, in bytes (the decoded pixels included).
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_width: 16384,
            max_height: 16384,
            max_alloc: 512 << 20,
        }
    }
}

impl DecodeLimits {
    fn to_image_limits(self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_width);
        limits.max_image_height = Some(self.max_height);
        limits.max_alloc = Some(self.max_alloc);
        limits
    }
}

/// Reads and decodes an image file with [`DecodeLimits::default`]; see [`load_image_with`].
pub fn load_image(path: impl AsRef<Path>) -> Result<DynamicImage> {
    load_image_with(path, &DecodeLimits::default())
}

/// Reads and decodes an image file, guessing its format from its content (not its extension),
/// refusing images beyond `limits`, and applying its EXIF orientation (JPEG, TIFF, WebP): the
/// result is the upright image. Errors name the file.
pub fn load_image_with(path: impl AsRef<Path>, limits: &DecodeLimits) -> Result<DynamicImage> {
    let path = path.as_ref();
    let err = |reason: String| Error::ImageFile {
        path: path.to_path_buf(),
        reason,
    };
    let reader = ImageReader::open(path).map_err(|e| err(e.to_string()))?;
    decode(reader, limits).map_err(err)
}

/// Decodes an image held in memory; see [`load_image_with`]. Errors say `<memory>` for the file.
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<DynamicImage> {
    decode(ImageReader::new(Cursor::new(bytes)), limits).map_err(|reason| Error::ImageFile {
        path: "<memory>".into(),
        reason,
    })
}

fn decode<R: BufRead + Seek>(
    reader: ImageReader<R>,
    limits: &DecodeLimits,
) -> std::result::Result<DynamicImage, String> {
    let mut reader = reader.with_guessed_format().map_err(|e| e.to_string())?;
    reader.limits(limits.to_image_limits());
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    // A broken EXIF block is no reason to refuse the pixels: the image stays as stored.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    img.apply_orientation(orientation);
    Ok(img)
}
