//! DETR (`DetrForObjectDetection`): a ResNet's last feature map, projected to `d_model` and
//! flattened into tokens with sine (or learned) 2-D positions from the downsampled pixel
//! mask; a post-norm encoder (positions on queries and keys); a post-norm decoder whose
//! `num_queries` object queries start at zero with learned query positions; a final norm; a
//! class head (`num_labels + 1`, the last "no object") and a 3-layer box MLP with a sigmoid.
//! Checkpoint names are transformers' on-disk ones (`model.backbone.conv_encoder.model…`).
use super::resnet::{Layout, ResNet, ResNetConfig};
use crate::nn::conv::{Conv2d, ConvSpec};
use crate::nn::Precision;
use crate::nn::{
    Activation, BlockConfig, BlockNames, Ctx, DecoderBlock, DecoderNames, EncoderBlock, LayerNorm,
    Linear, Then,
};
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `DetrConfig` (transformers' defaults: `facebook/detr-resnet-50`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DetrConfig {
    pub d_model: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub encoder_attention_heads: usize,
    pub decoder_attention_heads: usize,
    pub encoder_ffn_dim: usize,
    pub decoder_ffn_dim: usize,
    pub num_queries: usize,
    pub activation_function: String,
    pub position_embedding_type: String,
    pub auxiliary_loss: bool,
    pub use_timm_backbone: bool,
    /// The timm model name when `use_timm_backbone` (`resnet50`, …).
    pub backbone: Option<String>,
    /// timm's `create_model` arguments (`channels` is honoured).
    pub backbone_kwargs: Option<serde_json::Value>,
    /// transformers' `backbone_config`: an HF `ResNetConfig` (`model_type` `resnet`) or, as
    /// transformers 5 writes timm backbones, `model_type` `timm_backbone` with `backbone`,
    /// `out_indices` and `output_stride`.
    pub backbone_config: Option<serde_json::Value>,
    pub dilation: bool,
    pub num_channels: usize,
    pub id2label: BTreeMap<String, String>,
    /// Everything else transformers writes (loss coefficients, dropout, …), kept for saving.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for DetrConfig {
    fn default() -> Self {
        DetrConfig {
            d_model: 256,
            encoder_layers: 6,
            decoder_layers: 6,
            encoder_attention_heads: 8,
            decoder_attention_heads: 8,
            encoder_ffn_dim: 2048,
            decoder_ffn_dim: 2048,
            num_queries: 100,
            activation_function: "relu".into(),
            position_embedding_type: "sine".into(),
            auxiliary_loss: false,
            use_timm_backbone: true,
            backbone: Some("resnet50".into()),
            backbone_kwargs: None,
            backbone_config: None,
            dilation: false,
            num_channels: 3,
            id2label: (0..91)
                .map(|i| (i.to_string(), format!("LABEL_{i}")))
                .collect(),
            extra: Default::default(),
        }
    }
}

impl DetrConfig {
    pub fn num_labels(&self) -> usize {
        self.id2label.len()
    }

    /// The name of class `i` (`id2label`, else `LABEL_i`).
    pub fn label(&self, i: usize) -> String {
        self.id2label
            .get(&i.to_string())
            .cloned()
            .unwrap_or_else(|| format!("LABEL_{i}"))
    }

