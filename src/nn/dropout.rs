//! Dropout as a counter-based mask: each element's keep/drop decision is a hash of (seed, index),
//! so nothing is stored between forward and backward, and a resumed run replays the same masks.
//! One mask generator for `Ctx::dropout` and the attention kernels' probability dropout.
use super::math::multiversion;
use candle_core::{Result, Tensor};
use rayon::prelude::*;

/// Counter-based dropout, shared by `Ctx::dropout` and attention: element `i` of a tensor is
/// dropped when (half of) the SplitMix64 finaliser of `seed + (i/2 + 1)·γ` is below
/// `threshold`; kept elements are scaled by `keep`. Nothing is stored: a backward pass
/// regenerates the same decisions from the seed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DropoutMask {
    seed: u64,
    threshold: u64,
    keep: f32,
}

multiversion! {
    /// `v[j] = v[j] · mask(offset + j)`.
    fn dropout_inplace(v: &mut [f32], offset: usize, seed: u64, threshold: u64, keep: f32) {
        for (j, x) in v.iter_mut().enumerate() {
            let i = offset + j;
            let mut z =
                seed.wrapping_add(((i as u64 >> 1) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let half = if i & 1 == 0 { z & 0xFFFF_FFFF } else { z >> 32 };
            *x = if half < threshold { 0.0 } else { *x * keep };
        }
    }
}

impl DropoutMask {
    /// Drop probability `p` in [0, 1).
    pub(crate) fn new(p: f64, seed: u64) -> Self {
        DropoutMask {
            seed,
            threshold: (p * 4294967296.0) as u64,
            keep: (1.0 / (1.0 - p)) as f32,
        }
    }

    /// Applies the mask of elements `offset..offset + v.len()` in place.
    pub(crate) fn apply_at(&self, v: &mut [f32], offset: usize) {
        dropout_inplace(v, offset, self.seed, self.threshold, self.keep)
    }

    /// `x` with the mask applied, on all threads.
    pub(crate) fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut out = x.to_vec();
        const CHUNK: usize = 1 << 15;
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, o)| self.apply_at(o, c * CHUNK));
        out
    }

    /// Attention probabilities of (image, head) `task`, an [n, n] block: element offsets as if
    /// the [B·H, n, n] tensor existed.
    pub(crate) fn apply_block(&self, task: usize, s: &mut [f32]) {
        self.apply_at(s, task * s.len())
    }
}

impl candle_core::CustomOp1 for DropoutMask {
    fn name(&self) -> &'static str {
        "tessera-dropout"
    }

    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        Ok((
            candle_core::CpuStorage::F32(self.apply(super::cpu::slice(s, l, "dropout")?)),
            l.shape().clone(),
        ))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // The gradient goes through the same mask (a constant): one op, no mask tensor kept
        // in the graph and no gradient computed for it.
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(self)?))
    }
}

/// Inverted dropout of `x` with probability `p` in (0, 1) and mask seed `seed`: the custom op on
/// CPU f32, the same mask as a tensor on other devices and dtypes.
pub(crate) fn dropout(x: &Tensor, p: f64, seed: u64) -> Result<Tensor> {
    let op = DropoutMask::new(p, seed);
    if super::cpu::kernels_apply(x) {
        return x.contiguous()?.apply_op1(op);
    }
    if x.device().is_cuda() {
        // Drawn on the GPU (a host mask would cross the bus at every dropout): cuRAND reseeded
        // with the mask's seed, so a run and its resume draw the same masks there (not the
        // CPU's masks: another generator).
        let dev = x.device();
        dev.set_seed(seed)?;
        let keep = Tensor::rand(0f32, 1f32, x.shape(), dev)?.ge(p)?;
        return x * (keep.to_dtype(x.dtype())? * (1.0 / (1.0 - p)))?;
    }
    let ones = vec![1f32; x.elem_count()];
    let mask = Tensor::from_vec(op.apply(&ones), x.shape(), x.device())?.to_dtype(x.dtype())?;
    x * mask
}
