//! OPT (`facebook/opt-*`), the language model of `Salesforce/blip2-opt-*`, with HF tensor names
//! (`model.decoder.*`, `lm_head`), from the shared blocks: each layer is the one
//! [`EncoderBlock`] (pre-norm, or post-norm as opt-350m) run causally with its KV cache.
//!
//! Quirks kept: learned positions are looked up at `position + 2` (fairseq's offset);
//! `word_embed_proj_dim` may differ from `hidden_size` (`project_in` / `project_out`, no bias);
//! the final LayerNorm exists only for pre-norm models without `_remove_final_layer_norm`; the
//! LM head has no bias and is tied to `embed_tokens` unless `tie_word_embeddings` is false.
use crate::models::checks;
use crate::models::load::{fresh, strict, Checkpoint, LoadOptions, Loaded, Pretrained};
use crate::nn::generate::Decoder;
use crate::nn::Precision;
use crate::nn::{
    check_heads, Activation, BlockConfig, BlockNames, Ctx, EncoderBlock, KvCache, LayerNorm,
    Linear, Then,
};
use crate::{Error, Result};
use candle_core::{DType, IndexOp, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// fairseq's learned positions start at 2 (`OPTLearnedPositionalEmbedding.offset`).
pub const POSITION_OFFSET: usize = 2;

/// `transformers.OPTConfig` (defaults equal).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub ffn_dim: usize,
    pub max_position_embeddings: usize,
    pub do_layer_norm_before: bool,
    #[serde(rename = "_remove_final_layer_norm")]
    pub remove_final_layer_norm: bool,
    /// `None`: `hidden_size`.
    pub word_embed_proj_dim: Option<usize>,
    pub num_attention_heads: usize,
    pub activation_function: Activation,
    pub enable_bias: bool,
    pub layer_norm_elementwise_affine: bool,
    pub tie_word_embeddings: bool,
    pub pad_token_id: Option<u32>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for OptConfig {
    fn default() -> Self {
        OptConfig {
            vocab_size: 50272,
            hidden_size: 768,
            num_hidden_layers: 12,
            ffn_dim: 3072,
            max_position_embeddings: 2048,
            do_layer_norm_before: true,
            remove_final_layer_norm: false,
            word_embed_proj_dim: None,
            num_attention_heads: 12,
            activation_function: Activation::Relu,
            enable_bias: true,
            layer_norm_elementwise_affine: true,
            tie_word_embeddings: true,
            pad_token_id: Some(1),
            bos_token_id: Some(2),
            eos_token_id: Some(2),
            extra: serde_json::Map::new(),
        }
    }
}

impl OptConfig {
    /// The width of the token embeddings and of the LM head's input.
    pub fn embed_dim(&self) -> usize {
        self.word_embed_proj_dim.unwrap_or(self.hidden_size)
    }

    /// Checks what the model cannot be built with, naming the field (`prefix` is where the
    /// config sits, e.g. `text_config.`).
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let f = |name: &str| format!("{prefix}{name}");
        checks::sizes(&[
            (&f("vocab_size"), self.vocab_size),
            (&f("hidden_size"), self.hidden_size),
            (&f("num_hidden_layers"), self.num_hidden_layers),
            (&f("ffn_dim"), self.ffn_dim),
            (&f("max_position_embeddings"), self.max_position_embeddings),
            (&f("num_attention_heads"), self.num_attention_heads),
            (&f("word_embed_proj_dim"), self.embed_dim()),
        ])?;
        check_heads(self.hidden_size, self.num_attention_heads)?;
        if let Some(t) = self.extra.get("model_type").and_then(|v| v.as_str()) {
            if t != "opt" {
                return Err(Error::Config(format!(
                    "{}model_type {t:?}: tessera's BLIP-2 reads OPT language models only",
                    prefix
                )));
            }
        }
        // Every released OPT has both; a model without them would need other layers.
        if !self.enable_bias {
            return Err(Error::Config(format!(
                "{} false is not supported (every released OPT has biases)",
                f("enable_bias")
            )));
        }
        if !self.layer_norm_elementwise_affine {
            return Err(Error::Config(format!(
                "{} false is not supported (every released OPT has affine LayerNorms)",
                f("layer_norm_elementwise_affine")
            )));
        }
        for (name, id) in [
            ("pad_token_id", self.pad_token_id),
            ("bos_token_id", self.bos_token_id),
            ("eos_token_id", self.eos_token_id),
        ] {
            if let Some(id) = id.filter(|&i| i as usize >= self.vocab_size) {
                return Err(Error::Config(format!(
                    "{} {id} is outside the vocabulary ({})",
                    f(name),
                    self.vocab_size
                )));
            }
        }
        Ok(())
    }
}

