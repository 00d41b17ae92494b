//! Data-parallel training over several processes (one per GPU) or threads: the [`Collective`]
//! operations a rank needs (sum, broadcast, barrier), three implementations of them, and the
//! pieces [`super::fit`] composes: the rank's shard of an epoch ([`shard`]), the same start on
//! every rank ([`broadcast_vars`]) and the bucketed gradient all-reduce ([`all_reduce_grads`]).
//!
//! - `Nccl` (feature `nccl`): NCCL on each rank's GPU, on candle's own CUDA stream so it is
//!   ordered after the backward kernels without explicit syncs. One process per GPU: the CUDA
//!   driver's global lock makes one thread per GPU slow.
//! - [`Tcp`]: the same protocol between CPU processes over TCP (rank 0 gathers, sums in rank
//!   order, sends back), and the rendezvous that hands NCCL's unique id to every rank.
//! - [`Local`]: ranks as threads of one process, for tests.
//!
//! Every implementation sums in rank order (`((x0 + x1) + x2) …`), so all ranks hold the same
//! bits afterwards and the CPU ones agree with each other exactly.
//!
//! Processes find each other as torchrun's do: `RANK`, `LOCAL_RANK`, `WORLD_SIZE`,
//! `MASTER_ADDR`, `MASTER_PORT` ([`RankEnv`]).
use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// What a data-parallel rank can ask of its peers. Every rank must make the same calls in the
/// same order with tensors of the same shape (a rank that skips one hangs the job).
pub trait Collective {
    fn rank(&self) -> usize;
    fn world(&self) -> usize;
    /// The element-wise sum over ranks of `t` (read as f32), on `t`'s device.
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor>;
    /// Rank `root`'s `t` on every rank (same shape everywhere), on `t`'s device.
    fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor>;
    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()> {
        self.all_reduce_sum(&Tensor::zeros(1, DType::F32, &Device::Cpu)?)
            .map(|_| ())
    }
    /// Rank 0 writes checkpoints, metrics and logs.
    fn is_main(&self) -> bool {
        self.rank() == 0
    }
}

fn host_f32(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

fn like(v: Vec<f32>, t: &Tensor) -> Result<Tensor> {
    Ok(Tensor::from_vec(v, t.shape(), t.device())?)
}

fn sum_in_rank_order(parts: &[&[f32]]) -> Vec<f32> {
    let mut acc = parts.first().map(|p| p.to_vec()).unwrap_or_default();
    for p in &parts[1..] {
        acc.iter_mut().zip(p.iter()).for_each(|(a, b)| *a += b);
    }
    acc
}

// ---------------------------------------------------------------------------------------------
// In-process ranks

struct LocalShared {
    barrier: Barrier,
    slots: Mutex<Vec<Vec<f32>>>,
}

/// One rank of a group of threads in this process ([`Local::group`]).
pub struct Local {
    rank: usize,
    world: usize,
    shared: Arc<LocalShared>,
}

impl Local {
    /// `world` ranks, to be moved one per thread.
    pub fn group(world: usize) -> Vec<Local> {
        let shared = Arc::new(LocalShared {
            barrier: Barrier::new(world.max(1)),
            slots: Mutex::new(vec![vec![]; world.max(1)]),
        });
        (0..world.max(1))
            .map(|rank| Local {
                rank,
                world: world.max(1),
                shared: shared.clone(),
            })
            .collect()
    }

    /// Everyone deposits, everyone reads every slot, then everyone may deposit again.
    fn exchange<R>(&self, mine: Vec<f32>, read: impl FnOnce(&[Vec<f32>]) -> R) -> Result<R> {
        let lock = || {
            self.shared
                .slots
                .lock()
                .map_err(|_| Error::Msg("a rank panicked during a collective".into()))
        };
        lock()?[self.rank] = mine;
        self.shared.barrier.wait();
        let r = read(&lock()?);
        self.shared.barrier.wait();
        Ok(r)
    }
}

impl Collective for Local {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        let n = t.elem_count();
        let sum = self.exchange(host_f32(t)?, |slots| {
            let parts: Vec<&[f32]> = slots.iter().map(Vec::as_slice).collect();
            (parts.iter().all(|p| p.len() == n)).then(|| sum_in_rank_order(&parts))
        })?;
        let sum = sum.ok_or_else(|| {
            Error::Msg("all_reduce: the ranks passed tensors of different sizes".into())
        })?;
        like(sum, t)
    }

    fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor> {
        if root >= self.world {
            return Err(Error::Msg(format!(
                "broadcast from rank {root} of {}",
                self.world
            )));
        }
        let mine = if self.rank == root {
            host_f32(t)?
        } else {
            vec![]
        };
        let v = self.exchange(mine, |slots| slots[root].clone())?;
        if v.len() != t.elem_count() {
            return Err(Error::Msg(
                "broadcast: the ranks' tensors differ in size".into(),
            ));
        }
        like(v, t)
    }
}