    /// The backbone's sizes, layout and the stage DETR reads, decided as transformers does: a
    /// `backbone_config` of `model_type` `timm_backbone` (what transformers 5 writes) or the
    /// older `use_timm_backbone` + `backbone` name is timm's ResNet, with `dilation` /
    /// `output_stride` 16 dilating the last stage (DC5); any other `backbone_config` is HF's
    /// `ResNetBackbone`, whose `out_features` name the stage (transformers ignores `dilation`
    /// there, and so does this).
    pub fn resnet(&self) -> Result<(ResNetConfig, Layout, usize)> {
        let get = |v: &serde_json::Value, k: &str| v.get(k).filter(|x| !x.is_null()).cloned();
        match &self.backbone_config {
            Some(v) if v.get("model_type").and_then(|m| m.as_str()) == Some("timm_backbone") => {
                let name = get(v, "backbone")
                    .and_then(|n| n.as_str().map(str::to_string))
                    .unwrap_or_else(|| "resnet50".into());
                let stride = match get(v, "output_stride") {
                    Some(s) => Some(s.as_u64().ok_or_else(|| {
                        Error::Config(format!("backbone_config.output_stride {s}: not a number"))
                    })? as usize),
                    None => None,
                };
                self.timm(&name, get(v, "channels"), get(v, "out_indices"), stride)
            }
            Some(v) => {
                match v.get("model_type").and_then(|m| m.as_str()) {
                    None | Some("resnet") => {}
                    Some(t) => {
                        return Err(Error::Config(format!(
                            "backbone_config model_type {t:?}: only resnet and timm_backbone (ResNets) are supported"
                        )))
                    }
                }
                let c: ResNetConfig = serde_json::from_value(v.clone())
                    .map_err(|e| Error::Config(format!("backbone_config: {e}")))?;
                let c = ResNetConfig {
                    num_channels: self.num_channels,
                    ..c
                };
                let stage = c.out_stage()?;
                Ok((c, Layout::Hf, stage))
            }
            None if self.use_timm_backbone => {
                let name = self.backbone.as_deref().unwrap_or("resnet50");
                let kw = self.backbone_kwargs.as_ref();
                let stride = match kw.and_then(|k| get(k, "output_stride")) {
                    Some(s) => s.as_u64().map(|s| s as usize),
                    None => self.dilation.then_some(16),
                };
                self.timm(
                    name,
                    kw.and_then(|k| get(k, "channels")),
                    kw.and_then(|k| get(k, "out_indices")),
                    stride,
                )
            }
            None => {
                let c = ResNetConfig {
                    num_channels: self.num_channels,
                    ..ResNetConfig::default()
                };
                Ok((c, Layout::Hf, 3))
            }
        }
    }

    /// timm's ResNet `name`, its feature maps `out_indices` (1–4 are `layer1…4`; only the
    /// stages up to the last are built, as timm's `features_only` does). `channels` is timm's
    /// `create_model` argument for other widths.
    fn timm(
        &self,
        name: &str,
        channels: Option<serde_json::Value>,
        out_indices: Option<serde_json::Value>,
        output_stride: Option<usize>,
    ) -> Result<(ResNetConfig, Layout, usize)> {
        let (bottleneck, mut depths): (bool, Vec<usize>) = match name {
            "resnet18" => (false, vec![2, 2, 2, 2]),
            "resnet34" => (false, vec![3, 4, 6, 3]),
            "resnet50" => (true, vec![3, 4, 6, 3]),
            "resnet101" => (true, vec![3, 4, 23, 3]),
            "resnet152" => (true, vec![3, 8, 36, 3]),
            other => {
                return Err(Error::Config(format!(
                    "timm backbone {other:?}: only resnet18/34/50/101/152"
                )))
            }
        };
        let channels: Vec<usize> = match channels {
            Some(v) => serde_json::from_value(v)
                .map_err(|e| Error::Config(format!("backbone channels: {e}")))?,
            None => vec![64, 128, 256, 512],
        };
        if channels.len() != depths.len() {
            return Err(Error::Config(format!(
                "backbone channels {channels:?}: {name} has {} stages",
                depths.len()
            )));
        }
        let last = match out_indices {
            Some(v) => {
                let idx: Vec<usize> = serde_json::from_value(v.clone())
                    .map_err(|e| Error::Config(format!("out_indices {v}: {e}")))?;
                match idx.last() {
                    Some(&i) if (1..=depths.len()).contains(&i) => i,
                    _ => {
                        return Err(Error::Config(format!(
                            "out_indices {v}: the last must be a stage, 1 to {}",
                            depths.len()
                        )))
                    }
                }
            }
            None => depths.len(),
        };
        depths.truncate(last);
        let expansion = if bottleneck { 4 } else { 1 };
        Ok((
            ResNetConfig {
                num_channels: self.num_channels,
                embedding_size: 64,
                hidden_sizes: channels[..last].iter().map(|c| c * expansion).collect(),
                depths,
                layer_type: if bottleneck { "bottleneck" } else { "basic" }.into(),
                output_stride,
                ..ResNetConfig::default()
            },
            Layout::Timm,
            last - 1,
        ))
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        for (name, v) in [
            ("d_model", self.d_model),
            ("encoder_ffn_dim", self.encoder_ffn_dim),
            ("decoder_ffn_dim", self.decoder_ffn_dim),
            ("num_queries", self.num_queries),
        ] {
            if v == 0 || v > 1 << 16 {
                return bad(format!("{name} {v} must be between 1 and 65536"));
            }
        }
        if self.encoder_layers > 64 || self.decoder_layers == 0 || self.decoder_layers > 64 {
            return bad(format!(
                "{} encoder and {} decoder layers",
                self.encoder_layers, self.decoder_layers
            ));
        }
        crate::nn::check_heads(self.d_model, self.encoder_attention_heads)?;
        crate::nn::check_heads(self.d_model, self.decoder_attention_heads)?;
        if !self.d_model.is_multiple_of(4) {
            return bad(format!(
                "d_model {} must be a multiple of 4 (each axis gets half, as sine/cosine pairs)",
                self.d_model
            ));
        }
        if self.num_labels() == 0 {
            return bad("id2label is empty".into());
        }
        match self.position_embedding_type.as_str() {
            "sine" | "learned" => {}
            t => {
                return bad(format!(
                    "position_embedding_type {t:?}: expected sine or learned"
                ))
            }
        }
        Activation::from_hf(&self.activation_function)?;
        self.resnet()?.0.validate()
    }
}

