//! The chapter's claim that Flamingo's tanh gates keep the language model intact and open as
//! the image starts to help, measured on a small IDEFICS (`tessera::train::gated_captioning`):
//! its language model first learns shape-scene captions from text alone, then is frozen with the
//! vision tower while only the Perceiver resampler and the gated cross-attention layers train
//! with the image. Writes `docs/idefics_gates.json` and `docs/idefics_gates.png` (tanh(α) of each
//! layer's attention and MLP gate over training, and both loss curves).
//!
//!     cargo run --release --example idefics_gates [-- --steps N --lm-steps N | --plot-only]
use candle_core::Device;
use plotters::prelude::*;
use tessera::progress::Silent;
use tessera::train::gated_captioning::{run, GateReport, GateRunConfig};

fn arg(name: &str) -> Option<usize> {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn plot(r: &GateReport) -> Result<(), Box<dyn std::error::Error>> {
    tessera::train::register_font();
    let root = BitMapBackend::new("docs/idefics_gates.png", (1100, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    let steps = r.config.steps as f64;
    let all: Vec<f32> = r
        .gates
        .iter()
        .flat_map(|g| g.attention.iter().chain(&g.mlp).copied())
        .collect();
    let (lo, hi) = all
        .iter()
        .fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
    let pad = ((hi - lo) * 0.1).max(0.05);
    let mut chart = ChartBuilder::on(&panels[0])
        .caption("tanh(α) of each gate (gated training)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..steps, (lo - pad) as f64..(hi + pad) as f64)?;
    chart.configure_mesh().x_desc("step").draw()?;
    let layers = r.gates.first().map(|g| g.attention.len()).unwrap_or(0);
    for l in 0..layers {
        for (kind, dashed) in [("attention", false), ("MLP", true)] {
            let color = Palette99::pick(l).to_rgba();
            let pts: Vec<(f64, f64)> = r
                .gates
                .iter()
                .map(|g| {
                    let v = if dashed { g.mlp[l] } else { g.attention[l] };
                    (g.step as f64, v as f64)
                })
                .collect();
            let style = color.stroke_width(if dashed { 1 } else { 2 });
            chart
                .draw_series(LineSeries::new(pts, style))?
                .label(format!("layer {l} {kind}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    let n1 = r.lm_losses.len();
    let total = (n1 + r.losses.len()) as f64;
    let ymax = r
        .lm_losses
        .iter()
        .chain(&r.losses)
        .cloned()
        .fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(&panels[1])
        .caption("caption loss", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..total, 0f64..ymax * 1.05)?;
    chart.configure_mesh().x_desc("step").draw()?;
    chart
        .draw_series(LineSeries::new(
            r.lm_losses.iter().enumerate().map(|(i, &l)| (i as f64, l)),
            BLUE.stroke_width(2),
        ))?
        .label("stage 1: language model, text only")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            r.losses
                .iter()
                .enumerate()
                .map(|(i, &l)| ((n1 + i) as f64, l)),
            RED.stroke_width(2),
        ))?
        .label("stage 2: frozen LM + gated layers, with the image")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--plot-only") {
        // Redraw the picture from the last run's report.
        let r: GateReport =
            serde_json::from_str(&std::fs::read_to_string("docs/idefics_gates.json")?)?;
        return plot(&r);
    }
    let d = GateRunConfig::default();
    let cfg = GateRunConfig {
        steps: arg("--steps").unwrap_or(d.steps),
        lm_steps: arg("--lm-steps").unwrap_or(d.lm_steps),
        ..d
    };
    let r = run(&cfg, &Device::Cpu, &Silent)?;
    let last = r.gates.last().ok_or("no gates recorded")?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let tail = |v: &[f64]| mean(&v[v.len().saturating_sub(20)..]);
    println!(
        "stage 1 (text only): loss {:.3} -> {:.3} (last 20 steps)",
        r.lm_losses[0],
        tail(&r.lm_losses)
    );
    println!(
        "stage 2 (frozen LM, {} trainable / {} frozen parameters): loss {:.3} -> {:.3} (last 20 steps)",
        r.trainable_parameters,
        r.frozen_parameters,
        r.losses[0],
        tail(&r.losses)
    );
    println!("tanh(α) at step {}:", last.step);
    for (l, (a, m)) in last.attention.iter().zip(&last.mlp).enumerate() {
        println!("  layer {l}: attention {a:+.3}, MLP {m:+.3}");
    }
    println!(
        "frozen weights unchanged: {}; {:.0} s",
        r.frozen_unchanged, r.seconds
    );
    std::fs::create_dir_all("docs")?;
    std::fs::write("docs/idefics_gates.json", serde_json::to_string_pretty(&r)?)?;
    plot(&r)?;
    println!("wrote docs/idefics_gates.json and docs/idefics_gates.png");
    Ok(())
}
