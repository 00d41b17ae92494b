//! The chapter's claim that a Perceiver's cost grows linearly with the input while
//! self-attention's grows quadratically, measured: one inference forward of
//! (a) a ViT-style encoder (pre-norm self-attention blocks over all N input tokens) and
//! (b) a Perceiver of the same width and depth (64 latents cross-attend once into the N tokens,
//!     then the same number of self-attention layers over the latents),
//! for N = 256 … 16,384 (64×; the Perceiver on to 65,536). Time is the median of several forwards; peak memory is the rise
//! of the process's peak RSS during the forward, measured in a fresh process per (model, N).
//! Fits the exponent of each (log–log least squares) and writes `docs/perceiver_scaling.png`
//! and `docs/perceiver_scaling.json`.
//!
//!     cargo run --release --example perceiver_scaling
use candle_core::{DType, Device, Tensor};
use plotters::prelude::*;
use std::process::Command;
use std::time::Instant;
use tessera::nn::{
    Activation, BlockConfig, BlockNames, Ctx, Encoder, LatentConfig, LatentLayer, ParamStore,
};

const WIDTH: usize = 128;
const HEADS: usize = 4;
const LAYERS: usize = 4;
const LATENTS: usize = 64;
/// Input lengths: 64× for the encoder (its 16,384-token forward takes seconds and GBs), 256×
/// for the Perceiver.
const VIT_SIZES: &[usize] = &[256, 512, 1024, 2048, 4096, 8192, 16384];
const PERCEIVER_SIZES: &[usize] = &[256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
/// The exponents are fitted from here up, where the input-dependent cost dominates.
const FIT_FROM: usize = 2048;

fn status_kib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(f64::NAN)
}

fn block() -> BlockConfig {
    BlockConfig {
        dim: WIDTH,
        heads: HEADS,
        mlp_dim: 4 * WIDTH,
        act: Activation::Gelu,
        pre_norm: true,
        eps: 1e-5,
        qkv_bias: true,
        dropout: 0.0,
        mlp_dropout: 0.0,
        attn_dropout: 0.0,
    }
}

fn latent(kv_dim: Option<usize>) -> LatentConfig {
    LatentConfig {
        q_dim: WIDTH,
        kv_dim,
        qk_channels: WIDTH,
        v_channels: WIDTH,
        heads: HEADS,
        widening: 4,
        query_residual: true,
        act: Activation::Gelu,
        attn_dropout: 0.0,
        eps: 1e-5,
    }
}

/// One (model, N) in this process: prints `seconds peak_mib`.
fn one(kind: &str, n: usize) -> tessera::Result<()> {
    let dev = Device::Cpu;
    let store = ParamStore::fresh(0, false, &dev);
    let vb = store.var_builder(DType::F32);
    let x = Tensor::randn(0f32, 1.0, (1, n, WIDTH), &dev)?;
    let forward: Box<dyn Fn() -> tessera::Result<Tensor>> = if kind == "vit" {
        let enc = Encoder::new(vb.pp("enc"), &BlockNames::TIMM, &block(), LAYERS)?;
        Box::new(move || Ok(enc.forward(&x, None, &mut Ctx::inference())?))
    } else {
        let latents = Tensor::randn(0f32, 1.0, (1, LATENTS, WIDTH), &dev)?;
        let cross = LatentLayer::new(vb.pp("cross"), &latent(Some(WIDTH)))?;
        let layers = (0..LAYERS)
            .map(|i| LatentLayer::new(vb.pp("self").pp(i), &latent(None)))
            .collect::<tessera::Result<Vec<_>>>()?;
        Box::new(move || {
            let ctx = &mut Ctx::inference();
            let mut z = cross.forward(&latents, Some(&x), None, ctx)?;
            for l in &layers {
                z = l.forward(&z, None, None, ctx)?;
            }
            Ok(z)
        })
    };
    let before = status_kib("VmRSS:");
    forward()?;
    let peak = (status_kib("VmHWM:") - before) / 1024.0;
    let mut ts = vec![];
    for _ in 0..5 {
        let t = Instant::now();
        forward()?;
        ts.push(t.elapsed().as_secs_f64());
    }
    ts.sort_by(|a, b| a.total_cmp(b));
    println!("{} {}", ts[2], peak.max(0.0));
    Ok(())
}

