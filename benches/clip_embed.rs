//! CLIP ViT-B/32 (random init, full size) embedding throughput at batch 8: images, and texts at
//! 77 and 16 tokens. `tools/bench.sh` runs PyTorch on the same workloads in the same run.
use candle_core::{DType, Device, Tensor};
use std::time::Instant;
use tessera::models::clip::{Clip, ClipConfig};
use tessera::nn::{Ctx, ParamStore};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let reps: usize = std::env::var("BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dev = Device::Cpu;
    let store = ParamStore::fresh(0, false, &dev);
    let model = Clip::new(store.var_builder(DType::F32), &ClipConfig::default()).unwrap();
    let b = 8;
    let px = Tensor::randn(0f32, 1.0, (b, 3, 224, 224), &dev).unwrap();
    let ids = |t: usize| {
        let mut v = vec![];
        for i in 0..b {
            let mut row: Vec<u32> = (0..t as u32)
                .map(|j| 400 + (i as u32 * 31 + j * 7) % 40000)
                .collect();
            row[0] = 49406;
            row[t - 1] = 49407;
            v.push(row);
        }
        Tensor::new(v, &dev).unwrap()
    };
    let (ids77, ids16) = (ids(77), ids(16));
    let ti = time(reps, || {
        model.image_embeds(&px, &mut Ctx::eval()).unwrap();
    });
    let t77 = time(reps, || {
        model.text_embeds(&ids77, None, &mut Ctx::eval()).unwrap();
    });
    let t16 = time(reps, || {
        model.text_embeds(&ids16, None, &mut Ctx::eval()).unwrap();
    });
    println!(
        "CLIP B/32 image b8: {:.1} img/s; text b8 77 tok: {:.1} texts/s; 16 tok: {:.1} texts/s",
        b as f64 / ti,
        b as f64 / t77,
        b as f64 / t16
    );
    println!(
        "{}",
        serde_json::json!({"image_per_s": b as f64 / ti, "text77_per_s": b as f64 / t77, "text16_per_s": b as f64 / t16})
    );
}
