//! The IDX format of the MNIST files: a big-endian header (magic `0x0000_08_0D`, where
//! `0x08` means u8 data and D the number of dimensions, then D sizes as u32), then the data.
//! Files may be plain or gzip-compressed (recognised by their first bytes, not their name).
//!
//! Nothing is allocated from an unchecked header: sizes are checked against [`MAX_IMAGE_SIDE`]
//! and [`MAX_ITEMS`] first, and the data is read only as far as the file really goes.

use std::io::Read;
use std::path::Path;

use crate::error::data_error;
use crate::{Error, Result, atomic_file};

/// The largest image side accepted (MNIST's is 28).
pub const MAX_IMAGE_SIDE: u32 = 4096;
/// The most items (images or labels) accepted in one file (MNIST has 70,000).
pub const MAX_ITEMS: u32 = 100_000_000;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Images as stored: `count` images of `rows × cols` u8 pixels, row-major, one after another.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Images {
    /// How many images.
    pub count: usize,
    /// Pixel rows per image (28 for MNIST).
    pub rows: usize,
    /// Pixel columns per image.
    pub cols: usize,
    /// `count × rows × cols` grey levels, 0 (background) to 255.
    pub pixels: Vec<u8>,
}

impl Images {
    /// `count` images of `rows × cols` pixels; `pixels` must hold `count × rows × cols`.
    pub fn new(count: usize, rows: usize, cols: usize, pixels: Vec<u8>) -> Result<Images> {
        if count.checked_mul(rows).and_then(|n| n.checked_mul(cols)) != Some(pixels.len()) {
            return Err(Error::shape(
                "Images::new",
                format!("{count} images of {rows}x{cols} pixels"),
                format!("{} pixels", pixels.len()),
            ));
        }
        Ok(Images { count, rows, cols, pixels })
    }
}

/// Reads an IDX3 image file (`magic 0x00000803`).
pub fn read_images(path: impl AsRef<Path>) -> Result<Images> {
    let path = path.as_ref();
    images_from(open(path)?, path)
}

/// Decodes IDX3 images held in memory (plain or gzip); errors name the source `name`.
pub fn decode_images(bytes: &[u8], name: impl AsRef<Path>) -> Result<Images> {
    images_from(sniff(bytes), name.as_ref())
}

fn images_from(mut reader: Box<dyn Read + '_>, path: &Path) -> Result<Images> {
    let bad = |problem: String| data_error(path, problem);
    let header = read_header(&mut reader, path, 3)?;
    let [count, rows, cols] = [header[0], header[1], header[2]];
    if rows == 0 || cols == 0 || rows > MAX_IMAGE_SIDE || cols > MAX_IMAGE_SIDE {
        return Err(bad(format!("absurd image size {rows}x{cols} (each side must be 1..={MAX_IMAGE_SIDE})")));
    }
    let pixels = read_exactly(&mut reader, path, count as u64 * rows as u64 * cols as u64, "pixel")?;
    Ok(Images { count: count as usize, rows: rows as usize, cols: cols as usize, pixels })
}

/// Reads an IDX1 label file (`magic 0x00000801`).
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    labels_from(open(path)?, path)
}

/// Decodes IDX1 labels held in memory (plain or gzip); errors name the source `name`.
pub fn decode_labels(bytes: &[u8], name: impl AsRef<Path>) -> Result<Vec<u8>> {
    labels_from(sniff(bytes), name.as_ref())
}

fn labels_from(mut reader: Box<dyn Read + '_>, path: &Path) -> Result<Vec<u8>> {
    let header = read_header(&mut reader, path, 1)?;
    read_exactly(&mut reader, path, u64::from(header[0]), "label")
}

