//! BLIP-2 with OPT-2.7b (`Salesforce/blip2-opt-2.7b`'s sizes): its parameters counted from the
//! config, what they take in each precision, and — with `--measure` — the peak RSS of building
//! it with random weights (fp32, the weights tessera computes with unless packed) and the time
//! of one image-to-two-tokens generation. No such checkpoint is offline; random weights have
//! its shapes.
//!
//!     cargo run --release --example blip2_memory [-- --measure]
use candle_core::{Device, Tensor};
use tessera::models::blip2::{generation_defaults, Blip2Captioner, Blip2Config};
use tessera::models::{LoadOptions, Pretrained};
use tessera::nn::generate::GenerationConfig;

fn peak_rss_gib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / (1024.0 * 1024.0))
}

fn main() -> tessera::Result<()> {
    let c = Blip2Config::opt_2_7b();
    let total = c.parameter_count();
    let qformer = {
        // The Q-Former and its queries stay fp32 in transformers' bf16 loads.
        let mut no_q = c.clone();
        no_q.qformer_config.num_hidden_layers = 0;
        no_q.num_query_tokens = 0;
        total - no_q.parameter_count() + 2 * c.qformer_config.hidden_size
    };
    let gib = |b: f64| b / (1u64 << 30) as f64;
    println!("BLIP-2 / OPT-2.7b: {total} parameters (Q-Former and queries {qformer})");
    println!(
        "  fp32 weights:                         {:.2} GiB",
        gib(4.0 * total as f64)
    );
    println!(
        "  bf16 weights, Q-Former fp32 (transformers' torch_dtype=bfloat16): {:.2} GiB",
        gib(2.0 * (total - qformer) as f64 + 4.0 * qformer as f64)
    );
    println!(
        "  tessera --dtype bf16 (fp32 weights + bf16 packs of the vision and OPT linears): <= {:.2} GiB",
        gib(6.0 * total as f64)
    );
    if std::env::args().any(|a| a == "--measure") {
        let before = peak_rss_gib();
        let t0 = std::time::Instant::now();
        let m = Blip2Captioner::from_config(&c, &LoadOptions::default())?.model;
        println!(
            "measured: random-init fp32 model built in {:.0} s, peak RSS {:.2} GiB (process start {:.2} GiB)",
            t0.elapsed().as_secs_f64(),
            peak_rss_gib(),
            before
        );
        let px = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &Device::Cpu)?;
        let cfg = GenerationConfig {
            max_new_tokens: Some(2),
            ..generation_defaults(&c)
        };
        let t0 = std::time::Instant::now();
        let g = m.generate(&px, &m.prompts(&[vec![2]])?, &cfg, false)?;
        println!(
            "  one image -> {} new tokens in {:.1} s (fp32, 2 threads), peak RSS {:.2} GiB",
            g.generated.sequences[0].len() - g.generated.prompt_len,
            t0.elapsed().as_secs_f64(),
            peak_rss_gib()
        );
    }
    Ok(())
}
