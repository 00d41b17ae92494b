//! Datasets and batching.
//!
//! A [`Dataset`] hands out images as CHW floats in [0, 1] with a class index; [`Loader`] turns
//! it into shuffled (seeded), augmented, normalised batches.
pub mod caption_scenes;
pub mod coco;
pub mod detection_scenes;
mod digits;
mod folder;
mod idx;
pub mod localisation;
pub mod parquet;
pub mod shape_scenes;
pub mod vqa_scenes;

pub use digits::digits;
pub use folder::{image_folder, image_folder_processed, image_folder_with};
pub use idx::{fashion_mnist, FASHION_MNIST_DIR};

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A labelled image dataset.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// (channels, height, width) of every item.
    fn dims(&self) -> (usize, usize, usize);
    fn class_names(&self) -> &[String];
    /// Writes item `i` (CHW in [0, 1]) into `out` and returns its class.
    fn item(&self, i: usize, out: &mut [f32]) -> Result<u32>;
    fn label(&self, i: usize) -> u32;
}

/// A pixel value of a dataset buffer; items come out as f32 in [0, 1].
pub trait Pixel: Copy + Send + Sync + std::fmt::Debug {
    fn unit(self) -> f32;
}

impl Pixel for f32 {
    fn unit(self) -> f32 {
        self
    }
}

impl Pixel for u8 {
    fn unit(self) -> f32 {
        self as f32 / 255.0
    }
}

/// Labelled images held in memory, CHW per item.
#[derive(Clone, Debug)]
pub struct Images<P> {
    pub name: String,
    pub pixels: Vec<P>,
    pub labels: Vec<u32>,
    pub dims: (usize, usize, usize),
    pub classes: Vec<String>,
}

/// Floats in [0, 1]: the embedded digits, Fashion-MNIST, a decoded ImageFolder.
pub type InMemory = Images<f32>;

/// Processed uint8 images, a quarter of the memory of floats: what HF processors produce
/// before rescaling.
pub type U8Images = Images<u8>;

impl<P: Pixel> Images<P> {
    fn item_len(&self) -> usize {
        self.dims.0 * self.dims.1 * self.dims.2
    }

    /// (train, test): 80/20, stratified by class, fixed (seed 0).
    pub fn split_80_20(&self) -> (Self, Self) {
        let (tr, te) = stratified_split(&self.labels, 0.2, 0);
        (self.subset(&tr, "train"), self.subset(&te, "test"))
    }

    /// The subset at `idx` (used for splits).
    pub fn subset(&self, idx: &[usize], name: &str) -> Self {
        let n = self.item_len();
        let mut pixels = Vec::with_capacity(idx.len() * n);
        for &i in idx {
            pixels.extend_from_slice(&self.pixels[i * n..(i + 1) * n]);
        }
        Images {
            name: name.to_string(),
            pixels,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            dims: self.dims,
            classes: self.classes.clone(),
        }
    }
}

impl InMemory {
    /// Resizes every image to `size`×`size` (bilinear, PyTorch `align_corners=False`) and
    /// converts the channel count (grey <-> RGB) to `channels`.
    pub fn adapt(mut self, channels: usize, size: usize) -> Result<InMemory> {
        let (c, h, w) = self.dims;
        if c != channels {
            if !(c == 1 && channels == 3 || c == 3 && channels == 1) {
                return Err(Error::data(
                    &self.name,
                    format!("cannot convert {c} channels to {channels}"),
                ));
            }
            let plane = h * w;
            let n = (self.labels.len() * channels) as u64 * plane as u64;
            crate::util::check_alloc(
                n.saturating_mul(4),
                &format!("{} in {channels} channels", self.name),
            )?;
            let mut out = Vec::with_capacity(self.labels.len() * channels * plane);
            for img in self.pixels.chunks_exact(c * plane) {
                if channels == 3 {
                    for _ in 0..3 {
                        out.extend_from_slice(img);
                    }
                } else {
                    // ITU-R 601 luma, as PIL's convert("L")
                    out.extend((0..plane).map(|i| {
                        0.299 * img[i] + 0.587 * img[plane + i] + 0.114 * img[2 * plane + i]
                    }));
                }
            }
            self.pixels = out;
            self.dims = (channels, h, w);
        }
        if h != size || w != size {
            let n = ((self.labels.len() * channels) as u64).saturating_mul((size as u64).pow(2));
            crate::util::check_alloc(
                n.saturating_mul(4),
                &format!("{} at {size}x{size}", self.name),
            )?;
            let mut out = Vec::with_capacity(self.labels.len() * channels * size * size);
            for plane in self.pixels.chunks_exact(h * w) {
                out.extend(crate::nn::interpolate::bilinear(plane, h, w, size, size));
            }
            self.pixels = out;
            self.dims = (channels, size, size);
        }
        Ok(self)
    }
}

