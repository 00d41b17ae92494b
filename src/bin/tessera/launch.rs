//! `--devices`: re-runs this command once per listed device, as torchrun would, and waits.
//!
//! Each child gets `RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR` and
//! `MASTER_PORT` (a free local port); the library's `train::dist::setup_rank` picks its device
//! and joins the job. A run already launched as a rank (torchrun, Slurm) is not re-launched.
//! Rank 0 keeps stdout; a failing rank stops the others.
use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};
use std::time::Duration;
use tessera::train::dist::{free_port, RankEnv};

/// Launches the ranks when `devices` is given and this process is not one; `true` when it
/// did (the caller then has nothing left to do).
pub fn ranks(devices: Option<&str>) -> Result<bool> {
    let Some(list) = devices else {
        return Ok(false);
    };
    if std::env::var_os("WORLD_SIZE").is_some() {
        return Ok(false);
    }
    let world = tessera::device::parse_devices(list)?.len();
    let port = free_port()?;
    let exe = std::env::current_exe().context("cannot find this program to launch its ranks")?;
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let mut children = vec![];
    for rank in 0..world {
        let mut cmd = Command::new(&exe);
        cmd.args(&args).envs(RankEnv::vars(rank, world, port));
        if rank > 0 {
            cmd.stdout(Stdio::null());
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start rank {rank}"))?;
        children.push(child);
    }
    // Wait for all; the first failure stops the rest (a rank waiting on a dead peer would hang).
    let mut done = vec![false; world];
    while done.iter().any(|d| !d) {
        for (rank, c) in children.iter_mut().enumerate() {
            if done[rank] {
                continue;
            }
            if let Some(status) = c.try_wait()? {
                done[rank] = true;
                if !status.success() {
                    for (r, other) in children.iter_mut().enumerate() {
                        if r != rank {
                            let _ = other.kill();
                            let _ = other.wait();
                        }
                    }
                    bail!("rank {rank} of {world} failed ({status}); the other ranks were stopped");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(true)
}

/// True in the process that reports (not launched as a rank, or rank 0).
pub fn reports() -> bool {
    std::env::var("RANK").map_or(true, |r| r.trim() == "0")
}

/// Progress bars in the reporting process, silence in the other ranks.
pub fn bars() -> tessera::progress::Observer {
    if reports() {
        super::common::bars()
    } else {
        tessera::progress::Observer::default()
    }
}