/// What one forward gives.
#[derive(Clone, Debug)]
pub struct DetrOutput {
    /// [B, Q, num_labels + 1].
    pub logits: Tensor,
    /// [B, Q, 4]: (cx, cy, w, h) relative to the padded image.
    pub pred_boxes: Tensor,
    /// [B, HW, D].
    pub encoder_last_hidden_state: Tensor,
    /// [B, Q, D] after the decoder's final norm.
    pub last_hidden_state: Tensor,
    /// With `auxiliary_loss`: the earlier decoder layers' (logits, boxes).
    pub auxiliary: Vec<(Tensor, Tensor)>,
    /// The backbone map's (height, width): the encoder's tokens are its cells, row-major.
    pub feature_size: (usize, usize),
}

/// Fresh query positions: N(0, 1), `nn.Embedding`'s default and what the DETR authors train
/// from. They are all that tells the queries apart (the decoder's input is zero), so a zero
/// init (candle's default) would keep every query identical for ever; transformers' 0.02
/// breaks the tie only slowly.
const QUERY_INIT: candle_nn::Init = candle_nn::Init::Randn {
    mean: 0.0,
    stdev: 1.0,
};
const UNIFORM_01: candle_nn::Init = candle_nn::Init::Uniform { lo: 0.0, up: 1.0 };

#[derive(Clone, Debug)]
enum PositionEmbedding {
    Sine,
    Learned { rows: Tensor, columns: Tensor },
}

#[derive(Clone, Debug)]
pub struct Detr {
    backbone: ResNet,
    /// The backbone stage whose map is the encoder's input.
    stage: usize,
    input_projection: Conv2d,
    position: PositionEmbedding,
    query_pos: Tensor,
    encoder: Vec<EncoderBlock>,
    decoder: Vec<DecoderBlock>,
    decoder_norm: LayerNorm,
    class_head: Linear,
    box_head: [Linear; 3],
    /// [`Detr::freeze_backbone`] was called.
    backbone_frozen: bool,
    pub config: DetrConfig,
}

impl Detr {
    /// Where the model's weights live (inputs go there).
    pub fn device(&self) -> &candle_core::Device {
        self.query_pos.device()
    }

    /// The CNN backbone (to time or run it alone).
    pub fn backbone(&self) -> &ResNet {
        &self.backbone
    }

    /// The backbone map the encoder reads, `[B, C, H/s, W/s]`.
    pub fn backbone_map(&self, pixel_values: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let mut feats = self.backbone.forward(pixel_values, ctx)?;
        if self.stage >= feats.len() {
            return Err(Error::Msg("the backbone has no such stage".into()));
        }
        Ok(feats.swap_remove(self.stage))
    }