impl BlockNames {
    /// transformers' `OPTDecoderLayer` (BART's names, as DETR's encoder layer).
    pub const OPT: BlockNames = BlockNames::DETR;
}

/// `OPTForCausalLM`: the decoder (`model.decoder`) and the LM head.
#[derive(Clone, Debug)]
pub struct OptLm {
    pub config: OptConfig,
    /// [V, Dw]
    embed_tokens: Tensor,
    /// [P + 2, D]
    embed_positions: Tensor,
    project_in: Option<Linear>,
    project_out: Option<Linear>,
    final_layer_norm: Option<LayerNorm>,
    layers: Vec<EncoderBlock>,
    /// [V, Dw], no bias: `embed_tokens` itself when tied. Built once, so a prepared model packs
    /// it once.
    lm_head: Linear,
}

/// LayerNorm's eps in OPT (`nn.LayerNorm`'s default; the config has no field for it).
const EPS: f64 = 1e-5;

impl OptLm {
    /// `vb` at the causal LM (`language_model` in BLIP-2).
    pub fn new(vb: VarBuilder, c: &OptConfig) -> Result<Self> {
        c.validate("")?;
        let dec = vb.pp("model.decoder");
        let (d, dw) = (c.hidden_size, c.embed_dim());
        let std = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let embed_tokens = dec.get_with_hints((c.vocab_size, dw), "embed_tokens.weight", std)?;
        let embed_positions = dec.get_with_hints(
            (c.max_position_embeddings + POSITION_OFFSET, d),
            "embed_positions.weight",
            std,
        )?;
        let (project_in, project_out) = if dw != d {
            (
                Some(Linear::new(dec.pp("project_in"), dw, d, false)?),
                Some(Linear::new(dec.pp("project_out"), d, dw, false)?),
            )
        } else {
            (None, None)
        };
        let final_layer_norm = (c.do_layer_norm_before && !c.remove_final_layer_norm)
            .then(|| LayerNorm::new(dec.pp("final_layer_norm"), d, EPS))
            .transpose()?;
        let block = BlockConfig {
            dim: d,
            heads: c.num_attention_heads,
            mlp_dim: c.ffn_dim,
            act: c.activation_function,
            pre_norm: c.do_layer_norm_before,
            eps: EPS,
            qkv_bias: c.enable_bias,
            dropout: 0.0,
            mlp_dropout: 0.0,
            attn_dropout: 0.0,
        };
        let layers = (0..c.num_hidden_layers)
            .map(|i| EncoderBlock::new(dec.pp(format!("layers.{i}")), &BlockNames::OPT, &block))
            .collect::<candle_core::Result<_>>()?;
        let lm_head = if c.tie_word_embeddings {
            Linear::from_parts(embed_tokens.clone(), None)
        } else {
            Linear::new(vb.pp("lm_head"), dw, c.vocab_size, false)?
        };
        Ok(OptLm {
            config: c.clone(),
            embed_tokens,
            embed_positions,
            project_in,
            project_out,
            final_layer_norm,
            layers,
            lm_head,
        })
    }

    /// Packs every linear and the LM head for inference in `dtype`.
    pub fn prepare(&mut self, dtype: Precision) -> Result<()> {
        for l in &mut self.layers {
            l.prepare(dtype)?;
        }
        for p in [&mut self.project_in, &mut self.project_out]
            .into_iter()
            .flatten()
        {
            p.prepare(dtype)?;
        }
        Ok(self.lm_head.prepare(dtype)?)
    }

