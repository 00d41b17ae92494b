//! Pillow's resize reproduced bit for bit (fixtures from tools/gen_pil_fixtures.py: crops of
//! scikit-image's chelsea (RGB) and camera (grey) resized by Pillow with every filter).
mod common;
use common::{fixture, load};
use tessera::image::resize::{resize_u8, Filter};

#[test]
fn every_filter_and_size_equals_pillow() {
    let t = load(&fixture("pil_resize").join("resize.safetensors"));
    let mut checked = 0;
    for name in ["chelsea_rgb", "camera_l"] {
        let src = &t[&format!("{name}/src")];
        let dims = src.dims().to_vec();
        let (h, w, c) = (dims[0], dims[1], if dims.len() == 3 { dims[2] } else { 1 });
        let src = src.flatten_all().unwrap().to_vec1::<u8>().unwrap();
        for f in 0..6u32 {
            for (ow, oh) in [
                (24, 20),
                (31, 37),
                (128, 96),
                (97, 13),
                (100, 40),
                (40, 100),
            ] {
                let want = t[&format!("{name}/{f}/{ow}x{oh}")]
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<u8>()
                    .unwrap();
                let got = resize_u8(&src, w, h, c, ow, oh, Filter::from_pil(f).unwrap());
                let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
                let max = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (*a as i32 - *b as i32).abs())
                    .max()
                    .unwrap_or(0);
                assert_eq!(
                    diff,
                    0,
                    "{name} filter {f} to {ow}x{oh}: {diff} of {} values differ (max {max})",
                    want.len()
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 72);
}