    /// From now on the backbone runs as in evaluation (running statistics) and passes no
    /// gradient: training the rest costs no backbone backward (after its pretraining).
    pub fn freeze_backbone(&mut self) {
        self.backbone_frozen = true;
    }

    /// Channels of [`Detr::backbone_map`].
    pub fn backbone_channels(&self) -> Result<usize> {
        self.backbone
            .config
            .hidden_sizes
            .get(self.stage)
            .copied()
            .ok_or_else(|| Error::Msg("the backbone has no such stage".into()))
    }

    /// Trains the backbone's batch norms (batch statistics, running averages) instead of
    /// keeping them frozen: for a DETR trained from scratch ([`ResNet::learn_batch_statistics`]).
    pub fn learn_backbone_statistics(&mut self) -> Result<()> {
        self.backbone.learn_batch_statistics()
    }

    /// `vb` at the checkpoint's root (`model.…`, `class_labels_classifier`, `bbox_predictor`).
    pub fn new(vb: VarBuilder, cfg: &DetrConfig) -> Result<Self> {
        cfg.validate()?;
        let (rcfg, layout, stage) = cfg.resnet()?;
        let m = vb.pp("model");
        let backbone = ResNet::new(
            m.pp("backbone").pp("conv_encoder").pp("model"),
            &rcfg,
            layout,
        )?;
        let last = rcfg.hidden_sizes[stage];
        let d = cfg.d_model;
        let input_projection = Conv2d::new(
            m.pp("input_projection"),
            &ConvSpec {
                bias: true,
                ..ConvSpec::same(last, d, 1, 1)
            },
        )?;
        let position = if cfg.position_embedding_type == "learned" {
            // transformers 5 writes `model.position_embedding`; 4 wrote it under the backbone.
            let p = if m.contains_tensor("position_embedding.row_embeddings.weight") {
                m.pp("position_embedding")
            } else {
                m.pp("backbone").pp("position_embedding")
            };
            PositionEmbedding::Learned {
                // Fresh: U(0, 1), as transformers' `_init_weights` draws them.
                rows: p
                    .pp("row_embeddings")
                    .get_with_hints((50, d / 2), "weight", UNIFORM_01)?,
                columns: p.pp("column_embeddings").get_with_hints(
                    (50, d / 2),
                    "weight",
                    UNIFORM_01,
                )?,
            }
        } else {
            PositionEmbedding::Sine
        };
        let query_pos = m.pp("query_position_embeddings").get_with_hints(
            (cfg.num_queries, d),
            "weight",
            QUERY_INIT,
        )?;
        let act = Activation::from_hf(&cfg.activation_function)?;
        let block = |heads, mlp_dim| BlockConfig {
            dim: d,
            heads,
            mlp_dim,
            act,
            pre_norm: false,
            eps: 1e-5,
            qkv_bias: true,
            dropout: 0.0,
            mlp_dropout: 0.0,
            attn_dropout: 0.0,
        };
        let enc = block(cfg.encoder_attention_heads, cfg.encoder_ffn_dim);
        let encoder = (0..cfg.encoder_layers)
            .map(|i| EncoderBlock::new(m.pp("encoder").pp("layers").pp(i), &BlockNames::DETR, &enc))
            .collect::<candle_core::Result<_>>()?;
        let dec = block(cfg.decoder_attention_heads, cfg.decoder_ffn_dim);
        let decoder = (0..cfg.decoder_layers)
            .map(|i| {
                DecoderBlock::new(
                    m.pp("decoder").pp("layers").pp(i),
                    &DecoderNames::DETR,
                    &dec,
                )
            })
            .collect::<candle_core::Result<_>>()?;
        let decoder_norm = LayerNorm::new(m.pp("decoder").pp("layernorm"), d, 1e-5)?;
        let class_head = Linear::new(
            vb.pp("class_labels_classifier"),
            d,
            cfg.num_labels() + 1,
            true,
        )?;
        let bp = vb.pp("bbox_predictor").pp("layers");
        let box_head = [
            Linear::new(bp.pp(0), d, d, true)?,
            Linear::new(bp.pp(1), d, d, true)?,
            Linear::new(bp.pp(2), d, 4, true)?,
        ];
        Ok(Detr {
            backbone,
            backbone_frozen: false,
            stage,
            input_projection,
            position,
            query_pos,
            encoder,
            decoder,
            decoder_norm,
            class_head,
            box_head,
            config: cfg.clone(),
        })
    }