    /// Fresh caches, one per layer.
    pub fn caches(&self) -> Vec<KvCache> {
        vec![KvCache::default(); self.layers.len()]
    }

    /// Token ids [R, N] (u32) -> their embeddings [R, N, Dw]; an id outside the vocabulary is an
    /// error.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (r, n) = ids.dims2()?;
        let v: Vec<u32> = ids.flatten_all()?.to_vec1()?;
        if let Some(bad) = v.iter().find(|&&i| i as usize >= self.config.vocab_size) {
            return Err(Error::Shape(format!(
                "token id {bad} is outside 0..{}",
                self.config.vocab_size
            )));
        }
        Ok(self
            .embed_tokens
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((r, n, self.config.embed_dim()))?)
    }

    /// Input embeddings [R, N, Dw] at rows `table` [R, N] (u32) of the position table (a
    /// position plus [`POSITION_OFFSET`]: see [`OptLm::table_rows`]) -> final states [R, N, Dw].
    /// `mask` is additive over the cached keys and these ([R or 1, 1, N, T]); each layer's keys
    /// and values go to `caches`.
    pub fn forward_embeds(
        &self,
        x: &Tensor,
        table: &Tensor,
        mask: Option<&Tensor>,
        caches: &mut [KvCache],
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let (r, n, _) = x.dims3()?;
        if caches.len() != self.layers.len() {
            return Err(Error::Shape(format!(
                "{} caches for {} layers",
                caches.len(),
                self.layers.len()
            )));
        }
        let limit = self.config.max_position_embeddings;
        let rows: Vec<u32> = table.flatten_all()?.to_vec1()?;
        if let Some(bad) = rows
            .iter()
            .find(|&&p| p as usize >= limit + POSITION_OFFSET)
        {
            return Err(Error::Shape(format!(
                "position {} is past max_position_embeddings {limit}",
                *bad as usize - POSITION_OFFSET
            )));
        }
        // [R*N] -> [R, N, D]
        let p = self
            .embed_positions
            .index_select(&table.flatten_all()?, 0)?
            .reshape((r, n, self.config.hidden_size))?;
        let x = match &self.project_in {
            Some(l) => l.forward(x, Then::none(), ctx)?,
            None => x.clone(),
        };
        let mut h = (x + p)?;
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            h = layer.forward_cached(&h, mask, cache, ctx)?;
        }
        if let Some(ln) = &self.final_layer_norm {
            h = ln.forward(&h)?;
        }
        Ok(match &self.project_out {
            Some(l) => l.forward(&h, Then::none(), ctx)?,
            None => h,
        })
    }

    /// The position-table rows of sequences with 0/1 keep rows `keep`, as `OPTDecoder` computes
    /// them: `cumsum(keep) * keep - 1` plus the offset (row 1 under padding).
    pub fn table_rows(keep: &[Vec<u8>]) -> Vec<Vec<u32>> {
        keep.iter()
            .map(|row| {
                let mut c = 0u32;
                row.iter()
                    .map(|&k| {
                        c += u32::from(k);
                        (c * u32::from(k) + POSITION_OFFSET as u32) - 1
                    })
                    .collect()
            })
            .collect()
    }

    /// Teacher-forced logits [B, T, V] of `ids` [B, T] (u32) with 0/1 keep rows `keep` (left or
    /// right padding; all ones when `None`), as `OPTForCausalLM(input_ids, attention_mask)`.
    /// `features` ([B, Q, Dw] and their placeholder id) replace the placeholders' embeddings
    /// (see [`place_features`]), as a multimodal model's forward does.
    pub fn logits(
        &self,
        ids: &Tensor,
        keep: Option<&[Vec<u8>]>,
        features: Option<(&Tensor, u32)>,
    ) -> Result<Tensor> {
        let ids = ids.to_dtype(DType::U32)?;
        let (b, t) = ids.dims2()?;
        let ones = vec![vec![1u8; t]; b];
        let keep = keep.unwrap_or(&ones);
        if keep.len() != b || keep.iter().any(|r| r.len() != t) {
            return Err(Error::Shape(format!(
                "a keep mask for {b}x{t} ids is needed"
            )));
        }
        let dev = ids.device();
        let pos = Tensor::new(Self::table_rows(keep), dev)?;
        let mask = crate::nn::generate::causal_padding_mask(keep, t, dev)?;
        let mut ctx = Ctx::inference();
        let mut x = self.embed(&ids)?;
        if let Some((f, token)) = features {
            x = place_features(&x, &ids, f, token)?;
        }
        let h = self.forward_embeds(&x, &pos, Some(&mask), &mut self.caches(), &mut ctx)?;
        self.head(&h, &mut ctx)
    }

    /// Continues `prompts` (left padded) as `OPTForCausalLM.generate` does.
    pub fn generate(
        &self,
        prompts: &crate::nn::generate::Prompts,
        cfg: &crate::nn::generate::GenerationConfig,
    ) -> Result<crate::nn::generate::Generated> {
        let dev = self.embed_tokens.device().clone();
        crate::nn::generate::generate(&mut OptDecoding::new(self), prompts, cfg, &dev)
    }

    /// OPT's generation settings from its config: eos and pad.
    pub fn generation_defaults(&self) -> crate::nn::generate::GenerationConfig {
        crate::nn::generate::GenerationConfig {
            eos_token_id: self.config.eos_token_id,
            pad_token_id: self.config.pad_token_id,
            ..Default::default()
        }
    }

    /// States [.., Dw] -> logits [.., V].
    pub fn head(&self, h: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        Ok(self.lm_head.forward(h, Then::none(), ctx)?)
    }
}