// ---------------------------------------------------------------------------------------------
// Ranks as processes

/// A rank's place in the job, from torchrun's environment variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RankEnv {
    pub rank: usize,
    pub local_rank: usize,
    pub world: usize,
    pub master_addr: String,
    pub master_port: u16,
}

impl RankEnv {
    /// `None` when `WORLD_SIZE` is unset (not launched as a rank); an error when the variables
    /// are set but inconsistent.
    pub fn from_env() -> Result<Option<RankEnv>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`RankEnv::from_env`] reading through `get` (testable).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<RankEnv>> {
        let Some(world) = get("WORLD_SIZE") else {
            return Ok(None);
        };
        let num = |k: &str, v: Option<String>| -> Result<usize> {
            let v = v.ok_or_else(|| Error::Config(format!("WORLD_SIZE is set but {k} is not")))?;
            v.trim()
                .parse()
                .map_err(|_| Error::Config(format!("{k}={v:?} is not a number")))
        };
        let world = num("WORLD_SIZE", Some(world))?;
        let rank = num("RANK", get("RANK"))?;
        let local_rank = match get("LOCAL_RANK") {
            Some(v) => num("LOCAL_RANK", Some(v))?,
            None => rank,
        };
        if world == 0 || rank >= world {
            return Err(Error::Config(format!(
                "RANK {rank} is not below WORLD_SIZE {world}"
            )));
        }
        let master_addr = get("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let port = get("MASTER_PORT").unwrap_or_else(|| "29500".into());
        let master_port = port
            .trim()
            .parse()
            .map_err(|_| Error::Config(format!("MASTER_PORT={port:?} is not a port")))?;
        Ok(Some(RankEnv {
            rank,
            local_rank,
            world,
            master_addr,
            master_port,
        }))
    }

    /// The variables a launcher sets for rank `rank` of `world` on this machine.
    pub fn vars(rank: usize, world: usize, port: u16) -> Vec<(&'static str, String)> {
        vec![
            ("RANK", rank.to_string()),
            ("LOCAL_RANK", rank.to_string()),
            ("WORLD_SIZE", world.to_string()),
            ("LOCAL_WORLD_SIZE", world.to_string()),
            ("MASTER_ADDR", "127.0.0.1".into()),
            ("MASTER_PORT", port.to_string()),
        ]
    }
}

/// A free TCP port on this machine (for a launcher's `MASTER_PORT`).
pub fn free_port() -> Result<u16> {
    let l =
        TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Msg(format!("no free port: {e}")))?;
    Ok(l.local_addr()
        .map_err(|e| Error::Msg(format!("no free port: {e}")))?
        .port())
}

/// The ranks of a job as processes joined over TCP through rank 0 (a star): the CPU
/// collective, and the rendezvous of the GPU one.
pub struct Tcp {
    rank: usize,
    world: usize,
    /// Rank 0: the stream of rank r at r − 1; other ranks: the stream to rank 0.
    peers: Vec<TcpStream>,
}

fn net(what: &str, e: std::io::Error) -> Error {
    Error::Msg(format!("distributed training: {what}: {e}"))
}

const MAGIC: &[u8; 8] = b"tessera1";