    /// `F.interpolate(mask, size)` with mode "nearest": source index ⌊dst · in/out⌋.
    fn downsample_mask(mask: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let (_b, mh, mw) = mask.dims3()?;
        let pick = |n_out: usize, n_in: usize| -> Vec<u32> {
            let scale = n_in as f32 / n_out as f32;
            (0..n_out)
                .map(|i| ((i as f32 * scale).floor() as usize).min(n_in - 1) as u32)
                .collect()
        };
        let dev = mask.device();
        let rows = Tensor::new(pick(h, mh), dev)?;
        let cols = Tensor::new(pick(w, mw), dev)?;
        Ok(mask.index_select(&rows, 1)?.index_select(&cols, 2)?)
    }

    /// DETR's sine embedding of a [B, h, w] f32 mask (1 = real): [B, h·w, D].
    fn sine_positions(mask: &Tensor, d: usize) -> Result<Tensor> {
        let (b, h, w) = mask.dims3()?;
        let npf = d / 2;
        let scale = 2.0 * std::f32::consts::PI;
        let y = mask.cumsum(1)?;
        let x = mask.cumsum(2)?;
        let eps = 1e-6;
        let y = (y.broadcast_div(&(y.narrow(1, h - 1, 1)? + eps)?)? * scale as f64)?;
        let x = (x.broadcast_div(&(x.narrow(2, w - 1, 1)? + eps)?)? * scale as f64)?;
        let dim_t: Vec<f32> = (0..npf)
            .map(|i| 10000f32.powf((2 * (i / 2)) as f32 / npf as f32))
            .collect();
        let dim_t = Tensor::from_vec(dim_t, (1, 1, 1, npf), mask.device())?;
        let embed = |e: &Tensor| -> Result<Tensor> {
            let p = e.unsqueeze(3)?.broadcast_div(&dim_t)?; // [B, h, w, npf]
                                                            // Interleave sin(even), cos(odd): stack on a new last axis, then flatten.
            let even = p.reshape((b, h, w, npf / 2, 2))?.narrow(4, 0, 1)?.sin()?;
            let odd = p.reshape((b, h, w, npf / 2, 2))?.narrow(4, 1, 1)?.cos()?;
            Ok(Tensor::cat(&[even, odd], 4)?.reshape((b, h, w, npf))?)
        };
        let pos = Tensor::cat(&[embed(&y)?, embed(&x)?], 3)?; // [B, h, w, D]
        Ok(pos.reshape((b, h * w, d))?)
    }

    /// `pixel_values` [B, 3, H, W], `pixel_mask` [B, H, W] (u8, 1 on real pixels).
    pub fn forward(
        &self,
        pixel_values: &Tensor,
        pixel_mask: &Tensor,
        ctx: &mut Ctx,
    ) -> Result<DetrOutput> {
        let feat = self.features(pixel_values, ctx)?;
        self.forward_features(&feat, pixel_mask, ctx)
    }

    /// Whether [`Detr::freeze_backbone`] was called: the backbone map then depends on the
    /// pixels alone, so a trainer may keep it between epochs.
    pub fn backbone_is_frozen(&self) -> bool {
        self.backbone_frozen
    }

    /// The map [`Detr::forward_features`] reads: [`Detr::backbone_map`], run as in evaluation
    /// and detached once the backbone is frozen.
    pub fn features(&self, pixel_values: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        if self.backbone_frozen {
            Ok(self.backbone_map(pixel_values, &Ctx::inference())?.detach())
        } else {
            self.backbone_map(pixel_values, ctx)
        }
    }