impl<P: Pixel> Dataset for Images<P> {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn dims(&self) -> (usize, usize, usize) {
        self.dims
    }
    fn class_names(&self) -> &[String] {
        &self.classes
    }
    fn item(&self, i: usize, out: &mut [f32]) -> Result<u32> {
        let n = self.item_len();
        for (o, p) in out.iter_mut().zip(&self.pixels[i * n..(i + 1) * n]) {
            *o = p.unit();
        }
        Ok(self.labels[i])
    }
    fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }
}

/// `img` through an HF image processor as CHW uint8 of the model's `size` (height, width);
/// another output size is an error.
pub(crate) fn processed_chw(
    processor: &crate::image::ProcessorConfig,
    img: &image::DynamicImage,
    size: (u32, u32),
) -> Result<Vec<u8>> {
    let (px, ph, pw) = processor.pixels_u8(img)?;
    if (ph, pw) != size {
        return Err(Error::Shape(format!(
            "processor gave {ph}x{pw}, the model takes {}x{}",
            size.0, size.1
        )));
    }
    Ok(crate::image::hwc_to_chw(&px, 3, |_, v| v))
}

/// Split indices per class so train and test keep the class proportions; fixed by `seed`.
pub fn stratified_split(labels: &[u32], test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut train, mut test) = (vec![], vec![]);
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] as usize == c)
            .collect();
        idx.shuffle(&mut rng);
        let n_test = (idx.len() as f64 * test_fraction).round() as usize;
        test.extend_from_slice(&idx[..n_test]);
        train.extend_from_slice(&idx[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// Training-time augmentation on [0, 1] images.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Random translation by up to this many pixels in each direction (zero fill).
    pub max_shift: usize,
    /// Random horizontal flip with probability 1/2.
    pub hflip: bool,
}

impl Augment {
    pub fn is_none(&self) -> bool {
        self.max_shift == 0 && !self.hflip
    }

    fn apply(&self, img: &mut [f32], dims: (usize, usize, usize), rng: &mut ChaCha8Rng) {
        let (c, h, w) = dims;
        let s = self.max_shift as i64;
        let (dy, dx) = if s > 0 {
            (rng.random_range(-s..=s), rng.random_range(-s..=s))
        } else {
            (0, 0)
        };
        let flip = self.hflip && rng.random::<bool>();
        if dy == 0 && dx == 0 && !flip {
            return;
        }
        let src = img.to_vec();
        for ch in 0..c {
            for y in 0..h as i64 {
                for x in 0..w as i64 {
                    let sy = y - dy;
                    let sx0 = x - dx;
                    let sx = if flip { w as i64 - 1 - sx0 } else { sx0 };
                    let v = if sy >= 0 && sy < h as i64 && sx >= 0 && sx < w as i64 {
                        src[ch * h * w + (sy as usize) * w + sx as usize]
                    } else {
                        0.0
                    };
                    img[ch * h * w + (y as usize) * w + x as usize] = v;
                }
            }
        }
    }
}

/// Normalisation applied to [0, 1] pixels: `(x - mean[c]) / std[c]`.
#[derive(Clone, Debug)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// Batches over a dataset: seeded shuffling per epoch, augmentation, normalisation.
pub struct Loader<'a> {
    pub dataset: &'a dyn Dataset,
    pub batch_size: usize,
    pub normalize: Normalize,
    pub augment: Augment,
    pub seed: u64,
}

/// One batch: images `[B, C, H, W]`, labels `[B]` (u32).
pub struct Batch {
    pub images: Tensor,
    pub labels: Tensor,
    pub len: usize,
}

impl<'a> Loader<'a> {
    /// Item order of `epoch`: a permutation fixed by (seed, epoch), or 0..n without shuffling.
    pub fn order(&self, epoch: usize, shuffle: bool) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.dataset.len()).collect();
        if shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ (0x5eed_0000 + epoch as u64));
            idx.shuffle(&mut rng);
        }
        idx
    }

    pub fn num_batches(&self) -> usize {
        self.dataset.len().div_ceil(self.batch_size.max(1))
    }

    /// Builds the batch of `idx`; augmentation (when `train`) is seeded per (seed, epoch, item),
    /// so a resumed run, or the same batch split across threads, sees exactly the same pixels.
    pub fn batch(
        &self,
        idx: &[usize],
        train: bool,
        epoch: usize,
        device: &Device,
    ) -> Result<Batch> {
        let dims = self.dataset.dims();
        let n = dims.0 * dims.1 * dims.2;
        let mut pixels = vec![0f32; idx.len() * n];
        let mut labels = Vec::with_capacity(idx.len());
        for (k, &i) in idx.iter().enumerate() {
            let out = &mut pixels[k * n..(k + 1) * n];
            labels.push(self.dataset.item(i, out)?);
            if train && !self.augment.is_none() {
                let key = self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    ^ ((epoch as u64) << 40)
                    ^ i as u64;
                self.augment
                    .apply(out, dims, &mut ChaCha8Rng::seed_from_u64(key));
            }
        }
        for img in pixels.chunks_exact_mut(n) {
            crate::image::normalize(img, &self.normalize.mean, &self.normalize.std);
        }
        Ok(Batch {
            images: Tensor::from_vec(pixels, (idx.len(), dims.0, dims.1, dims.2), device)?,
            labels: Tensor::new(labels, device)?,
            len: idx.len(),
        })
    }
}

