//! The `tessera` command line: one module per subcommand, each parsing its arguments into a
//! library call and printing the result. Progress goes to stderr through [`common::Bars`].
use clap::{Parser, Subcommand};

mod ask;
mod caption;
mod clip_demo;
mod common;
mod detect;
mod embed;
mod explain;
mod export;
mod finetune;
mod index;
mod launch;
mod predict;
mod search;
mod serve;
mod train;
mod train_captioner;
mod train_detr;
mod zero_shot;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Vision transformers in Rust: train, fine-tune, run and explain"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train the seed ViT from scratch (default: the embedded scikit-learn digits, in seconds).
    Train(train::Args),
    /// Fine-tune a Hugging Face ViT (local directory or hub id) on an image dataset.
    Finetune(finetune::Args),
    /// Classify images with a checkpoint: a tessera run directory, an HF directory or hub id.
    Predict(predict::Args),
    /// Convert a pre-norm seed ViT run into an HF `ViTForImageClassification` checkpoint.
    ExportHf(export::Args),
    /// CLIP zero-shot classification: which candidate label fits each image.
    ZeroShot(zero_shot::Args),
    /// CLIP image and text embeddings and their similarity matrix.
    Embed(embed::Args),
    /// Embed every image under a folder into a persistent search index (incremental).
    Index(index::Args),
    /// Rank indexed images by similarity to a text query.
    Search(search::Args),
    /// Train a tiny CLIP on generated shape scenes, then zero-shot classify colour–shape
    /// combinations it never saw together.
    ClipDemo(clip_demo::Args),
    /// Where the model looked: attention, rollout or class/text relevance over the image.
    Explain(explain::Args),
    /// Detect objects with a DETR checkpoint (boxes, labels, scores; drawn with --out).
    Detect(detect::Args),
    /// Train DETR on generated shape scenes (default) or a COCO-format set; COCO mAP held out.
    TrainDetr(train_detr::Args),
    /// Train a BLIP-style captioner from scratch on generated shape scenes (pointing game).
    TrainCaptioner(train_captioner::Args),
    /// Caption images with a BLIP checkpoint (optionally from a prompt; beams, sampling).
    Caption(caption::Args),
    /// Answer a question about an image with a BLIP VQA checkpoint.
    Vqa(caption::VqaArgs),
    /// Ask a hosted or local multimodal model (Gemini, any OpenAI-compatible server) about images.
    Ask(ask::Args),
    /// Serve models over HTTP: OpenAI-shaped embeddings, zero-shot, classification and
    /// detection, with dynamic batching and Prometheus metrics.
    Serve(serve::Args),
}

fn main() {
    // Argument errors as one line, like every other error (clap's own adds usage lines).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("error: {first} (see tessera --help)");
            std::process::exit(2);
        }
    };
    let r = match cli.cmd {
        Cmd::Train(a) => train::run(a),
        Cmd::Finetune(a) => finetune::run(a),
        Cmd::Predict(a) => predict::run(a),
        Cmd::ExportHf(a) => export::run(a),
        Cmd::ZeroShot(a) => zero_shot::run(a),
        Cmd::Embed(a) => embed::run(a),
        Cmd::Index(a) => index::run(a),
        Cmd::Search(a) => search::run(a),
        Cmd::ClipDemo(a) => clip_demo::run(a),
        Cmd::Explain(a) => explain::run(a),
        Cmd::Ask(a) => ask::run(a),
        Cmd::Detect(a) => detect::run(a),
        Cmd::Caption(a) => caption::run(a),
        Cmd::Vqa(a) => caption::run_vqa(a),
        Cmd::TrainDetr(a) => train_detr::run(a),
        Cmd::TrainCaptioner(a) => train_captioner::run(a),
        Cmd::Serve(a) => serve::run(a),
    };
    if let Err(e) = r {
        eprintln!("error: {}", common::one_line(&e));
        std::process::exit(1);
    }
}