    /// Everything after the backbone: `feat` [B, C, H/s, W/s] from [`Detr::features`] and the
    /// full-size `pixel_mask` [B, H, W].
    pub fn forward_features(
        &self,
        feat: &Tensor,
        pixel_mask: &Tensor,
        ctx: &mut Ctx,
    ) -> Result<DetrOutput> {
        let (b, _c, h, w) = feat.dims4()?;
        let d = self.config.d_model;
        let mask = Self::downsample_mask(&pixel_mask.to_dtype(DType::F32)?, h, w)?; // [B, h, w]
                                                                                    // [B, D, h, w] -> [B, hw, D]
        let tokens = self
            .input_projection
            .forward(feat)?
            .flatten_from(2)?
            .transpose(1, 2)?
            .contiguous()?;
        let pos = match &self.position {
            PositionEmbedding::Sine => Self::sine_positions(&mask, d)?,
            PositionEmbedding::Learned { rows, columns } => {
                if h > 50 || w > 50 {
                    return Err(Error::Shape(format!(
                        "learned positions cover 50×50 feature maps, got {h}×{w}"
                    )));
                }
                let x = columns
                    .narrow(0, 0, w)?
                    .unsqueeze(0)?
                    .broadcast_as((h, w, d / 2))?;
                let y = rows
                    .narrow(0, 0, h)?
                    .unsqueeze(1)?
                    .broadcast_as((h, w, d / 2))?;
                // [1, hw, D]: the same for every image (added by broadcast).
                Tensor::cat(&[x, y], 2)?.reshape((1, h * w, d))?
            }
        };
        // Keys on padding get -inf: [B, 1, 1, hw].
        let keep = mask.reshape((b, 1, 1, h * w))?;
        let key_mask = ((keep - 1.0)? * 1e30)?.clamp(f32::MIN as f64, 0.0)?;
        let mut memory = tokens;
        for layer in &self.encoder {
            memory = layer.forward_with_positions(&memory, Some(&pos), Some(&key_mask), ctx)?;
        }
        let q = self.config.num_queries;
        // [1, Q, D], added to every image's queries by broadcast.
        let query_pos = self.query_pos.unsqueeze(0)?;
        let mut x = Tensor::zeros((b, q, d), memory.dtype(), memory.device())?;
        let mut intermediate = vec![];
        for layer in &self.decoder {
            x = layer.forward(
                &x,
                Some(&query_pos),
                &memory,
                Some(&pos),
                Some(&key_mask),
                ctx,
            )?;
            if self.config.auxiliary_loss {
                // transformers feeds the normed state on (the original DETR does not).
                x = self.decoder_norm.forward(&x)?;
                intermediate.push(x.clone());
            }
        }
        let last = self.decoder_norm.forward(&x)?;
        let (logits, pred_boxes) = self.heads(&last, ctx)?;
        let mut auxiliary = vec![];
        if self.config.auxiliary_loss {
            for h in &intermediate[..intermediate.len() - 1] {
                auxiliary.push(self.heads(h, ctx)?);
            }
        }
        Ok(DetrOutput {
            logits,
            pred_boxes,
            encoder_last_hidden_state: memory,
            feature_size: (h, w),
            last_hidden_state: last,
            auxiliary,
        })
    }

    fn heads(&self, h: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Tensor)> {
        let logits = self.class_head.forward(h, Then::none(), ctx)?;
        let r = self.box_head[0].forward(h, Then::act(Activation::Relu), ctx)?;
        let r = self.box_head[1].forward(&r, Then::act(Activation::Relu), ctx)?;
        let boxes = candle_nn::ops::sigmoid(&self.box_head[2].forward(&r, Then::none(), ctx)?)?;
        Ok((logits, boxes))
    }
}

impl crate::models::Pretrained for Detr {
    type Config = DetrConfig;

    fn from_config(
        config: &DetrConfig,
        opts: &crate::models::LoadOptions,
    ) -> Result<crate::models::Loaded<Self>> {
        super::load::fresh(opts, |vb| Detr::new(vb, config))
    }