impl Tcp {
    /// Joins the job: rank 0 listens on `MASTER_ADDR:MASTER_PORT` and accepts every other rank
    /// (each says who it is); the others connect, retrying for up to `timeout`.
    pub fn connect(env: &RankEnv, timeout: Duration) -> Result<Tcp> {
        let addr = format!("{}:{}", env.master_addr, env.master_port);
        let deadline = Instant::now() + timeout;
        let peers = if env.rank == 0 {
            let listener = TcpListener::bind(&addr).map_err(|e| net(&format!("bind {addr}"), e))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| net("listen", e))?;
            let mut slots: Vec<Option<TcpStream>> = (1..env.world).map(|_| None).collect();
            while slots.iter().any(Option::is_none) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).map_err(|e| net("accept", e))?;
                        s.set_read_timeout(Some(timeout))
                            .map_err(|e| net("accept", e))?;
                        let mut hello = [0u8; 16];
                        (&s).read_exact(&mut hello).map_err(|e| net("hello", e))?;
                        let world = u32::from_le_bytes(hello[8..12].try_into().unwrap_or_default());
                        let r = u32::from_le_bytes(hello[12..16].try_into().unwrap_or_default())
                            as usize;
                        if &hello[..8] != MAGIC
                            || world as usize != env.world
                            || r == 0
                            || r >= env.world
                        {
                            return Err(Error::Msg(format!(
                                "distributed training: a peer joined as rank {r} of {world}, this job has {} ranks",
                                env.world
                            )));
                        }
                        if slots[r - 1].replace(s).is_some() {
                            return Err(Error::Msg(format!(
                                "distributed training: rank {r} joined twice"
                            )));
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            let missing: Vec<usize> =
                                (1..env.world).filter(|r| slots[r - 1].is_none()).collect();
                            return Err(Error::Msg(format!(
                                "distributed training: ranks {missing:?} did not join {addr} within {timeout:?}"
                            )));
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(net("accept", e)),
                }
            }
            slots.into_iter().flatten().collect()
        } else {
            let s = loop {
                match TcpStream::connect(&addr) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() > deadline => {
                        return Err(net(&format!("rank {} cannot reach {addr}", env.rank), e))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            };
            let mut hello = MAGIC.to_vec();
            hello.extend((env.world as u32).to_le_bytes());
            hello.extend((env.rank as u32).to_le_bytes());
            (&s).write_all(&hello).map_err(|e| net("hello", e))?;
            vec![s]
        };
        for s in &peers {
            s.set_nodelay(true).map_err(|e| net("setup", e))?;
            // A dead peer shows as EOF; a silent one fails the job after this long.
            s.set_read_timeout(Some(Duration::from_secs(1800)))
                .map_err(|e| net("setup", e))?;
        }
        Ok(Tcp {
            rank: env.rank,
            world: env.world,
            peers,
        })
    }

    fn send(s: &TcpStream, bytes: &[u8]) -> Result<()> {
        let mut w = s;
        w.write_all(&(bytes.len() as u64).to_le_bytes())
            .and_then(|_| w.write_all(bytes))
            .map_err(|e| net("send", e))
    }

    fn recv(s: &TcpStream) -> Result<Vec<u8>> {
        let mut r = s;
        let mut len = [0u8; 8];
        r.read_exact(&mut len)
            .map_err(|e| net("receive (did a rank fail?)", e))?;
        let len = u64::from_le_bytes(len) as usize;
        let mut buf = vec![0u8; len];
        r.read_exact(&mut buf)
            .map_err(|e| net("receive (did a rank fail?)", e))?;
        Ok(buf)
    }

    /// Rank 0's `bytes` on every rank (others pass anything; NCCL's unique id goes this way).
    pub fn share(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        if self.rank == 0 {
            for s in &self.peers {
                Self::send(s, bytes)?;
            }
            Ok(bytes.to_vec())
        } else {
            Self::recv(&self.peers[0])
        }
    }

    fn to_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn from_bytes(b: &[u8], n: usize) -> Result<Vec<f32>> {
        if b.len() != 4 * n {
            return Err(Error::Msg(
                "distributed training: the ranks passed tensors of different sizes".into(),
            ));
        }
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

impl Collective for Tcp {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        let n = t.elem_count();
        let mine = host_f32(t)?;
        let sum = if self.rank == 0 {
            let mut parts = vec![mine];
            for s in &self.peers {
                parts.push(Self::from_bytes(&Self::recv(s)?, n)?);
            }
            let refs: Vec<&[f32]> = parts.iter().map(Vec::as_slice).collect();
            let sum = sum_in_rank_order(&refs);
            let bytes = Self::to_bytes(&sum);
            for s in &self.peers {
                Self::send(s, &bytes)?;
            }
            sum
        } else {
            Self::send(&self.peers[0], &Self::to_bytes(&mine))?;
            Self::from_bytes(&Self::recv(&self.peers[0])?, n)?
        };
        like(sum, t)
    }

    fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor> {
        if root >= self.world {
            return Err(Error::Msg(format!(
                "broadcast from rank {root} of {}",
                self.world
            )));
        }
        let n = t.elem_count();
        // A root other than 0 hands its tensor to rank 0 first.
        let at_zero = match (self.rank, root) {
            (0, 0) => host_f32(t)?,
            (0, r) => Self::from_bytes(&Self::recv(&self.peers[r - 1])?, n)?,
            (me, r) if me == r => {
                Self::send(&self.peers[0], &Self::to_bytes(&host_f32(t)?))?;
                vec![]
            }
            _ => vec![],
        };
        let v = Self::from_bytes(&self.share(&Self::to_bytes(&at_zero))?, n)?;
        like(v, t)
    }
}

