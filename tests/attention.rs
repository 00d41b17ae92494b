//! The shared attention: cross-attention, masks and probabilities on request.
mod common;
use candle_core::{DType, Device, Tensor};
use tessera::nn::{
    causal_mask, padding_mask, Attention, AttnConfig, AttnNames, Ctx, ParamStore, QkvNames, Trace,
};

/// 16 wide, 4 heads, q/k/v bias, attention dropout `p`.
fn cfg(p: f64) -> AttnConfig {
    AttnConfig {
        dim: 16,
        heads: 4,
        qkv_bias: true,
        attn_dropout: p,
        proj_dropout: 0.0,
        kv_dim: None,
        inner: None,
    }
}

/// The three q/k/v layouts: PyTorch `in_proj_weight`, timm `qkv`, HF/CLIP separate linears.
const LAYOUTS: [AttnNames; 3] = [
    AttnNames {
        qkv: QkvNames::TorchInProj,
        out: "out_proj",
    },
    AttnNames {
        qkv: QkvNames::FusedLinear("qkv"),
        out: "proj",
    },
    AttnNames {
        qkv: QkvNames::Separate {
            q: "q",
            k: "k",
            v: "v",
        },
        out: "o",
    },
];

fn attn(names: AttnNames) -> Attention {
    let store = ParamStore::fresh(3, false, &Device::Cpu);
    Attention::new(store.var_builder(DType::F32), names, &cfg(0.0)).unwrap()
}

use common::max_abs_diff as diff;

#[test]
fn cross_attention_on_itself_is_self_attention_in_every_layout() {
    let x = Tensor::randn(0f32, 1.0, (2, 5, 16), &Device::Cpu).unwrap();
    for names in LAYOUTS {
        let a = attn(names);
        let s = a.forward(&x, None, None, None, &mut Ctx::eval()).unwrap();
        let c = a
            .forward(&x, Some(&x), None, None, &mut Ctx::eval())
            .unwrap();
        assert!(diff(&s, &c) < 1e-6, "{names:?}");
    }
}

#[test]
fn cross_attention_to_a_longer_context_and_probabilities() {
    let a = attn(AttnNames {
        qkv: QkvNames::Separate {
            q: "q",
            k: "k",
            v: "v",
        },
        out: "o",
    });
    let x = Tensor::randn(0f32, 1.0, (2, 3, 16), &Device::Cpu).unwrap();
    let ctx = Tensor::randn(0f32, 1.0, (2, 7, 16), &Device::Cpu).unwrap();
    let mut trace = Trace::default();
    let y = a
        .forward(
            &x,
            Some(&ctx),
            None,
            None,
            &mut Ctx::eval().with_trace(&mut trace),
        )
        .unwrap();
    assert_eq!(y.dims(), &[2, 3, 16]);
    assert_eq!(trace.attentions[0].dims(), &[2, 4, 3, 7]);
    // Permuting the context permutes nothing in the output: attention is a set operation.
    let perm = Tensor::new(&[6u32, 5, 4, 3, 2, 1, 0], &Device::Cpu).unwrap();
    let y2 = a
        .forward(
            &x,
            Some(&ctx.index_select(&perm, 1).unwrap()),
            None,
            None,
            &mut Ctx::eval(),
        )
        .unwrap();
    assert!(diff(&y, &y2) < 1e-5);
}

#[test]
fn causal_and_padding_masks_hide_what_they_should() {
    let a = attn(AttnNames {
        qkv: QkvNames::TorchInProj,
        out: "out_proj",
    });
    let x = Tensor::randn(0f32, 1.0, (1, 6, 16), &Device::Cpu).unwrap();
    let m = causal_mask(6, DType::F32, &Device::Cpu).unwrap();
    let y = a
        .forward(&x, None, Some(&m), None, &mut Ctx::eval())
        .unwrap();
    // Changing token 5 leaves positions 0..5 unchanged under a causal mask.
    let x2 = Tensor::cat(
        &[
            x.narrow(1, 0, 5).unwrap(),
            Tensor::ones((1, 1, 16), DType::F32, &Device::Cpu).unwrap(),
        ],
        1,
    )
    .unwrap();
    let y2 = a
        .forward(&x2, None, Some(&m), None, &mut Ctx::eval())
        .unwrap();
    assert!(diff(&y.narrow(1, 0, 5).unwrap(), &y2.narrow(1, 0, 5).unwrap()) < 1e-6);
    assert!(diff(&y.narrow(1, 5, 1).unwrap(), &y2.narrow(1, 5, 1).unwrap()) > 1e-3);
    // A padding mask that drops the last two tokens makes them irrelevant to everyone.
    let keep = Tensor::new(&[[1f32, 1., 1., 1., 0., 0.]], &Device::Cpu).unwrap();
    let pm = padding_mask(&keep, DType::F32).unwrap();
    let mut trace = Trace::default();
    let p1 = a
        .forward(
            &x,
            None,
            Some(&pm),
            None,
            &mut Ctx::eval().with_trace(&mut trace),
        )
        .unwrap();
    let probs = trace.attentions[0].narrow(3, 4, 2).unwrap();
    assert!(
        probs
            .abs()
            .unwrap()
            .max_keepdim(3)
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            < 1e-6
    );
    let p2 = a
        .forward(&x2, None, Some(&pm), None, &mut Ctx::eval())
        .unwrap();
    assert!(diff(&p1.narrow(1, 0, 4).unwrap(), &p2.narrow(1, 0, 4).unwrap()) < 1e-6);
}

