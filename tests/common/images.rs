//! Image files made by the tests (valid, bombs, truncated, with EXIF thumbnails): nothing is a
//! committed blob.
#![allow(dead_code)]
use mozjpeg::ColorSpaceExt;

pub fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    out.extend(kind);
    out.extend(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend(crc.sum().to_be_bytes());
}

/// A PNG whose header declares `w`×`h` 8-bit RGB, with a (tiny, compressed) IDAT of zeros.
pub fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut f = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    png_chunk(&mut f, b"IHDR", &ihdr);
    let mut z = flate2::write::ZlibEncoder::new(vec![], flate2::Compression::best());
    std::io::Write::write_all(&mut z, &vec![0u8; 4096]).unwrap();
    png_chunk(&mut f, b"IDAT", &z.finish().unwrap());
    png_chunk(&mut f, b"IEND", &[]);
    f
}

pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, (x * y) as u8]));
    let mut out = std::io::Cursor::new(vec![]);
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A baseline JPEG of noisy pixels (noise keeps the scan long) via libjpeg.
pub fn jpeg(w: usize, h: usize, space: mozjpeg::ColorSpace, seed: u32) -> Vec<u8> {
    let n = space.num_components();
    let mut s = seed;
    let px: Vec<u8> = (0..w * h * n)
        .map(|i| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((s >> 24) as u8) / 2 + (i % 97) as u8
        })
        .collect();
    let mut c = mozjpeg::Compress::new(space);
    c.set_size(w, h);
    c.set_quality(90.0);
    let mut c = c.start_compress(vec![]).unwrap();
    c.write_scanlines(&px).unwrap();
    c.finish().unwrap()
}

/// Offset of the first marker among `ms` (FF m) after SOI, walking segments by length.
pub fn segment(f: &[u8], ms: &[u8]) -> usize {
    let mut i = 2;
    while !ms.contains(&f[i + 1]) {
        i += 2 + u16::from_be_bytes([f[i + 2], f[i + 3]]) as usize;
    }
    i
}

/// The frame header (baseline or progressive: mozjpeg writes progressive by default).
pub fn sof(f: &[u8]) -> usize {
    segment(f, &[0xC0, 0xC2])
}

/// A minimal EXIF APP1 (orientation 1 in IFD0, the thumbnail in IFD1) carrying `thumb`.
pub fn exif_app1(thumb: &[u8]) -> Vec<u8> {
    let mut t = b"II*\x00\x08\x00\x00\x00".to_vec();
    let entry = |t: &mut Vec<u8>, tag: u16, typ: u16, val: u32| {
        t.extend(tag.to_le_bytes());
        t.extend(typ.to_le_bytes());
        t.extend(1u32.to_le_bytes());
        t.extend(val.to_le_bytes());
    };
    // IFD0 at 8: one entry, then the offset of IFD1 (8 + 2 + 12 + 4 = 26).
    t.extend(1u16.to_le_bytes());
    entry(&mut t, 0x0112, 3, 1);
    t.extend(26u32.to_le_bytes());
    // IFD1 at 26: two entries (JPEGInterchangeFormat, ...Length), no next IFD; data at 56.
    t.extend(2u16.to_le_bytes());
    entry(&mut t, 0x0201, 4, 56);
    entry(&mut t, 0x0202, 4, thumb.len() as u32);
    t.extend(0u32.to_le_bytes());
    assert_eq!(t.len(), 56);
    t.extend(thumb);
    let mut seg = vec![0xFF, 0xE1];
    seg.extend(((2 + 6 + t.len()) as u16).to_be_bytes());
    seg.extend(b"Exif\x00\x00");
    seg.extend(t);
    seg
}

/// A phone-style JPEG: `main` with an EXIF APP1 whose thumbnail has its own end-of-image marker.
pub fn phone_jpeg(w: usize, h: usize) -> Vec<u8> {
    let main = jpeg(w, h, mozjpeg::ColorSpace::JCS_RGB, 7);
    let thumb = jpeg(16, 12, mozjpeg::ColorSpace::JCS_RGB, 9);
    let mut phone = main[..2].to_vec();
    phone.extend(exif_app1(&thumb));
    phone.extend(&main[2..]);
    phone
}