// ---------------------------------------------------------------------------------------------
// NCCL

#[cfg(feature = "nccl")]
mod nccl {
    use super::*;
    use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
    use candle_core::{CpuStorage, CudaStorage, CustomOp1, Layout, Shape};

    /// One rank of an NCCL job on its GPU.
    pub struct Nccl {
        comm: Arc<Comm>,
        device: Device,
    }

    /// The communicator inside a candle op. NCCL communicators are not thread-safe; the op
    /// runs synchronously on the rank's training thread, the only one that holds the `Nccl`.
    struct Op {
        comm: Arc<Comm>,
        root: Option<usize>,
    }
    // SAFETY: see `Op`: used only from the thread that owns the rank's `Nccl`.
    unsafe impl Send for Op {}
    // SAFETY: as above; candle requires the bound, the op is never shared across threads.
    unsafe impl Sync for Op {}

    impl CustomOp1 for Op {
        fn name(&self) -> &'static str {
            "tessera-nccl"
        }

        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
            candle_core::bail!("NCCL collectives take CUDA tensors")
        }

        fn cuda_fwd(
            &self,
            s: &CudaStorage,
            l: &Layout,
        ) -> candle_core::Result<(CudaStorage, Shape)> {
            let (a, b) = l
                .contiguous_offsets()
                .ok_or_else(|| candle_core::Error::Msg("NCCL: input must be contiguous".into()))?;
            let src = s.as_cuda_slice::<f32>()?.slice(a..b);
            let mut dst = s.device.alloc_zeros::<f32>(b - a)?;
            let e = |e: candle_core::cuda_backend::cudarc::nccl::result::NcclError| {
                candle_core::Error::Msg(format!("NCCL: {e:?}"))
            };
            match self.root {
                None => self
                    .comm
                    .all_reduce(&src, &mut dst, &ReduceOp::Sum)
                    .map_err(e)?,
                Some(root) => {
                    let send = (self.comm.rank() == root).then_some(&src);
                    self.comm
                        .broadcast(send, &mut dst, root as i32)
                        .map_err(e)?
                }
            };
            Ok((
                CudaStorage::wrap_cuda_slice(dst, s.device.clone()),
                l.shape().clone(),
            ))
        }
    }

    impl Nccl {
        /// Joins the job's NCCL communicator on `device` (a CUDA device), rank 0's unique id
        /// handed to every rank through `rendezvous`; NCCL runs on candle's stream of `device`.
        pub fn new(device: &Device, rendezvous: &Tcp) -> Result<Nccl> {
            let cuda = device.as_cuda_device()?;
            let e = |e| Error::Msg(format!("NCCL: {e:?}"));
            let id = if rendezvous.rank == 0 {
                Id::new().map_err(e)?
            } else {
                Id::uninit([0; 128])
            };
            let bytes: Vec<u8> = id.internal().iter().map(|&c| c as u8).collect();
            let shared = rendezvous.share(&bytes)?;
            let mut internal = [0 as std::ffi::c_char; 128];
            for (d, s) in internal.iter_mut().zip(&shared) {
                *d = *s as std::ffi::c_char;
            }
            let comm = Comm::from_rank(
                cuda.cuda_stream(),
                rendezvous.rank,
                rendezvous.world,
                Id::uninit(internal),
            )
            .map_err(e)?;
            Ok(Nccl {
                comm: Arc::new(comm),
                device: device.clone(),
            })
        }

        fn run(&self, t: &Tensor, root: Option<usize>) -> Result<Tensor> {
            let x = t
                .to_device(&self.device)?
                .to_dtype(DType::F32)?
                .contiguous()?;
            let op = Op {
                comm: self.comm.clone(),
                root,
            };
            Ok(x.apply_op1_no_bwd(&op)?.to_device(t.device())?)
        }
    }

    impl Collective for Nccl {
        fn rank(&self) -> usize {
            self.comm.rank()
        }

        fn world(&self) -> usize {
            self.comm.world_size()
        }

        fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
            self.run(t, None)
        }

        fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor> {
            self.run(t, Some(root))
        }
    }
}

