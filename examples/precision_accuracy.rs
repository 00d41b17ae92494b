//! bf16 and int8 against fp32 inference on real photos: top-1 agreement, the largest logit
//! error, and CLIP zero-shot score errors.
//!
//! Models (no pretrained weights offline): ViT-B/16 with 1000 labels and CLIP ViT-B/32, random
//! init (seed 0) as in the benchmark, and a fine-tuned ViT checkpoint if one is given with
//! `--model DIR`. Photos: the scikit-image / scikit-learn images (`tools/photos.sh` lists them).
//! CLIP's zero-shot labels are ten everyday nouns with the "a photo of a {}." template; its
//! tokenizer needs `assets/bpe_simple_vocab_16e6.txt.gz` (`tools/fetch_clip_bpe.sh`).
//!
//! cargo run --release --example precision_accuracy -- [--model DIR] $(tools/photos.sh)
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use tessera::image::ProcessorConfig;
use tessera::models::clip::{Clip, ClipConfig, ClipTokenizer};
use tessera::models::vit::hf::{HfVit, HfVitConfig};
use tessera::models::{LoadOptions, Pretrained, Task};
use tessera::nn::{Ctx, ParamStore, Precision};
use tessera::pipelines::ClipEmbedder;

const PRECISIONS: [Precision; 2] = [Precision::BF16, Precision::Int8];

fn short(p: &str) -> String {
    std::path::Path::new(p)
        .file_name()
        .map_or(p.to_string(), |f| f.to_string_lossy().into())
}

/// Per image: argmax, max |difference| to `reference`'s rows, max |value|.
fn rows(t: &Tensor) -> Result<(Vec<u32>, Vec<f32>)> {
    Ok((
        t.argmax(D::Minus1)?.to_vec1::<u32>()?,
        t.abs()?.max(D::Minus1)?.to_vec1::<f32>()?,
    ))
}

/// `low` against the fp32 `reference` [images, classes]: its argmax per image, the max
/// |difference| per image, the top-1 agreement count and the worst difference.
struct Against {
    top: Vec<u32>,
    diff: Vec<f32>,
    agree: usize,
    worst: f32,
}

fn against(reference: &Tensor, top_ref: &[u32], low: &Tensor) -> Result<Against> {
    let (top, _) = rows(low)?;
    let (_, diff) = rows(&(reference - low)?)?;
    let agree = top_ref.iter().zip(&top).filter(|(a, b)| a == b).count();
    let worst = diff.iter().copied().fold(0f32, f32::max);
    Ok(Against {
        top,
        diff,
        agree,
        worst,
    })
}

fn compare(name: &str, model: &HfVit, x: &Tensor, paths: &[String]) -> Result<()> {
    let f32_logits = model.forward(x, &mut Ctx::inference())?;
    let (top, range) = rows(&f32_logits)?;
    println!("{name}");
    for p in PRECISIONS {
        let logits = model.with_dtype(p)?.forward(x, &mut Ctx::inference())?;
        let Against {
            top: top_p,
            diff,
            agree,
            worst,
        } = against(&f32_logits, &top, &logits)?;
        println!(
            "  {p}: top-1 agreement {agree}/{} photos, worst max |logit diff| {worst:.2e}",
            top.len()
        );
        for (i, path) in paths.iter().enumerate() {
            println!(
                "    {:<24} top-1 f32 {:>4} {p} {:>4}  max |logit diff| {:.2e} (max |logit| {:.2})",
                short(path),
                top[i],
                top_p[i],
                diff[i],
                range[i]
            );
        }
    }
    Ok(())
}

/// Zero-shot probabilities of `labels` for every image (softmax of CLIP's logits).
fn zero_shot(
    e: &ClipEmbedder,
    images: &[image::DynamicImage],
    prompts: &[String],
) -> Result<Tensor> {
    let text = e.text_embeds(prompts)?;
    let img = e.image_embeds(images)?;
    Ok(candle_nn::ops::softmax(
        &e.model.logits(&img, &text)?,
        D::Minus1,
    )?)
}

