//! Approximate nearest neighbours for large indexes: an HNSW graph (USearch, the engine inside
//! ClickHouse and DuckDB's vector search) over the index's L2-normalised rows, inner-product
//! metric, so its similarities are the exact search's cosines. Exact brute force
//! ([`exact_top_k`]) stays the ground truth; `examples/ann_recall.rs` measures recall@10 against
//! it, build time, query latency and memory at 10^5 and 10^6 vectors.
//!
//! The graph lives next to the index (`NAME.usearch`), one file that can be memory-mapped.
use crate::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// How the graph is built and searched (USearch's names; HNSW's M, efConstruction, ef).
#[derive(Clone, Copy, Debug)]
pub struct AnnOptions {
    /// Neighbours per node (HNSW's M).
    pub connectivity: usize,
    /// Candidates kept while inserting (efConstruction).
    pub expansion_add: usize,
    /// Candidates kept while searching (ef): higher is slower and closer to exact.
    pub expansion_search: usize,
    /// Storage of the vectors: f32 (exact distances), f16 or i8 (half or a quarter of the
    /// memory).
    pub quantization: Quantization,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Quantization {
    F32,
    F16,
    I8,
}

impl Default for AnnOptions {
    fn default() -> Self {
        AnnOptions {
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 128,
            quantization: Quantization::F32,
        }
    }
}

/// An HNSW graph over rows `0..n` of a matrix.
pub struct Hnsw {
    index: usearch::Index,
    dim: usize,
}

fn ann_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Msg(format!("HNSW {what}: {e}"))
}

impl Hnsw {
    /// Builds the graph of `rows` (each `dim` wide, L2-normalised) on every core.
    pub fn build(rows: &[Vec<f32>], opts: &AnnOptions) -> Result<Hnsw> {
        let dim = rows.first().map_or(0, Vec::len);
        if dim == 0 {
            return Err(Error::Config("no rows to build an HNSW index of".into()));
        }
        if let Some(i) = rows.iter().position(|r| r.len() != dim) {
            return Err(Error::Shape(format!(
                "row {i} is {} wide, not {dim}",
                rows[i].len()
            )));
        }
        let options = usearch::IndexOptions {
            dimensions: dim,
            metric: usearch::MetricKind::IP,
            quantization: match opts.quantization {
                Quantization::F32 => usearch::ScalarKind::F32,
                Quantization::F16 => usearch::ScalarKind::F16,
                Quantization::I8 => usearch::ScalarKind::I8,
            },
            connectivity: opts.connectivity,
            expansion_add: opts.expansion_add,
            expansion_search: opts.expansion_search,
            multi: false,
        };
        let index = usearch::Index::new(&options).map_err(|e| ann_err("create", e))?;
        let pool = crate::util::worker_pool(0);
        index
            .reserve_capacity_and_threads(rows.len(), pool.current_num_threads().max(1))
            .map_err(|e| ann_err("reserve", e))?;
        pool.install(|| {
            rows.par_iter()
                .enumerate()
                .try_for_each(|(i, r)| index.add(i as u64, r).map_err(|e| ann_err("add", e)))
        })?;
        Ok(Hnsw { index, dim })
    }

    /// Vectors in the graph.
    pub fn len(&self) -> usize {
        self.index.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Bytes the graph and its vectors take.
    pub fn memory_usage(&self) -> usize {
        self.index.memory_usage()
    }

    /// Sets ef for later searches.
    pub fn set_expansion_search(&self, ef: usize) {
        self.index.change_expansion_search(ef.max(1));
    }

    /// The `k` rows closest to `query` (inner product): (row, similarity), best first.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<(usize, f32)>> {
        if query.len() != self.dim {
            return Err(Error::Shape(format!(
                "query is {} wide, the HNSW index holds {}-wide vectors",
                query.len(),
                self.dim
            )));
        }
        let m = self
            .index
            .search(query, k)
            .map_err(|e| ann_err("search", e))?;
        // USearch's inner-product distance is 1 - dot.
        Ok(m.keys
            .iter()
            .zip(&m.distances)
            .map(|(&key, &d)| (key as usize, 1.0 - d))
            .collect())
    }

