//! Which parameters AdamW decays is the recipe's rule, not a naming accident: `train` uses
//! timm's (the seed ViT), `finetune` HF Trainer's — checked against transformers'
//! `Trainer.get_decay_parameter_names` (fixture from tools/gen_decay_fixture.py).
mod common;
use common::fixture;
use tessera::models::clip::Clip;
use tessera::models::vit::hf::HfVit;
use tessera::models::vit::VisionTransformer;
use tessera::models::{ImageClassifier, LoadOptions, Pretrained};
use tessera::train::{AdamW, AdamWConfig, DecayRule};

fn expected(model: &str) -> (Vec<String>, Vec<String>) {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("decay_parameters.json")).unwrap())
            .unwrap();
    let list = |k: &str| -> Vec<String> {
        let mut l: Vec<String> = v[model][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        l.sort();
        l
    };
    (list("parameters"), list("decayed"))
}

fn decayed(opt: &AdamW) -> Vec<String> {
    let mut d: Vec<String> = opt.decayed().iter().map(|s| s.to_string()).collect();
    d.sort();
    d
}

const HF: AdamWConfig = AdamWConfig {
    lr: 1e-3,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weight_decay: 0.01,
    decay: DecayRule::HfTrainer,
};

#[test]
fn hf_trainer_rule_equals_transformers_on_vit_and_clip() {
    let opts = LoadOptions::default().trainable();
    let vit = HfVit::load(fixture("hf_vit_cls"), &opts).unwrap();
    let (names, want) = expected("hf_vit_cls");
    let mut ours: Vec<String> = vit.store.vars().into_iter().map(|(n, _)| n).collect();
    ours.sort();
    assert_eq!(ours, names, "the same parameters, by the same names");
    let opt = AdamW::with_layer_norms(vit.store.vars(), HF, &vit.model.layer_norms());
    assert_eq!(decayed(&opt), want);
    // HF decays the class token and the position embeddings (timm's rule does not).
    assert!(want.iter().any(|n| n.ends_with("cls_token")));
    assert!(want.iter().any(|n| n.ends_with("position_embeddings")));

    // CLIP: its LayerNorms are named layer_norm1/2, pre_layrnorm, …: exempt by type.
    let clip = Clip::load(fixture("clip_tiny"), &opts).unwrap();
    let (names, want) = expected("clip_tiny");
    let mut ours: Vec<String> = clip.store.vars().into_iter().map(|(n, _)| n).collect();
    ours.sort();
    assert_eq!(ours, names);
    let opt = AdamW::with_layer_norms(clip.store.vars(), HF, &clip.model.layer_norms());
    assert_eq!(decayed(&opt), want);
    // Without the type information the names alone miss CLIP's LayerNorm weights.
    let by_name = AdamW::new(clip.store.vars(), HF);
    assert!(decayed(&by_name).len() > want.len());
}

#[test]
fn timm_rule_on_the_seed_vit() {
    let seed = VisionTransformer::load(
        fixture("seed_vit_prenorm_32"),
        &LoadOptions::default().trainable(),
    )
    .unwrap();
    let cfg = AdamWConfig::default();
    assert_eq!(cfg.decay, DecayRule::Timm);
    let opt = AdamW::with_layer_norms(seed.store.vars(), cfg, &seed.model.layer_norms());
    let mut want = vec![
        "patch_embed.conv2d.weight".to_string(),
        "head.weight".to_string(),
    ];
    for i in 0..seed.model.config.num_hidden_layers {
        for w in [
            "self_attn.in_proj_weight",
            "self_attn.out_proj.weight",
            "linear1.weight",
            "linear2.weight",
        ] {
            want.push(format!("encoder.layers.{i}.{w}"));
        }
    }
    want.sort();
    // No decay on cls_token, pos_embed, biases or LayerNorm weights.
    assert_eq!(decayed(&opt), want);
}