fn clip(images: &[image::DynamicImage], paths: &[String]) -> Result<()> {
    let bpe = std::path::Path::new(tessera::pipelines::embed::DEFAULT_BPE);
    if !bpe.exists() {
        println!(
            "CLIP: skipped ({} missing: tools/fetch_clip_bpe.sh)",
            bpe.display()
        );
        return Ok(());
    }
    let dev = Device::Cpu;
    let cfg = ClipConfig::default();
    let store = ParamStore::fresh(0, false, &dev);
    let model = Clip::new(store.var_builder(DType::F32), &cfg)?;
    let processor = ProcessorConfig::clip(cfg.vision_config.image_size as u32);
    let embedder = |m: Clip| -> Result<ClipEmbedder> {
        Ok(ClipEmbedder::new(
            m,
            ClipTokenizer::from_bpe_gz(bpe)?,
            processor.clone(),
            &dev,
        ))
    };
    let labels = [
        "cat",
        "dog",
        "person",
        "cup",
        "rocket",
        "flower",
        "horse",
        "motorcycle",
        "building",
        "camera",
    ];
    let prompts: Vec<String> = labels
        .iter()
        .map(|l| format!("a photo of a {l}."))
        .collect();
    let reference = zero_shot(&embedder(model.clone())?, images, &prompts)?;
    let (top, _) = rows(&reference)?;
    // fp32's margin between its first and second label: a random-init CLIP's scores are
    // nearly uniform, so a top-1 can flip on an error smaller than any trained model's margin.
    let margins: Vec<f32> = reference
        .to_vec2::<f32>()?
        .into_iter()
        .map(|mut r| {
            r.sort_by(|a, b| b.total_cmp(a));
            r[0] - r.get(1).copied().unwrap_or(0.0)
        })
        .collect();
    let img_ref = embedder(model.clone())?.image_embeds(images)?;
    println!(
        "CLIP ViT-B/32, random init: zero-shot over {} labels",
        labels.len()
    );
    for p in PRECISIONS {
        let e = embedder(model.with_dtype(p)?)?;
        let probs = zero_shot(&e, images, &prompts)?;
        let Against {
            top: top_p,
            diff,
            agree,
            worst,
        } = against(&reference, &top, &probs)?;
        // Image embeddings: cosine similarity to fp32's (both are L2-normalised).
        let cos = (&img_ref * &e.image_embeds(images)?)?
            .sum(D::Minus1)?
            .to_vec1::<f32>()?;
        let min_cos = cos.iter().copied().fold(1f32, f32::min);
        println!(
            "  {p}: top-1 agreement {agree}/{} photos, worst max |score diff| {worst:.2e}, min image-embedding cosine to fp32 {min_cos:.6}",
            top.len()
        );
        for (i, path) in paths.iter().enumerate() {
            println!(
                "    {:<24} top-1 f32 {:>2} {p} {:>2}  max |score diff| {:.2e} (fp32 top-1 margin {:.2e})",
                short(path),
                top[i],
                top_p[i],
                diff[i],
                margins[i]
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut model_dir = None;
    if let Some(i) = args.iter().position(|a| a == "--model") {
        model_dir = Some(args.get(i + 1).context("--model DIR")?.clone());
        args.drain(i..i + 2);
    }
    anyhow::ensure!(
        !args.is_empty(),
        "give photo paths (tools/photos.sh lists them)"
    );
    let dev = Device::Cpu;
    let images = args
        .iter()
        .map(|p| tessera::image::open(std::path::Path::new(p)))
        .collect::<tessera::Result<Vec<_>>>()?;
    let x = ProcessorConfig::vit(224).batch(&images, &dev)?;
    let random = HfVit::from_config(
        &HfVitConfig::default(),
        &LoadOptions::default().num_labels(1000).device(&dev),
    )?;
    compare(
        "ViT-B/16, 1000 labels, random init",
        &random.model,
        &x,
        &args,
    )?;
    if let Some(dir) = model_dir {
        let loaded = HfVit::load(
            &dir,
            &LoadOptions::default()
                .task(Task::ImageClassification)
                .device(&dev),
        )?;
        let size = loaded.model.config().image_size as u32;
        let pp = std::path::Path::new(&dir).join("preprocessor_config.json");
        let proc = if pp.exists() {
            ProcessorConfig::load(&pp)?
        } else {
            ProcessorConfig::vit(size)
        };
        let x = proc.batch(&images, &dev)?;
        compare(&dir, &loaded.model, &x, &args)?;
    }
    clip(&images, &args)
}