/// The fused trainable attention (CPU f32) against the composite ops (a trace forces them):
/// outputs and gradients with respect to the input and every weight, with a causal + padding
/// mask, in every q/k/v layout.
#[test]
fn fused_attention_gradients_match_composite() {
    let dev = Device::Cpu;
    for names in LAYOUTS {
        let store = ParamStore::fresh(5, true, &dev);
        let a = Attention::new(store.var_builder(DType::F32), names, &cfg(0.0)).unwrap();
        let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 7, 16), &dev).unwrap())
            .unwrap();
        let keep = Tensor::new(
            &[[1f32, 1., 1., 1., 1., 0., 0.], [1., 1., 1., 1., 1., 1., 1.]],
            &dev,
        )
        .unwrap();
        let mask = causal_mask(7, DType::F32, &dev)
            .unwrap()
            .reshape((1, 1, 7, 7))
            .unwrap()
            .broadcast_add(&padding_mask(&keep, DType::F32).unwrap())
            .unwrap();
        let mix = Tensor::randn(0f32, 1.0, (2, 7, 16), &dev).unwrap();
        let run = |fused: bool| {
            let mut trace = Trace::default();
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
            let mut ctx = if fused {
                Ctx::train(&mut rng)
            } else {
                Ctx::train(&mut rng).with_trace(&mut trace)
            };
            let y = a
                .forward(x.as_tensor(), None, Some(&mask), None, &mut ctx)
                .unwrap();
            let grads = (&y * &mix).unwrap().sum_all().unwrap().backward().unwrap();
            let mut g = vec![grads.get(x.as_tensor()).unwrap().clone()];
            for (name, v) in store.vars() {
                g.push(
                    grads
                        .get(v.as_tensor())
                        .unwrap_or_else(|| panic!("{name}: no gradient"))
                        .clone(),
                );
            }
            (y, g)
        };
        let (y1, g1) = run(true);
        let (y2, g2) = run(false);
        assert!(diff(&y1, &y2) < 1e-5, "{names:?}: outputs differ");
        for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
            assert!(
                diff(a, b) < 1e-4,
                "{names:?}: gradient {i} differs by {}",
                diff(a, b)
            );
        }
    }
}

