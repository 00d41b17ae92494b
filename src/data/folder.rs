//! ImageFolder: one sub-folder per class, PNG/JPEG files inside.
use super::InMemory;
use crate::{Error, Result};
use std::path::Path;

/// Reads `root/<class>/*.{png,jpg,jpeg}`; classes sorted by name (as torchvision). Every image
/// is decoded, converted to `channels` and resized to `size`×`size`. A corrupt image is an error
/// naming the file.
pub fn image_folder(root: &Path, channels: usize, size: usize) -> Result<InMemory> {
    image_folder_with(root, (channels, size, size), |img| {
        crate::image::to_chw(img, size, channels)
    })
}

/// ImageFolder through an HF image processor: Pillow-exact resize/crop, kept as uint8
/// (normalisation happens per batch).
pub fn image_folder_processed(
    root: &Path,
    processor: &crate::image::ProcessorConfig,
    size: (u32, u32),
) -> Result<super::U8Images> {
    let (h, w) = (size.0 as usize, size.1 as usize);
    let mut pixels: Vec<u8> = vec![];
    let f = image_folder_with(root, (0, 0, 0), |img| {
        pixels.extend(super::processed_chw(processor, img, size)?);
        Ok(vec![])
    })?;
    Ok(super::U8Images {
        name: f.name,
        pixels,
        labels: f.labels,
        dims: (3, h, w),
        classes: f.classes,
    })
}

/// ImageFolder with a custom decoder-to-CHW step producing `dims` per image.
pub fn image_folder_with(
    root: &Path,
    dims: (usize, usize, usize),
    mut to_chw: impl FnMut(&image::DynamicImage) -> Result<Vec<f32>>,
) -> Result<InMemory> {
    // Hidden folders (`.ipynb_checkpoints`, `.git`) are not classes, as in HF `imagefolder`.
    let mut classes: Vec<String> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    classes.sort();
    if classes.is_empty() {
        return Err(Error::data(
            root,
            "no class sub-folders (expected root/<class>/<image>)",
        ));
    }
    let (mut pixels, mut labels) = (vec![], vec![]);
    for (ci, class) in classes.iter().enumerate() {
        let dir = root.join(class);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && crate::image::is_image_path(p))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::data(
                &dir,
                "class folder holds no PNG/JPEG images (remove it, or add images)",
            ));
        }
        for f in files {
            let img = crate::image::open(&f)?;
            let chw = to_chw(&img).map_err(|e| Error::data(&f, e.to_string()))?;
            pixels.extend(chw);
            labels.push(ci as u32);
        }
    }
    if labels.is_empty() {
        return Err(Error::data(root, "no PNG/JPEG images found"));
    }
    Ok(InMemory {
        name: root.display().to_string(),
        pixels,
        labels,
        dims,
        classes,
    })
}
