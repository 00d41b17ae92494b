//! ImageFolder: one sub-folder per class, PNG/JPEG files inside.
use super::InMemory;
use crate::{Error, Result};
use std::path::Path;

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// Reads `root/<class>/*.{png,jpg,jpeg}`; classes sorted by name (as torchvision). Every image
/// is decoded, converted to `channels` and resized to `size`×`size`. A corrupt image is an error
/// naming the file.
pub fn image_folder(root: &Path, channels: usize, size: usize) -> Result<InMemory> {
    let mut classes: Vec<String> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
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
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        files.sort();
        for f in files {
            let img = crate::image::open(&f)?;
            pixels.extend(crate::image::to_chw(&img, size, channels)?);
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
        dims: (channels, size, size),
        classes,
    })
}