#[cfg(feature = "nccl")]
pub use nccl::Nccl;

/// The collective of a launched rank: NCCL on a GPU when built with `nccl`, else TCP between
/// CPU processes. Rank 0 must be reachable at `MASTER_ADDR:MASTER_PORT`.
pub fn join(env: &RankEnv, device: &Device) -> Result<Box<dyn Collective>> {
    let tcp = Tcp::connect(env, Duration::from_secs(300))?;
    if device.is_cuda() {
        #[cfg(feature = "nccl")]
        return Ok(Box::new(Nccl::new(device, &tcp)?));
        #[cfg(not(feature = "nccl"))]
        return Err(Error::Config(
            "data parallelism over GPUs needs NCCL: rebuild with `--features nccl`".into(),
        ));
    }
    Ok(Box::new(tcp))
}

/// This process's device and collective in a training run: launched as a rank (`WORLD_SIZE`
/// set), the device is `devices[LOCAL_RANK]` (or, without a list, `cuda:LOCAL_RANK` when
/// `device` is `auto` and a GPU is usable, else `device`) and the collective is joined;
/// otherwise `device` alone.
pub fn setup_rank(
    device: &str,
    devices: Option<&str>,
) -> Result<(Device, Option<Box<dyn Collective>>)> {
    let Some(env) = RankEnv::from_env()? else {
        return Ok((crate::device::open(device)?, None));
    };
    use crate::device::DeviceSpec;
    let spec = match devices {
        Some(list) => {
            let all = crate::device::parse_devices(list)?;
            if all.len() != env.world {
                return Err(Error::Config(format!(
                    "--devices lists {} devices, WORLD_SIZE is {}",
                    all.len(),
                    env.world
                )));
            }
            *all.get(env.local_rank).ok_or_else(|| {
                Error::Config(format!(
                    "LOCAL_RANK {} has no device in --devices {list}",
                    env.local_rank
                ))
            })?
        }
        None => match device.parse::<DeviceSpec>()? {
            DeviceSpec::Auto if crate::device::cuda_available() => DeviceSpec::Cuda(env.local_rank),
            s => s,
        },
    };
    let dev = spec.open()?;
    let c = join(&env, &dev)?;
    Ok((dev, Some(c)))
}

// ---------------------------------------------------------------------------------------------
// What training does with a collective

/// Rank `rank`'s share of one epoch's `order`, as PyTorch's `DistributedSampler`: the order is
/// padded by wrapping around to a multiple of `world`, and rank r takes every world-th item from
/// r. Every rank gets the same count (so the same number of steps), and the union of the ranks'
/// k-th batches of size b is the k-th slice of size b·world of the (padded) order.
pub fn shard(order: &[usize], rank: usize, world: usize) -> Vec<usize> {
    let world = world.max(1);
    if order.is_empty() {
        return vec![];
    }
    let total = order.len().div_ceil(world) * world;
    (rank..total)
        .step_by(world)
        .map(|i| order[i % order.len()])
        .collect()
}

