//! Where an image comes from: a file, bytes in memory, or an http(s) URL.
use crate::{Error, Result};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Downloads larger than this are refused (a photo is a few MB).
const MAX_DOWNLOAD: u64 = 64 << 20;

#[derive(Clone, Debug)]
pub enum ImageSource {
    Path(PathBuf),
    Bytes(Vec<u8>),
    Url(String),
}

impl ImageSource {
    /// `http(s)://…` is a URL, anything else a path (file names need not be UTF-8).
    pub fn parse(s: impl AsRef<std::ffi::OsStr>) -> ImageSource {
        let s = s.as_ref();
        match s.to_str() {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                ImageSource::Url(u.to_string())
            }
            _ => ImageSource::Path(PathBuf::from(s)),
        }
    }

    /// A display name (lossy for non-UTF-8 paths).
    pub fn name(&self) -> String {
        match self {
            ImageSource::Path(p) => p.display().to_string(),
            ImageSource::Bytes(_) => "<bytes>".into(),
            ImageSource::Url(u) => u.clone(),
        }
    }

    /// Decodes the image (EXIF orientation applied); a failed download is a clear error.
    pub fn load(&self) -> Result<image::DynamicImage> {
        match self {
            ImageSource::Path(p) => crate::image::open(p),
            ImageSource::Bytes(b) => crate::image::decode(b, Path::new("<bytes>")),
            ImageSource::Url(u) => crate::image::decode(&self.bytes()?, Path::new(u)),
        }
    }

    /// The encoded bytes: the file's, the given ones, or the download's (at most 64 MB).
    pub fn bytes(&self) -> Result<Vec<u8>> {
        match self {
            ImageSource::Path(p) => std::fs::read(p).map_err(|e| Error::io(p, e)),
            ImageSource::Bytes(b) => Ok(b.clone()),
            ImageSource::Url(u) => {
                let resp = ureq::get(u)
                    .timeout(std::time::Duration::from_secs(30))
                    .call()
                    .map_err(|e| Error::Msg(format!("{u}: cannot download the image: {e}")))?;
                let mut bytes = vec![];
                resp.into_reader()
                    .take(MAX_DOWNLOAD + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| Error::Msg(format!("{u}: download failed: {e}")))?;
                if bytes.len() as u64 > MAX_DOWNLOAD {
                    return Err(Error::Msg(format!(
                        "{u}: larger than {} MB, not downloaded",
                        MAX_DOWNLOAD >> 20
                    )));
                }
                Ok(bytes)
            }
        }
    }
}

impl From<&Path> for ImageSource {
    fn from(p: &Path) -> Self {
        ImageSource::Path(p.to_path_buf())
    }
}

impl From<PathBuf> for ImageSource {
    fn from(p: PathBuf) -> Self {
        ImageSource::Path(p)
    }
}
