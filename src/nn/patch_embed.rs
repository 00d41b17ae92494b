//! Patch embedding: a Conv2d with kernel = stride = patch, flattened to tokens.
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// Most patches (tokens) an image may be cut into: far beyond any ViT, far below what would
/// overflow a size computation or exhaust memory before the parameter store could refuse.
const MAX_PATCHES: usize = 1 << 20;

/// The one patch-grid check: an `image`-pixel side cut into whole `patch`-pixel patches, a
/// square grid of at most 2²⁰ of them.
pub fn check_patch_grid(image: usize, patch: usize) -> crate::Result<()> {
    if image == 0 || patch == 0 || !image.is_multiple_of(patch) {
        return Err(crate::Error::Config(format!(
            "image_size {image} is not divisible by patch_size {patch}"
        )));
    }
    let side = image / patch;
    if side.checked_mul(side).is_none_or(|n| n > MAX_PATCHES) {
        return Err(crate::Error::Config(format!(
            "image_size {image} with patch_size {patch} gives {side}x{side} patches (at most {MAX_PATCHES})"
        )));
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub struct PatchEmbed {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub patch: usize,
    pub in_channels: usize,
    pub dim: usize,
}

impl PatchEmbed {
    /// `{vb}.weight` `[D, C, P, P]` and `{vb}.bias` `[D]`, as `nn.Conv2d` (PyTorch's default init).
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        dim: usize,
        patch: usize,
        bias: bool,
    ) -> Result<Self> {
        let fan_in = in_channels * patch * patch;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let weight = vb.get_with_hints((dim, in_channels, patch, patch), "weight", init)?;
        let bias = if bias {
            Some(vb.get_with_hints(dim, "bias", init)?)
        } else {
            None
        };
        Ok(PatchEmbed {
            weight,
            bias,
            patch,
            in_channels,
            dim,
        })
    }

    /// [B, C, H, W] -> [B, (H/P)*(W/P), D]
    ///
    /// With kernel = stride the conv is one matmul: cut the image into patches
    /// ([B*Np, C*P*P], the same order as the conv weight) and multiply by the weight.
    /// This avoids a general im2col and its copies, and autograd flows through it.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let p = self.patch;
        if c != self.in_channels {
            candle_core::bail!(
                "patch embedding expects {} channels, got input of shape {:?}",
                self.in_channels,
                x.dims()
            )
        }
        for side in [h, w] {
            check_patch_grid(side, p).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        }
        let (gh, gw) = (h / p, w / p);
        // [B, C, gh, P, gw, P] -> [B, gh, gw, C, P, P] -> [B*gh*gw, C*P*P]
        let patches = x
            .reshape((b, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * gh * gw, c * p * p))?;
        let wm = self.weight.reshape((self.dim, c * p * p))?;
        let mut y = patches.matmul(&wm.t()?)?;
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        y.reshape((b, gh * gw, self.dim))
    }
}
