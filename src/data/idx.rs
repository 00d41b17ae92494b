//! The IDX format (MNIST, Fashion-MNIST), gzip-compressed as Debian ships it.
use super::InMemory;
use crate::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Where Debian's `dataset-fashion-mnist` puts the files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

fn read_gz(path: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|e| {
        Error::data(
            path,
            format!("{e} (install it with `apt-get install dataset-fashion-mnist`)"),
        )
    })?;
    let mut out = vec![];
    flate2::read::GzDecoder::new(f)
        .read_to_end(&mut out)
        .map_err(|e| Error::data(path, format!("corrupt gzip: {e}")))?;
    Ok(out)
}

fn be32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// Parses IDX images (magic 0x00000803): returns (count, rows, cols, bytes).
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<(usize, usize, usize, Vec<u8>)> {
    if bytes.len() < 16 || be32(bytes, 0) != 0x0803 {
        return Err(Error::data(
            path,
            "not an IDX image file (bad magic number)",
        ));
    }
    let (n, r, c) = (be32(bytes, 4), be32(bytes, 8), be32(bytes, 12));
    let need = n
        .checked_mul(r)
        .and_then(|v| v.checked_mul(c))
        .and_then(|v| v.checked_add(16));
    if need != Some(bytes.len()) {
        return Err(Error::data(
            path,
            format!(
                "truncated: header says {n}x{r}x{c} images, file has {} bytes",
                bytes.len()
            ),
        ));
    }
    Ok((n, r, c, bytes[16..].to_vec()))
}

/// Parses IDX labels (magic 0x00000801).
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    if bytes.len() < 8 || be32(bytes, 0) != 0x0801 {
        return Err(Error::data(
            path,
            "not an IDX label file (bad magic number)",
        ));
    }
    let n = be32(bytes, 4);
    if bytes.len() != 8 + n {
        return Err(Error::data(
            path,
            format!(
                "truncated: header says {n} labels, file has {} bytes",
                bytes.len()
            ),
        ));
    }
    Ok(bytes[8..].to_vec())
}

fn split(dir: &Path, prefix: &str) -> Result<InMemory> {
    let ip = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
    let lp = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    let (n, r, c, px) = parse_images(&read_gz(&ip)?, &ip)?;
    let labels = parse_labels(&read_gz(&lp)?, &lp)?;
    if labels.len() != n {
        return Err(Error::data(
            &lp,
            format!("{} labels for {n} images", labels.len()),
        ));
    }
    if let Some(bad) = labels.iter().find(|&&l| l >= 10) {
        return Err(Error::data(&lp, format!("label {bad} out of range 0..10")));
    }
    Ok(InMemory {
        name: format!("fashion-mnist-{prefix}"),
        pixels: px.into_iter().map(|v| v as f32 / 255.0).collect(),
        labels: labels.into_iter().map(u32::from).collect(),
        dims: (1, r, c),
        classes: FASHION_CLASSES.iter().map(|s| s.to_string()).collect(),
    })
}

/// Fashion-MNIST (train 60k, test 10k) from `dir`.
pub fn fashion_mnist(dir: &Path) -> Result<(InMemory, InMemory)> {
    Ok((split(dir, "train")?, split(dir, "t10k")?))
}