    /// Writes the graph to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::util::atomic_write_with(path, |tmp| {
            let s = tmp
                .to_str()
                .ok_or_else(|| Error::Msg(format!("{}: path is not UTF-8", tmp.display())))?;
            self.index.save(s).map_err(|e| ann_err("save", e))
        })
    }

    /// Reads a graph written by [`Hnsw::save`] (memory-mapped when `view`), searching with
    /// the default ef (the file does not keep it).
    pub fn load(path: &Path, view: bool) -> Result<Hnsw> {
        let s = path
            .to_str()
            .ok_or_else(|| Error::Msg(format!("{}: path is not UTF-8", path.display())))?;
        if !path.is_file() {
            return Err(Error::io(
                path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let index = if view {
            usearch::Index::restore_view(s)
        } else {
            usearch::Index::restore(s)
        }
        .map_err(|e| Error::data(path, format!("not a USearch index: {e}")))?;
        index.change_expansion_search(AnnOptions::default().expansion_search);
        let dim = index.dimensions();
        Ok(Hnsw { index, dim })
    }
}

/// Where the graph of the index file `index` lives.
pub fn graph_path(index: &Path) -> PathBuf {
    index.with_extension("usearch")
}

/// The `k` rows of `rows` with the highest dot product with `query`, exactly: (row,
/// similarity), best first (ties by row).
pub fn exact_top_k(rows: &[Vec<f32>], query: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut scored: Vec<(usize, f32)> = rows
        .par_iter()
        .enumerate()
        .map(|(i, r)| (i, r.iter().zip(query).map(|(a, b)| a * b).sum()))
        .collect();
    let k = k.min(scored.len());
    if k == 0 {
        return vec![];
    }
    let cmp = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    scored.select_nth_unstable_by(k - 1, cmp);
    scored.truncate(k);
    scored.sort_by(cmp);
    scored
}

/// `n` random unit vectors of width `dim` (seeded): the hardest case for HNSW, no clusters.
pub fn random_unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    use rand::SeedableRng;
    use rand_distr_free::normal;
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let mut v: Vec<f32> = (0..dim).map(|_| normal(&mut rng)).collect();
            let n = v
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt()
                .max(f32::MIN_POSITIVE);
            v.iter_mut().for_each(|x| *x /= n);
            v
        })
        .collect()
}

/// A standard normal sample (Box–Muller) without another crate.
mod rand_distr_free {
    use rand::Rng;

    pub fn normal(rng: &mut impl Rng) -> f32 {
        let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
        let u2: f32 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }
}

/// recall@k of approximate results against exact ones (the fraction of the true top k found).
pub fn recall(exact: &[Vec<(usize, f32)>], approx: &[Vec<(usize, f32)>]) -> f64 {
    let mut hit = 0usize;
    let mut total = 0usize;
    for (e, a) in exact.iter().zip(approx) {
        let truth: std::collections::HashSet<usize> = e.iter().map(|x| x.0).collect();
        hit += a.iter().filter(|x| truth.contains(&x.0)).count();
        total += e.len();
    }
    hit as f64 / total.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hnsw_finds_the_exact_neighbours_and_survives_a_save() {
        let rows = random_unit_vectors(4000, 32, 7);
        let queries = random_unit_vectors(50, 32, 8);
        let h = Hnsw::build(&rows, &AnnOptions::default()).unwrap();
        assert_eq!((h.len(), h.dim()), (4000, 32));
        let exact: Vec<_> = queries.iter().map(|q| exact_top_k(&rows, q, 10)).collect();
        let approx: Vec<_> = queries.iter().map(|q| h.search(q, 10).unwrap()).collect();
        let r = recall(&exact, &approx);
        assert!(r >= 0.95, "recall@10 {r}");
        // Similarities are the exact cosines.
        for (e, a) in exact.iter().zip(&approx) {
            if let Some(hit) = a.iter().find(|x| x.0 == e[0].0) {
                assert!((hit.1 - e[0].1).abs() < 1e-5);
            }
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("g.usearch");
        h.save(&p).unwrap();
        for view in [false, true] {
            let back = Hnsw::load(&p, view).unwrap();
            let again: Vec<_> = queries
                .iter()
                .map(|q| back.search(q, 10).unwrap())
                .collect();
            assert_eq!(again, approx);
        }
        assert!(h
            .search(&[0.0; 3], 10)
            .unwrap_err()
            .to_string()
            .contains("3 wide"));
        std::fs::write(&p, b"not an index").unwrap();
        assert!(Hnsw::load(&p, false).is_err());
    }

    #[test]
    fn exact_top_k_is_sorted_and_bounded() {
        let rows = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.6, 0.8]];
        let got = exact_top_k(&rows, &[1.0, 0.0], 5);
        assert_eq!(got.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 2, 1]);
        assert!(exact_top_k(&rows, &[1.0, 0.0], 0).is_empty());
    }
}
