//! What tracing costs: the seed ViT (cifar preset, batch 64) eval forward without a trace, with
//! a trace (attention maps and hidden states kept), and with gradient probes + backward.
use candle_core::{DType, Device, Tensor};
use std::time::Instant;
use tessera::models::vit::{VisionTransformer, VitConfig};
use tessera::nn::{Ctx, ParamStore, Trace};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let dev = Device::Cpu;
    let store = ParamStore::fresh(0, false, &dev);
    let model = VisionTransformer::new(
        store.var_builder(DType::F32),
        &VitConfig::preset("cifar").unwrap(),
    )
    .unwrap();
    let x = Tensor::randn(0f32, 1.0, (64, 3, 32, 32), &dev).unwrap();
    let time = |f: &dyn Fn()| {
        f();
        median(
            (0..9)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        )
    };
    let plain = time(&|| {
        model.forward(&x, &mut Ctx::eval()).unwrap();
    });
    let traced = time(&|| {
        let mut t = Trace::default();
        model
            .forward(&x, &mut Ctx::eval().with_trace(&mut t))
            .unwrap();
    });
    let grads = time(&|| {
        let mut t = Trace::with_gradients();
        let l = model
            .forward(&x, &mut Ctx::eval().with_trace(&mut t))
            .unwrap();
        l.sum_all().unwrap().backward().unwrap();
    });
    println!(
        "seed ViT cifar b64 forward: plain {:.1} ms, traced {:.1} ms ({:+.1}%), probes+backward {:.1} ms",
        plain * 1e3,
        traced * 1e3,
        100.0 * (traced / plain - 1.0),
        grads * 1e3
    );
}