/// Writes images as a plain IDX3 file (for tests and tools).
pub fn write_images(path: impl AsRef<Path>, images: &Images) -> Result<()> {
    let path = path.as_ref();
    let len = images.count.checked_mul(images.rows).and_then(|n| n.checked_mul(images.cols));
    if len != Some(images.pixels.len()) {
        let (count, rows, cols) = (images.count, images.rows, images.cols);
        let problem =
            format!("{count} images of {rows}x{cols} pixels, but {} pixels given", images.pixels.len());
        return Err(data_error(path, problem));
    }
    let mut bytes = idx_header(path, 3, &[images.count, images.rows, images.cols])?;
    bytes.extend_from_slice(&images.pixels);
    atomic_file::write(path, &bytes)
}

/// Writes labels as a plain IDX1 file.
pub fn write_labels(path: impl AsRef<Path>, labels: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let mut bytes = idx_header(path, 1, &[labels.len()])?;
    bytes.extend_from_slice(labels);
    atomic_file::write(path, &bytes)
}

/// IDX sizes are 32-bit: a larger one is an error, not a size written modulo 2^32.
fn idx_header(path: &Path, dims: u8, sizes: &[usize]) -> Result<Vec<u8>> {
    let mut bytes = vec![0, 0, 0x08, dims];
    for &size in sizes {
        let size = u32::try_from(size)
            .map_err(|_| data_error(path, format!("a size of {size} does not fit IDX's 32 bits")))?;
        bytes.extend_from_slice(&size.to_be_bytes());
    }
    Ok(bytes)
}

fn open(path: &Path) -> Result<Box<dyn Read>> {
    let mut file = std::fs::File::open(path).map_err(|e| data_error(path, format!("cannot open: {e}")))?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(|e| data_error(path, format!("cannot read: {e}")))?;
    let start = std::io::Cursor::new(magic[..n].to_vec()).chain(file);
    Ok(if n == 2 && magic == GZIP_MAGIC {
        Box::new(flate2::read::GzDecoder::new(start))
    } else {
        Box::new(start)
    })
}

fn sniff(bytes: &[u8]) -> Box<dyn Read + '_> {
    if bytes.starts_with(&GZIP_MAGIC) {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    }
}

/// Reads and checks the magic number and the `dims` sizes that follow it.
fn read_header(reader: &mut dyn Read, path: &Path, dims: u8) -> Result<Vec<u32>> {
    let mut magic = [0u8; 4];
    read_fully(reader, path, &mut magic, "the magic number")?;
    if magic != [0, 0, 0x08, dims] {
        return Err(data_error(
            path,
            format!(
                "wrong magic number {:#010x}: expected {:#010x} (u8 data, {dims} dimensions)",
                u32::from_be_bytes(magic),
                0x800 + u32::from(dims)
            ),
        ));
    }
    let mut sizes = Vec::new();
    for _ in 0..dims {
        let mut size = [0u8; 4];
        read_fully(reader, path, &mut size, "the header")?;
        sizes.push(u32::from_be_bytes(size));
    }
    if sizes[0] > MAX_ITEMS {
        return Err(data_error(path, format!("absurd item count {} (at most {MAX_ITEMS})", sizes[0])));
    }
    Ok(sizes)
}

fn read_fully(reader: &mut dyn Read, path: &Path, buffer: &mut [u8], what: &str) -> Result<()> {
    reader.read_exact(buffer).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => data_error(path, format!("truncated in {what}")),
        _ => data_error(path, format!("cannot read {what}: {e}")),
    })
}

/// Reads exactly `len` bytes, growing the buffer only as data arrives, and fails if the file
/// holds fewer or more.
fn read_exactly(reader: &mut dyn Read, path: &Path, len: u64, what: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    reader
        .take(len + 1)
        .read_to_end(&mut data)
        .map_err(|e| data_error(path, format!("cannot read {what} data: {e}")))?;
    match (data.len() as u64).cmp(&len) {
        std::cmp::Ordering::Less => Err(data_error(
            path,
            format!("truncated: the header promises {len} {what} bytes, the file holds {}", data.len()),
        )),
        std::cmp::Ordering::Greater => {
            Err(data_error(path, format!("more data than the header's {len} {what} bytes")))
        }
        std::cmp::Ordering::Equal => Ok(data),
    }
}