/// Least-squares slope of log y against log x.
fn exponent(xs: &[f64], ys: &[f64]) -> f64 {
    let (lx, ly): (Vec<f64>, Vec<f64>) = xs.iter().zip(ys).map(|(x, y)| (x.ln(), y.ln())).unzip();
    let n = lx.len() as f64;
    let (mx, my) = (lx.iter().sum::<f64>() / n, ly.iter().sum::<f64>() / n);
    let cov: f64 = lx.iter().zip(&ly).map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = lx.iter().map(|x| (x - mx).powi(2)).sum();
    cov / var
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--one" {
        one(&args[2], args[3].parse()?)?;
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let mut rows = vec![];
    for (kind, sizes) in [("vit", VIT_SIZES), ("perceiver", PERCEIVER_SIZES)] {
        let mut times = vec![];
        let mut mems = vec![];
        for &n in sizes {
            let o = Command::new(&exe)
                .args(["--one", kind, &n.to_string()])
                .output()?;
            if !o.status.success() {
                return Err(String::from_utf8_lossy(&o.stderr).into_owned().into());
            }
            let out = String::from_utf8(o.stdout)?;
            let v: Vec<f64> = out
                .split_whitespace()
                .map(|s| s.parse())
                .collect::<Result<_, _>>()?;
            println!(
                "{kind:>9} N={n:>5}: {:>9.2} ms, peak +{:>7.1} MiB",
                v[0] * 1e3,
                v[1]
            );
            times.push(v[0]);
            mems.push(v[1]);
        }
        let ns: Vec<f64> = sizes.iter().map(|&n| n as f64).collect();
        let from = sizes.iter().position(|&n| n >= FIT_FROM).unwrap_or(0);
        let (te, me) = (
            exponent(&ns[from..], &times[from..]),
            exponent(&ns[from..], &mems[from..]),
        );
        println!("{kind}: time ∝ N^{te:.2}, peak memory ∝ N^{me:.2} (N ≥ {FIT_FROM})");
        rows.push((kind, sizes, times, mems, te, me));
    }
    let json = serde_json::json!({
        "width": WIDTH, "heads": HEADS, "layers": LAYERS, "latents": LATENTS,
        "fit_from": FIT_FROM,
        "models": rows.iter().map(|(k, n, t, m, te, me)| serde_json::json!({
            "model": k, "sizes": n, "seconds": t, "peak_mib": m,
            "time_exponent": te, "memory_exponent": me,
        })).collect::<Vec<_>>(),
    });
    std::fs::create_dir_all("docs")?;
    tessera::util::write_json(std::path::Path::new("docs/perceiver_scaling.json"), &json)?;
    plot(&rows)?;
    println!("wrote docs/perceiver_scaling.png and docs/perceiver_scaling.json");
    Ok(())
}

type Row<'a> = (&'a str, &'a [usize], Vec<f64>, Vec<f64>, f64, f64);

fn plot(rows: &[Row]) -> Result<(), Box<dyn std::error::Error>> {
    tessera::train::register_font();
    let root = BitMapBackend::new("docs/perceiver_scaling.png", (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    let (lo, hi) = (
        PERCEIVER_SIZES[0] as f64,
        PERCEIVER_SIZES[PERCEIVER_SIZES.len() - 1] as f64,
    );
    for (p, (title, pick)) in panels.iter().zip([
        ("time per forward (s)", 1usize),
        ("peak memory rise (MiB)", 2usize),
    ]) {
        let vals: Vec<f64> = rows
            .iter()
            .flat_map(|r| if pick == 1 { r.2.clone() } else { r.3.clone() })
            .filter(|v| *v > 0.0)
            .collect();
        let ymin = vals.iter().cloned().fold(f64::INFINITY, f64::min) * 0.5;
        let ymax = vals.iter().cloned().fold(0.0, f64::max) * 2.0;
        let mut chart = ChartBuilder::on(p)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d((lo..hi).log_scale(), (ymin.max(1e-6)..ymax).log_scale())?;
        chart.configure_mesh().x_desc("input tokens N").draw()?;
        for (i, r) in rows.iter().enumerate() {
            let ys = if pick == 1 { &r.2 } else { &r.3 };
            let e = if pick == 1 { r.4 } else { r.5 };
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    r.1.iter().zip(ys).map(|(&n, &y)| (n as f64, y.max(1e-6))),
                    color.stroke_width(2),
                ))?
                .label(format!("{} (∝ N^{e:.2})", r.0))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