/// With attention dropout the backward regenerates the forward's mask: the analytic gradient
/// equals a finite difference of the (seeded, so deterministic) forward.
#[test]
fn fused_attention_dropout_gradient_is_consistent() {
    let dev = Device::Cpu;
    let store = ParamStore::fresh(6, true, &dev);
    let names = AttnNames {
        qkv: QkvNames::TorchInProj,
        out: "out_proj",
    };
    let a = Attention::new(store.var_builder(DType::F32), names, &cfg(0.3)).unwrap();
    let x0: Vec<f32> = Tensor::randn(0f32, 1.0, 2 * 6 * 16, &dev)
        .unwrap()
        .to_vec1()
        .unwrap();
    let mix = Tensor::randn(0f32, 1.0, (2, 6, 16), &dev).unwrap();
    let loss = |x: &Tensor| {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(9);
        let y = a
            .forward(x, None, None, None, &mut Ctx::train(&mut rng))
            .unwrap();
        (&y * &mix).unwrap().sum_all().unwrap()
    };
    let x = candle_core::Var::from_vec(x0.clone(), (2, 6, 16), &dev).unwrap();
    let l = loss(x.as_tensor());
    let g: Vec<f32> = l
        .backward()
        .unwrap()
        .get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    // Dropout really drops something: the loss differs from the no-dropout forward.
    let eval = a
        .forward(
            &Tensor::from_vec(x0.clone(), (2, 6, 16), &dev).unwrap(),
            None,
            None,
            None,
            &mut Ctx::eval(),
        )
        .unwrap();
    let l_eval = (&eval * &mix)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((l.to_scalar::<f32>().unwrap() - l_eval).abs() > 1e-3);
    let eps = 1e-2f32;
    let mut worst = 0f32;
    for i in (0..x0.len()).step_by(7) {
        let at = |d: f32| {
            let mut v = x0.clone();
            v[i] += d;
            loss(&Tensor::from_vec(v, (2, 6, 16), &dev).unwrap())
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let num = ((at(eps) - at(-eps)) / (2.0 * eps as f64)) as f32;
        worst = worst.max((num - g[i]).abs());
    }
    assert!(
        worst < 5e-3,
        "finite difference vs analytic gradient: {worst}"
    );
}

/// A block whose MLP is frozen but whose attention trains: an eval forward must keep the
/// differentiable path (the gradient-free fused path would drop the attention's gradients).
#[test]
fn partly_frozen_block_keeps_its_gradients_in_eval() {
    use tessera::nn::{Activation, BlockConfig, BlockNames, EncoderBlock};
    let dev = Device::Cpu;
    let store = ParamStore::fresh(2, true, &dev).with_frozen(vec!["linear".into()]);
    let cfg = BlockConfig {
        dim: 16,
        heads: 4,
        mlp_dim: 32,
        act: Activation::Gelu,
        pre_norm: true,
        eps: 1e-5,
        qkv_bias: true,
        dropout: 0.0,
        mlp_dropout: 0.0,
        attn_dropout: 0.0,
    };
    let block = EncoderBlock::new(store.var_builder(DType::F32), &BlockNames::TORCH, &cfg).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 5, 16), &dev).unwrap();
    let y = block.forward(&x, None, &mut Ctx::eval()).unwrap();
    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let trainable: Vec<_> = store.vars();
    assert!(!trainable.is_empty());
    for (name, v) in trainable {
        assert!(grads.get(v.as_tensor()).is_some(), "{name}: no gradient");
    }
    // With nothing trainable the same eval forward takes the fused path and agrees.
    let frozen = ParamStore::fresh(2, false, &dev);
    let b2 = EncoderBlock::new(frozen.var_builder(DType::F32), &BlockNames::TORCH, &cfg).unwrap();
    let y2 = b2.forward(&x, None, &mut Ctx::eval()).unwrap();
    assert!(diff(&y, &y2) < 1e-5);
}

/// Each module picks its own path: a frozen attention fed a constant input may take the
/// gradient-free kernels, but a residual that tracks a gradient keeps its gradient through the
/// out projection's residual add.
#[test]
fn a_tracked_residual_keeps_its_gradient() {
    let dev = Device::Cpu;
    let a = attn(LAYOUTS[2]);
    let x = Tensor::randn(0f32, 1.0, (2, 5, 16), &dev).unwrap();
    let r = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 5, 16), &dev).unwrap())
        .unwrap();
    let y = a
        .forward(&x, None, None, Some(r.as_tensor()), &mut Ctx::eval())
        .unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let gr = g.get(r.as_tensor()).expect("the residual's gradient");
    // d(sum(r + f(x))) / dr = 1 everywhere.
    assert!(diff(gr, &gr.ones_like().unwrap()) < 1e-6);
    // The same output as the inference path's fused residual add.
    let y_inf = a
        .forward(&x, None, None, Some(r.as_tensor()), &mut Ctx::inference())
        .unwrap();
    assert!(diff(&y, &y_inf) < 1e-5);
}

/// The padding mask is what its doc says: 0 where kept, `-f32::MAX` (finite, as transformers'
/// `finfo.min`) where padded, so a query whose keys are all padding gets finite outputs on every
/// path (an infinite mask would give NaN).
#[test]
fn padding_mask_is_finite_and_all_padding_is_not_nan() {
    let dev = Device::Cpu;
    let keep = Tensor::new(&[[1f32, 0.], [0., 0.]], &dev).unwrap();
    let m = padding_mask(&keep, DType::F32).unwrap();
    assert_eq!(m.dims(), &[2, 1, 1, 2]);
    let v: Vec<f32> = m.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(v, vec![0.0, -f32::MAX, -f32::MAX, -f32::MAX]);
    let a = attn(LAYOUTS[2]);
    let x = Tensor::randn(0f32, 1.0, (2, 2, 16), &dev).unwrap();
    let mut trace = Trace::default();
    for ctx in [
        Ctx::inference(),
        Ctx::eval(),
        Ctx::eval().with_trace(&mut trace),
    ] {
        let mut ctx = ctx;
        let y = a.forward(&x, None, Some(&m), None, &mut ctx).unwrap();
        let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert!(y.iter().all(|v| v.is_finite()), "{y:?}");
    }
}