/// Refuses splits no classifier can learn or be measured on: fewer than two classes, or an
/// empty train or test split.
pub fn check_splits<P: Pixel>(train: &Images<P>, test: &Images<P>) -> Result<()> {
    if train.classes.len() < 2 {
        return Err(Error::data(
            &train.name,
            format!(
                "{} class ({}): a classifier needs at least two",
                train.classes.len(),
                train.classes.join(", ")
            ),
        ));
    }
    for (split, d) in [("train", train), ("test", test)] {
        if d.labels.is_empty() {
            return Err(Error::data(
                &d.name,
                format!("the {split} split has no images (too few per class to split 80/20?)"),
            ));
        }
    }
    Ok(())
}

/// An ImageFolder's (train, test): its `train/` and `test/` folders (the same classes), or the
/// one folder split 80/20 stratified (seed 0); `read` reads one folder.
fn folder_splits<P: Pixel>(
    root: &std::path::Path,
    read: impl Fn(&std::path::Path) -> Result<Images<P>>,
) -> Result<(Images<P>, Images<P>)> {
    if root.join("train").is_dir() && root.join("test").is_dir() {
        let train = read(&root.join("train"))?;
        let test = read(&root.join("test"))?;
        if train.classes != test.classes {
            return Err(Error::data(
                root,
                "train/ and test/ have different class folders",
            ));
        }
        return Ok((train, test));
    }
    Ok(read(root)?.split_80_20())
}

/// A dataset for an HF image model, put through its `processor` into uint8 images of `size`
/// (height, width): an HF parquet dataset directory (`train-*.parquet` and `test-*.parquet`,
/// else `validation-*`, else an 80/20 stratified split of train; class names from the files'
/// metadata or `labels`), or an ImageFolder (`train/` and `test/` with the same classes, or one
/// folder split 80/20 stratified). Returns (train, test).
pub fn processed_splits(
    root: &std::path::Path,
    processor: &crate::image::ProcessorConfig,
    size: (u32, u32),
    labels: Option<&[String]>,
) -> Result<(U8Images, U8Images)> {
    let (train, test) = if parquet::is_parquet_dataset(root) {
        let train_files = parquet::split_files(root, "train")?;
        let mut test_files = parquet::split_files(root, "test")?;
        if test_files.is_empty() {
            test_files = parquet::split_files(root, "validation")?;
        }
        let train = parquet::read_split(&train_files, processor, size, labels)?;
        if test_files.is_empty() {
            train.split_80_20()
        } else {
            let test = parquet::read_split(&test_files, processor, size, Some(&train.classes))?;
            (train, test)
        }
    } else {
        folder_splits(root, |d| image_folder_processed(d, processor, size))?
    };
    check_splits(&train, &test)?;
    Ok((train, test))
}

/// Looks a dataset up by name: `digits` (embedded), `fashion-mnist` (Debian package), or a
/// directory laid out as ImageFolder (with `train/` and `test/` sub-folders, or one folder
/// split 80/20 stratified). Returns (train, test).
pub fn by_name(name: &str, channels: usize, size: usize) -> Result<(InMemory, InMemory)> {
    let (train, test) = match name {
        "digits" => {
            let all = digits()?;
            let (tr, te) = stratified_split(&all.labels, 0.2, 0);
            (
                all.subset(&tr, "digits-train"),
                all.subset(&te, "digits-test"),
            )
        }
        "fashion-mnist" | "fashion_mnist" | "fmnist" => {
            fashion_mnist(std::path::Path::new(FASHION_MNIST_DIR))?
        }
        dir => {
            let root = std::path::Path::new(dir);
            if !root.is_dir() {
                return Err(Error::data(
                    root,
                    "unknown dataset: not `digits`, `fashion-mnist` or an existing directory",
                ));
            }
            folder_splits(root, |d| image_folder(d, channels, size))?
        }
    };
    check_splits(&train, &test)?;
    Ok((train.adapt(channels, size)?, test.adapt(channels, size)?))
}