/// Input embeddings [R, N, Dw] with each row's placeholder tokens `image` (in `ids` [R, N])
/// replaced, in order, by that row's features [R, Q, Dw] (transformers' `masked_scatter` of a
/// multimodal model's image features). A row with other than Q placeholders is an error
/// (transformers would shift images across rows).
pub fn place_features(x: &Tensor, ids: &Tensor, features: &Tensor, image: u32) -> Result<Tensor> {
    let (r, n, d) = x.dims3()?;
    let (fr, q, fd) = features.dims3()?;
    if fr != r || fd != d {
        return Err(Error::Shape(format!(
            "image features {:?} for embeddings {:?}",
            features.dims(),
            x.dims()
        )));
    }
    let rows: Vec<Vec<u32>> = ids.to_vec2()?;
    // Index into [x rows (R*N) ; feature rows (R*Q)].
    let mut index = Vec::with_capacity(r * n);
    for (i, row) in rows.iter().enumerate() {
        let mut k = 0;
        for (j, &id) in row.iter().enumerate() {
            if id == image {
                if k < q {
                    index.push((r * n + i * q + k) as u32);
                }
                k += 1;
            } else {
                index.push((i * n + j) as u32);
            }
        }
        if k != q {
            return Err(Error::Shape(format!(
                "row {i} has {k} image tokens ({image}); the model puts its {q} query outputs \
                 at exactly {q} of them (num_query_tokens)"
            )));
        }
    }
    let all = Tensor::cat(
        &[
            x.reshape((r * n, d))?,
            features.to_dtype(x.dtype())?.reshape((r * q, d))?,
        ],
        0,
    )?;
    let index = Tensor::from_vec(index, r * n, x.device())?;
    Ok(all.index_select(&index, 0)?.reshape((r, n, d))?)
}

/// OPT mid-generation: its caches and, for a multimodal prompt, the features that replace the
/// placeholder tokens' embeddings (first step only: later tokens are the LM's own).
pub struct OptDecoding<'a> {
    lm: &'a OptLm,
    caches: Vec<KvCache>,
    features: Option<(Tensor, u32)>,
    started: bool,
    /// When set, each step's self-attention of the last new token over every position so far,
    /// mean over heads and layers: [R, T] per step (T grows by one a step).
    pub attention: Option<Vec<Tensor>>,
}

