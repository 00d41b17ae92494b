//! One curves picture for a DETR trained in stages (`train-detr`, then `train-detr --model`
//! on more scenes): the stages' `metrics.jsonl` joined, each later stage's epochs counted in
//! the first stage's epochs by a factor (an 8,000-scene epoch is four 2,000-scene ones).
//!
//! `cargo run --release --example detr_curves -- OUT.png FIRST/metrics.jsonl [LATER/metrics.jsonl*4 ...]`
use tessera::train::detr_run::plot_detr;
use tessera::train::detr_train::EpochLog;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, stages)) = args.split_first().filter(|(_, s)| !s.is_empty()) else {
        anyhow::bail!("usage: detr_curves OUT.png METRICS.jsonl[*FACTOR] ...");
    };
    let mut joined: Vec<EpochLog> = vec![];
    for stage in stages {
        let (path, factor) = match stage.rsplit_once('*') {
            Some((p, f)) => (p, f.parse::<usize>()?),
            None => (stage.as_str(), 1),
        };
        let offset = joined.last().map_or(0, |l| l.epoch);
        for line in std::fs::read_to_string(path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let mut log: EpochLog = serde_json::from_str(line)?;
            log.epoch = offset + log.epoch * factor;
            joined.push(log);
        }
    }
    plot_detr(&joined, std::path::Path::new(out))?;
    println!(
        "{} epochs (in the first stage's units) → {out}",
        joined.last().map_or(0, |l| l.epoch)
    );
    Ok(())
}
