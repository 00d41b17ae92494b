//! Loss and accuracy curves as a PNG.
use super::EpochMetrics;
use crate::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Registers the embedded DejaVu Sans as plotters' "sans-serif" (no system fonts needed).
pub fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn err<E: std::fmt::Display>(e: E) -> Error {
    Error::Msg(format!("plot: {e}"))
}

/// A named curve: (legend, (epoch, value) points, colour).
pub(crate) type Series<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);

/// One panel of named curves over epochs.
pub(crate) fn chart(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    title: &str,
    epochs: usize,
    y: std::ops::Range<f64>,
    series: Vec<Series>,
    legend_at: SeriesLabelPosition,
) -> Result<()> {
    let mut c = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5..epochs as f64 + 0.5, y)
        .map_err(err)?;
    c.configure_mesh().x_desc("epoch").draw().map_err(err)?;
    for (name, data, color) in series {
        c.draw_series(LineSeries::new(data, &color))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(legend_at)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Draws `left` and `right` panels side by side into `path` (written atomically).
pub(crate) fn two_panels(
    path: &Path,
    draw: impl FnOnce(
        &DrawingArea<BitMapBackend, plotters::coord::Shift>,
        &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    ) -> Result<()>,
) -> Result<()> {
    register_font();
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (1000, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (left, right) = root.split_horizontally(500);
        draw(&left, &right)?;
        root.present().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Draws train/test loss (left) and accuracy (right) per epoch.
pub fn plot_history(history: &[EpochMetrics], path: &Path) -> Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    let series = |f: fn(&EpochMetrics) -> f64| {
        history
            .iter()
            .map(|m| (m.epoch as f64, f(m)))
            .collect::<Vec<_>>()
    };
    let max_loss = history
        .iter()
        .flat_map(|m| [m.train_loss, m.test_loss])
        .fold(0f64, f64::max)
        * 1.05;
    let min_acc = history
        .iter()
        .flat_map(|m| [m.train_accuracy, m.test_accuracy])
        .fold(1f64, f64::min);
    two_panels(path, |left, right| {
        chart(
            left,
            "loss",
            history.len(),
            0.0..max_loss.max(1e-3),
            vec![
                ("train", series(|m| m.train_loss), BLUE),
                ("test", series(|m| m.test_loss), RED),
            ],
            SeriesLabelPosition::UpperRight,
        )?;
        chart(
            right,
            "top-1 accuracy",
            history.len(),
            (min_acc - 0.02).max(0.0)..1.0,
            vec![
                ("train", series(|m| m.train_accuracy), BLUE),
                ("test", series(|m| m.test_accuracy), RED),
            ],
            SeriesLabelPosition::LowerRight,
        )
    })
}