impl<'a> OptDecoding<'a> {
    pub fn new(lm: &'a OptLm) -> Self {
        OptDecoding {
            lm,
            caches: lm.caches(),
            features: None,
            started: false,
            attention: None,
        }
    }

    /// Features [R, Q, Dw] placed at the prompt's `token` ids (see [`place_features`]).
    pub fn with_features(self, features: Tensor, token: u32) -> Self {
        OptDecoding {
            features: Some((features, token)),
            ..self
        }
    }

    /// Records each step's attention (see [`OptDecoding::attention`]).
    pub fn with_attention(self) -> Self {
        OptDecoding {
            attention: Some(vec![]),
            ..self
        }
    }
}

impl Decoder for OptDecoding<'_> {
    fn step(
        &mut self,
        ids: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let mut trace = crate::nn::Trace::default();
        let tracing = self.attention.is_some();
        let mut run = |trace: &mut crate::nn::Trace| -> Result<Tensor> {
            let mut ctx = Ctx::inference();
            if tracing {
                ctx = ctx.with_trace(trace);
            }
            let mut x = self.lm.embed(ids)?;
            if let (false, Some((f, token))) = (self.started, &self.features) {
                x = place_features(&x, ids, f, *token)?;
            }
            // generate's positions (0 under padding, which attends nowhere) -> table rows
            let table = (positions.to_dtype(DType::U32)? + POSITION_OFFSET as f64)?;
            let h = self
                .lm
                .forward_embeds(&x, &table, Some(mask), &mut self.caches, &mut ctx)?;
            let n = h.dims()[1];
            self.lm.head(&h.i((.., n - 1))?, &mut ctx)
        };
        let logits = run(&mut trace).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        self.started = true;
        if let Some(steps) = self.attention.as_mut() {
            // Per layer [R, H, N, T] -> the last query, mean over heads [R, T]; mean over layers.
            let per_layer = trace
                .attentions
                .iter()
                .map(|a| a.i((.., .., a.dims()[2] - 1))?.mean(1))
                .collect::<candle_core::Result<Vec<_>>>()?;
            steps.push((Tensor::stack(&per_layer, 0)?.sum(0)? / per_layer.len() as f64)?);
        }
        Ok(logits)
    }

    fn select_rows(&mut self, rows: &Tensor) -> candle_core::Result<()> {
        if let Some((f, _)) = self.features.as_mut() {
            *f = f.index_select(rows, 0)?;
        }
        for c in &mut self.caches {
            c.select_rows(rows)?;
        }
        for t in self.attention.iter_mut().flatten() {
            *t = t.index_select(rows, 0)?;
        }
        Ok(())
    }
}

impl Pretrained for OptLm {
    type Config = OptConfig;
    const EXTRA_FILES: &'static [&'static str] = &["tokenizer.json", "generation_config.json"];

    fn from_config(config: &OptConfig, opts: &LoadOptions) -> Result<Loaded<Self>> {
        fresh(opts, |vb| OptLm::new(vb, config))
    }

    /// An `OPTForCausalLM` checkpoint (`model.decoder.*`, and `lm_head.weight` when untied).
    fn from_checkpoint(ckpt: Checkpoint, opts: &LoadOptions) -> Result<Loaded<Self>> {
        ckpt.expect(crate::models::Family::Opt)?;
        let config: OptConfig = ckpt.config()?;
        config.validate("")?;
        let tied = config.tie_word_embeddings;
        strict(
            ckpt,
            opts,
            |k| !(tied && k == "lm_head.weight"),
            |vb| OptLm::new(vb, &config),
        )
    }

    fn with_precision(&self, dtype: Precision) -> Result<Self> {
        let mut m = self.clone();
        m.prepare(dtype)?;
        Ok(m)
    }

    fn config(&self) -> &OptConfig {
        &self.config
    }

    fn config_json(&self) -> Result<serde_json::Value> {
        let mut v = serde_json::to_value(&self.config).map_err(|e| Error::Msg(e.to_string()))?;
        v["model_type"] = "opt".into();
        v["architectures"] = serde_json::json!(["OPTForCausalLM"]);
        Ok(v)
    }
}