    /// Any missing, unexpected or mis-shaped tensor is an error naming them.
    fn from_checkpoint(
        ckpt: crate::models::Checkpoint,
        opts: &crate::models::LoadOptions,
    ) -> Result<crate::models::Loaded<Self>> {
        ckpt.expect(crate::models::Family::Detr)?;
        let mut config: DetrConfig = ckpt.config()?;
        // `num_labels` unlike the checkpoint's: a fresh class head (transformers'
        // `ignore_mismatched_sizes`), labels `LABEL_i` until the caller names them.
        let fresh_head = opts.num_labels.filter(|&n| n != config.num_labels());
        if let Some(n) = fresh_head {
            if n == 0 {
                return Err(Error::Config("num_labels must be at least 1".into()));
            }
            config.id2label = (0..n)
                .map(|i| (i.to_string(), format!("LABEL_{i}")))
                .collect();
        }
        let head = "class_labels_classifier.";
        // Batch-norm step counters are buffers DETR drops on load.
        let keep = |k: &str| {
            let dropped_head = fresh_head.is_some() && k.starts_with(head);
            !(k.ends_with("num_batches_tracked") || dropped_head)
        };
        let fresh_ok = |k: &str| fresh_head.is_some() && k.starts_with(head);
        super::load::strict_with_fresh(ckpt, opts, keep, fresh_ok, |vb| Detr::new(vb, &config))
    }

    /// Any precision (`F32`; `BF16` and `Int8` run in fp32 here): the backbone's convolutions
    /// folded with their norms and packed once for tessera's fp32 GEMM; the transformer stays
    /// on candle's ops.
    fn with_precision(&self, _dtype: Precision) -> Result<Self> {
        let mut m = self.clone();
        m.backbone.prepare()?;
        Ok(m)
    }

    fn config(&self) -> &DetrConfig {
        &self.config
    }

    fn config_json(&self) -> Result<serde_json::Value> {
        let mut v = serde_json::to_value(&self.config).map_err(|e| Error::Msg(e.to_string()))?;
        v["model_type"] = "detr".into();
        v["architectures"] = serde_json::json!(["DetrForObjectDetection"]);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: serde_json::Value) -> DetrConfig {
        serde_json::from_value(v).unwrap()
    }

    /// The backbone is chosen as transformers chooses it, from both config generations.
    #[test]
    fn backbone_layout_follows_the_config() {
        // transformers 4 / facebook/detr-resnet-50: timm by name, DC5 through `dilation`.
        let (c, l, s) = cfg(serde_json::json!({"use_timm_backbone": true, "backbone": "resnet50", "dilation": true}))
            .resnet()
            .unwrap();
        assert_eq!((l, s, c.output_stride), (Layout::Timm, 3, Some(16)));
        assert_eq!(c.hidden_sizes, vec![256, 512, 1024, 2048]);
        // transformers 5 writes timm backbones as backbone_config (no use_timm_backbone key).
        let (c, l, s) = cfg(serde_json::json!({"backbone_config": {"model_type": "timm_backbone", "backbone": "resnet18", "out_indices": [1, 2, 3]}}))
            .resnet()
            .unwrap();
        assert_eq!((l, s, c.depths.clone()), (Layout::Timm, 2, vec![2, 2, 2]));
        assert_eq!(c.layer_type, "basic");
        // An HF ResNet read at an earlier stage; dilation is ignored there, as transformers does.
        let (c, l, s) = cfg(serde_json::json!({"use_timm_backbone": false, "dilation": true,
            "backbone_config": {"model_type": "resnet", "hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1], "out_features": ["stage3"]}}))
        .resnet()
        .unwrap();
        assert_eq!((l, s, c.output_stride), (Layout::Hf, 2, None));
        for (bad, says) in [
            (
                serde_json::json!({"backbone_config": {"model_type": "swin"}}),
                "swin",
            ),
            (
                serde_json::json!({"backbone_config": {"model_type": "resnet", "hidden_sizes": [8, 16], "depths": [1, 1], "out_features": ["stage4"]}}),
                "stage1…stage2",
            ),
            (
                serde_json::json!({"backbone_config": {"model_type": "timm_backbone", "backbone": "convnext_tiny"}}),
                "convnext_tiny",
            ),
            (
                serde_json::json!({"backbone_config": {"model_type": "timm_backbone", "backbone": "resnet50", "output_stride": 12}}),
                "output_stride 12",
            ),
        ] {
            let e = cfg(bad).validate().unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}