/// Copies rank 0's values of every variable to every rank (sorted by name), so all ranks start
/// from the same weights whatever their seeds or checkpoints.
pub fn broadcast_vars(vars: &[(String, Var)], c: &dyn Collective) -> Result<()> {
    if c.world() <= 1 {
        return Ok(());
    }
    let mut sorted: Vec<&(String, Var)> = vars.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, v) in sorted {
        let t = c.broadcast(v.as_tensor(), 0)?;
        v.set(&t.to_dtype(v.dtype())?)?;
    }
    Ok(())
}

/// PyTorch DDP's default bucket: 25 MiB of f32 gradients per all-reduce.
pub const BUCKET_BYTES: usize = 25 << 20;

/// Replaces every variable's gradient by its mean over the ranks, in buckets of at most
/// `bucket_bytes` (a gradient larger than that is a bucket alone). Variables are walked in name
/// order, so every rank packs the same buckets; one without a gradient on this rank contributes
/// zeros. Returns the number of all-reduce calls.
pub fn all_reduce_grads(
    grads: &mut GradStore,
    vars: &[(String, Var)],
    c: &dyn Collective,
    bucket_bytes: usize,
) -> Result<usize> {
    if c.world() <= 1 {
        return Ok(0);
    }
    let mut sorted: Vec<&(String, Var)> = vars.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let per = (bucket_bytes / 4).max(1);
    let scale = 1.0 / c.world() as f64;
    let mut calls = 0;
    let mut i = 0;
    while i < sorted.len() {
        // One bucket: variables while they fit (at least one).
        let mut j = i;
        let mut n = 0;
        while j < sorted.len() && (j == i || n + sorted[j].1.elem_count() <= per) {
            n += sorted[j].1.elem_count();
            j += 1;
        }
        let flat = sorted[i..j]
            .iter()
            .map(|(_, v)| match grads.get(v) {
                Some(g) => g.to_dtype(DType::F32)?.flatten_all(),
                None => Tensor::zeros(v.elem_count(), DType::F32, v.device()),
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        // [n] summed over ranks, then the mean
        let summed = (c.all_reduce_sum(&Tensor::cat(&flat, 0)?)? * scale)?;
        calls += 1;
        let mut off = 0;
        for (_, v) in &sorted[i..j] {
            let k = v.elem_count();
            let g = summed
                .narrow(0, off, k)?
                .reshape(v.shape())?
                .to_dtype(v.dtype())?;
            grads.insert(v, g);
            off += k;
        }
        i = j;
    }
    Ok(calls)
}

/// Sums a few numbers over the ranks (loss sums, correct counts, item counts for logs).
pub fn sum_scalars(c: &dyn Collective, values: &[f64]) -> Result<Vec<f64>> {
    if c.world() <= 1 {
        return Ok(values.to_vec());
    }
    // f32 would round counts past 2^24 and sums of many losses: split each f64 into a
    // high f32 part and the f32 remainder, summed separately.
    let mut parts: Vec<f32> = Vec::with_capacity(values.len() * 2);
    for &v in values {
        let hi = v as f32;
        parts.push(hi);
        parts.push((v - hi as f64) as f32);
    }
    let n = parts.len();
    let t = Tensor::from_vec(parts, n, &Device::Cpu)?;
    let s = host_f32(&c.all_reduce_sum(&t)?)?;
    Ok(s.chunks_exact(2)
        .map(|p| p[0] as f64 + p[1] as f64)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_threads<R: Send>(world: usize, f: impl Fn(&dyn Collective) -> R + Sync) -> Vec<R> {
        let group = Local::group(world);
        std::thread::scope(|s| {
            let hs: Vec<_> = group
                .into_iter()
                .map(|c| {
                    let f = &f;
                    s.spawn(move || f(&c))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn shards_pad_like_distributed_sampler_and_cover_the_world_batch() {
        let order: Vec<usize> = vec![7, 3, 9, 1, 4, 0, 8];
        assert_eq!(shard(&order, 0, 3), vec![7, 1, 8]);
        assert_eq!(shard(&order, 1, 3), vec![3, 4, 7]);
        assert_eq!(shard(&order, 2, 3), vec![9, 0, 3]);
        assert_eq!(shard(&order, 0, 1), order);
        assert!(shard(&[], 0, 2).is_empty());
        // The ranks' k-th batches of 2 are the k-th slice of 2·world of the order.
        let order: Vec<usize> = (0..24).rev().collect();
        let (b, w) = (2, 3);
        let shards: Vec<Vec<usize>> = (0..w).map(|r| shard(&order, r, w)).collect();
        for k in 0..4 {
            let mut union: Vec<usize> = shards
                .iter()
                .flat_map(|s| s[k * b..(k + 1) * b].to_vec())
                .collect();
            let mut want = order[k * b * w..(k + 1) * b * w].to_vec();
            union.sort();
            want.sort();
            assert_eq!(union, want, "batch {k}");
        }
    }

    #[test]
    fn local_ranks_sum_broadcast_and_agree() {
        let out = on_threads(3, |c| {
            let r = c.rank() as f32;
            let t = Tensor::new(&[r, 10.0 * r, 0.5], &Device::Cpu).unwrap();
            let s: Vec<f32> = c.all_reduce_sum(&t).unwrap().to_vec1().unwrap();
            let b: Vec<f32> = c.broadcast(&t, 2).unwrap().to_vec1().unwrap();
            c.barrier().unwrap();
            let sc = sum_scalars(c, &[1e9 + c.rank() as f64, 0.1]).unwrap();
            (s, b, sc)
        });
        for (s, b, sc) in out {
            assert_eq!(s, vec![3.0, 30.0, 1.5]);
            assert_eq!(b, vec![2.0, 20.0, 0.5]);
            assert!((sc[0] - (3e9 + 3.0)).abs() < 1.0, "{sc:?}");
            assert!((sc[1] - 0.3).abs() < 1e-7, "{sc:?}");
        }
    }

    #[test]
    fn mismatched_sizes_are_an_error_not_garbage() {
        let out = on_threads(2, |c| {
            let t = Tensor::zeros(1 + c.rank(), DType::F32, &Device::Cpu).unwrap();
            c.all_reduce_sum(&t).is_err()
        });
        assert_eq!(out, vec![true, true]);
    }

    fn vars(seed: f32) -> Vec<(String, Var)> {
        // Names out of order, shapes of different sizes.
        [
            ("b.weight", vec![3, 4]),
            ("a.bias", vec![5]),
            ("c", vec![2, 2, 2]),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (n, s))| {
            let len: usize = s.iter().product();
            let v: Vec<f32> = (0..len)
                .map(|k| seed + (i * 100 + k) as f32 * 0.01)
                .collect();
            (
                n.to_string(),
                Var::from_tensor(&Tensor::from_vec(v, s, &Device::Cpu).unwrap()).unwrap(),
            )
        })
        .collect()
    }

    #[test]
    fn gradients_become_the_rank_mean_whatever_the_buckets() {
        for bucket in [4, 20, 68, 100, 1 << 20] {
            let out = on_threads(3, |c| {
                let vs = vars(0.0);
                // A loss whose gradients differ per rank; rank 1 leaves "c" out entirely.
                let k = c.rank() as f64 + 1.0;
                let mut loss = (vs[0].1.as_tensor().sqr().unwrap().sum_all().unwrap() * k).unwrap();
                loss = (loss + (vs[1].1.as_tensor() * k).unwrap().sum_all().unwrap()).unwrap();
                if c.rank() != 1 {
                    loss = (loss + vs[2].1.as_tensor().sum_all().unwrap()).unwrap();
                }
                let mut g = loss.backward().unwrap();
                let calls = all_reduce_grads(&mut g, &vs, c, bucket).unwrap();
                let read = |i: usize| -> Vec<f32> {
                    g.get(&vs[i].1)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap()
                };
                (calls, read(0), read(1), read(2))
            });
            let vs = vars(0.0);
            let w: Vec<f32> = vs[0]
                .1
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (calls, g0, g1, g2) in &out {
                // mean over ranks of 2·k·w, k = 1, 2, 3 → 4w; of k → 2; of (1, 0, 1) → 2/3.
                for (g, w) in g0.iter().zip(&w) {
                    assert!((g - 4.0 * w).abs() < 1e-5, "bucket {bucket}");
                }
                assert!(g1.iter().all(|g| (g - 2.0).abs() < 1e-6));
                assert!(g2.iter().all(|g| (g - 2.0 / 3.0).abs() < 1e-6));
                // Sorted: a.bias (5), b.weight (12), c (8) elements.
                let want = match bucket {
                    4 | 20 => 3,
                    68 => 2,
                    _ => 1,
                };
                assert_eq!(*calls, want, "bucket {bucket}");
            }
            // Every rank holds the same bits.
            assert!(out.windows(2).all(|p| p[0] == p[1]));
        }
    }

    #[test]
    fn broadcast_vars_gives_every_rank_rank_zeros_weights() {
        let out = on_threads(2, |c| {
            let vs = vars(c.rank() as f32);
            broadcast_vars(&vs, c).unwrap();
            vs.iter()
                .map(|(_, v)| {
                    v.as_tensor()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        });
        assert_eq!(out[0], out[1]);
        let zero: Vec<Vec<f32>> = vars(0.0)
            .iter()
            .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        assert_eq!(out[0], zero);
    }

    #[test]
    fn tcp_ranks_agree_with_local_ranks_bit_for_bit() {
        let port = free_port().unwrap();
        let world = 3;
        let data = |r: usize| -> Vec<f32> {
            (0..1000)
                .map(|i| ((i * 7 + r * 13) as f32).sin() * 1e3)
                .collect()
        };
        let tcp: Vec<Vec<f32>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..world)
                .map(|rank| {
                    s.spawn(move || {
                        let env = RankEnv {
                            rank,
                            local_rank: rank,
                            world,
                            master_addr: "127.0.0.1".into(),
                            master_port: port,
                        };
                        let c = Tcp::connect(&env, Duration::from_secs(20)).unwrap();
                        let t = Tensor::from_vec(data(rank), 1000, &Device::Cpu).unwrap();
                        let mut v: Vec<f32> = c.all_reduce_sum(&t).unwrap().to_vec1().unwrap();
                        v.extend(c.broadcast(&t, 1).unwrap().to_vec1::<f32>().unwrap());
                        assert_eq!(c.share(&[rank as u8; 4]).unwrap(), vec![0u8; 4]);
                        v
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let local = on_threads(world, |c| {
            let t = Tensor::from_vec(data(c.rank()), 1000, &Device::Cpu).unwrap();
            let mut v: Vec<f32> = c.all_reduce_sum(&t).unwrap().to_vec1().unwrap();
            v.extend(c.broadcast(&t, 1).unwrap().to_vec1::<f32>().unwrap());
            v
        });
        assert_eq!(tcp, local);
        assert_eq!(&tcp[0][1000..], data(1).as_slice());
    }

    #[test]
    fn rank_environment_is_read_as_torchrun_sets_it() {
        let env = |pairs: &[(&str, &str)]| {
            let m: std::collections::HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            RankEnv::from_vars(move |k| m.get(k).cloned())
        };
        assert_eq!(env(&[]).unwrap(), None);
        let e = env(&[("WORLD_SIZE", "4"), ("RANK", "2"), ("MASTER_PORT", "1234")])
            .unwrap()
            .unwrap();
        assert_eq!(
            (e.rank, e.local_rank, e.world, e.master_port),
            (2, 2, 4, 1234)
        );
        assert_eq!(e.master_addr, "127.0.0.1");
        for bad in [
            vec![("WORLD_SIZE", "2")],
            vec![("WORLD_SIZE", "2"), ("RANK", "2")],
            vec![("WORLD_SIZE", "x"), ("RANK", "0")],
            vec![("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "99999")],
        ] {
            assert!(env(&bad).is_err(), "{bad:?}");
        }
        let vars = RankEnv::vars(1, 2, 4000);
        let got = env(&vars
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>())
        .unwrap()
        .unwrap();
        assert_eq!((got.rank, got.world, got.master_port), (1, 2, 4000));
    }
}
