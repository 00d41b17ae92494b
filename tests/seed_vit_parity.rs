//! The seed ViT against the PyTorch reference (fixtures from tools/gen_fixtures.py).
mod common;
use candle_core::{DType, Device, Tensor};
use common::{fixture, load, max_abs_diff};
use rand::SeedableRng;
use tessera::models::vit::{VisionTransformer, VitConfig};
use tessera::nn::{Ctx, ParamStore};
use tessera::train::{clip_grad_norm, cross_entropy, AdamW, AdamWConfig};

fn model_from(dir: &str, trainable: bool) -> (VisionTransformer, ParamStore, VitConfig) {
    common::seed_vit_fixture(dir, trainable)
}

fn check_logits(dir: &str) {
    let (model, _, _) = model_from(dir, false);
    let io = load(&fixture(dir).join("io.safetensors"));
    let logits = model.forward(&io["input"], &mut Ctx::eval()).unwrap();
    let d = max_abs_diff(&logits, &io["logits"]);
    println!("{dir}: max |logit diff| = {d:e}");
    assert!(d <= 1e-4, "{dir}: logits differ by {d}");
}

#[test]
fn postnorm_1ch_28px_patch7_3heads_logits_match_pytorch() {
    check_logits("seed_vit_postnorm_28");
}

#[test]
fn prenorm_3ch_32px_logits_match_pytorch() {
    check_logits("seed_vit_prenorm_32");
}

#[test]
fn trace_has_every_layer() {
    let (model, _, cfg) = model_from("seed_vit_prenorm_32", false);
    let io = load(&fixture("seed_vit_prenorm_32").join("io.safetensors"));
    let (logits, trace) = model.forward_traced(&io["input"]).unwrap();
    assert!(max_abs_diff(&logits, &io["logits"]) <= 1e-4);
    assert_eq!(trace.attentions.len(), cfg.num_hidden_layers);
    assert_eq!(trace.hidden_states.len(), cfg.num_hidden_layers + 1);
    let n = cfg.num_patches() + 1;
    assert_eq!(
        trace.attentions[0].dims(),
        &[2, cfg.num_attention_heads, n, n]
    );
    // Rows of attention probabilities sum to one.
    let sums = trace.attentions[0]
        .sum(3)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
}

/// Three AdamW steps from the same init on the same batches, dropout 0, clipping on.
///
/// Tolerances: losses within 1e-4 relative; weights as [`common::assert_adamw_weights_match`]
/// (2e-5 absolute, lr being 1e-3, except where PyTorch's gradient was near zero).
#[test]
fn three_adamw_steps_match_pytorch() {
    let dir = "seed_vit_train";
    let (model, store, _) = model_from(dir, true);
    let io = load(&fixture(dir).join("io.safetensors"));
    let after = load(&fixture(dir).join("after.safetensors"));
    let (lr, steps) = (1e-3, 3);
    let mut opt = AdamW::new(
        store.vars(),
        AdamWConfig {
            lr,
            weight_decay: 0.05,
            ..Default::default()
        },
    );
    let vars: Vec<_> = store.vars().into_iter().map(|(_, v)| v).collect();
    let want_losses = io["losses"].to_vec1::<f64>().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for s in 0..steps {
        let x = &io[&format!("x{s}")];
        let y = io[&format!("y{s}")].to_dtype(DType::U32).unwrap();
        let logits = model.forward(x, &mut Ctx::train(&mut rng)).unwrap();
        let loss = cross_entropy(&logits, &y, 0.0).unwrap();
        let l = loss.to_scalar::<f32>().unwrap() as f64;
        let rel = (l - want_losses[s]).abs() / want_losses[s].abs();
        println!("step {s}: loss {l} vs {} (rel {rel:e})", want_losses[s]);
        assert!(rel <= 1e-4, "step {s}: loss {l} vs {}", want_losses[s]);
        let mut grads = loss.backward().unwrap();
        // Every parameter receives a gradient (no op without backward on the path).
        assert_eq!(opt.missing_grads(&grads), Vec::<String>::new());
        clip_grad_norm(&mut grads, &vars, 1.0).unwrap();
        opt.step(&grads, lr).unwrap();
    }
    common::assert_adamw_weights_match(&store, dir, lr, steps);
    // And the weights did move: the test is not comparing two unchanged copies.
    let init = load(&fixture(dir).join("model.safetensors"));
    assert!(max_abs_diff(&init["head.weight"], &after["head.weight"]) > 1e-4);
}

#[test]
fn mis_shaped_and_missing_tensors_are_reported_by_name() {
    let d = fixture("seed_vit_postnorm_28");
    let mut cfg: VitConfig = tessera::util::read_json(&d.join("config.json")).unwrap();
    cfg.num_classes = 5; // head no longer matches
    cfg.num_hidden_layers = 3; // layer 2 is missing from the checkpoint
    let store =
        ParamStore::from_safetensors(&d.join("model.safetensors"), 0, false, &Device::Cpu).unwrap();
    VisionTransformer::new(store.var_builder(DType::F32), &cfg).unwrap();
    let r = store.report();
    assert!(
        r.missing
            .contains(&"encoder.layers.2.self_attn.in_proj_weight".to_string()),
        "{r}"
    );
    assert!(
        r.mismatched
            .iter()
            .any(|(n, want, got)| n == "head.weight" && want == &[5, 48] && got == &[10, 48]),
        "{r}"
    );
    let err = store.ensure_clean(&d).unwrap_err().to_string();
    assert!(
        err.contains("head.weight") && err.contains("missing"),
        "{err}"
    );
    // Fewer layers: the extra checkpoint tensors are unexpected.
    cfg.num_hidden_layers = 1;
    cfg.num_classes = 10;
    let store =
        ParamStore::from_safetensors(&d.join("model.safetensors"), 0, false, &Device::Cpu).unwrap();
    VisionTransformer::new(store.var_builder(DType::F32), &cfg).unwrap();
    assert!(store
        .report()
        .unexpected
        .contains(&"encoder.layers.1.norm2.bias".to_string()));
}

#[test]
fn wrong_input_shape_is_an_error_not_a_panic() {
    let (model, _, _) = model_from("seed_vit_postnorm_28", false);
    let x = Tensor::zeros((1, 3, 28, 28), DType::F32, &Device::Cpu).unwrap();
    let err = model.forward(&x, &mut Ctx::eval()).unwrap_err().to_string();
    assert!(err.contains("[batch, 1, 28, 28]"), "{err}");
}
