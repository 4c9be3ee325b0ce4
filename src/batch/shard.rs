//! Which shard of a cluster job takes which slide: `--shard I/N`, or from the environment of
//! a SLURM array or a Kubernetes indexed job.

use crate::slide::discover::SlideJob;
use sha2::{Digest, Sha256};

/// A shard that cannot be taken, or an environment that names none properly.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{name}={value} is not a whole number")]
    NotANumber { name: &'static str, value: String },
    #[error("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}")]
    BelowArrayMin { id: usize, min: usize },
    #[error("JOB_COMPLETION_INDEX is set but FLASHSLIDE_SHARDS (the number of shards) is not")]
    NoShardCount,
    #[error("shard {index} of {count} does not exist (0 ≤ index < count)")]
    NoSuchShard { index: usize, count: usize },
    #[error("--shard {0}: expected I/N with 0 ≤ I < N")]
    Unparsable(String),
}

/// Whether shard `index` of `count` takes `job`: by a hash of its relative path, so adding
/// slides does not move the others between shards.
pub fn in_shard(job: &SlideJob, index: usize, count: usize) -> bool {
    let h = Sha256::digest(job.relative.as_bytes());
    let v = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
    (v % count as u64) as usize == index
}

/// The shard from the environment of a cluster array job: SLURM (task id minus the array's
/// first id, of the array's task count), or a Kubernetes indexed job (JOB_COMPLETION_INDEX,
/// with FLASHSLIDE_SHARDS giving the count).
pub fn shard_from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<(usize, usize)>, ShardError> {
    let num = |name: &'static str| -> Result<Option<usize>, ShardError> {
        var(name)
            .map(|value| {
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| ShardError::NotANumber { name, value })
            })
            .transpose()
    };
    if let (Some(id), Some(count)) = (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?) {
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let index = id.checked_sub(min).ok_or(ShardError::BelowArrayMin { id, min })?;
        return check_shard(index, count).map(Some);
    }
    if let Some(index) = num("JOB_COMPLETION_INDEX")? {
        let count = num("FLASHSLIDE_SHARDS")?.ok_or(ShardError::NoShardCount)?;
        return check_shard(index, count).map(Some);
    }
    Ok(None)
}

/// Parses `I/N`.
pub fn parse_shard(text: &str) -> Result<(usize, usize), ShardError> {
    let bad = || ShardError::Unparsable(text.to_string());
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    check_shard(i, n).map_err(|_| bad())
}

fn check_shard(index: usize, count: usize) -> Result<(usize, usize), ShardError> {
    if count == 0 || index >= count {
        return Err(ShardError::NoSuchShard { index, count });
    }
    Ok((index, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_every_slide_once_and_stay_put() {
        let jobs: Vec<SlideJob> = (0..200)
            .map(|i| SlideJob {
                path: format!("/d/s{i}.svs").into(),
                relative: format!("s{i}.svs"),
                name: format!("s{i}"),
            })
            .collect();
        for count in [1, 3, 7] {
            let mut taken = 0;
            for index in 0..count {
                let n = jobs.iter().filter(|j| in_shard(j, index, count)).count();
                assert!(count == 1 || n < jobs.len(), "one shard took everything");
                taken += n;
            }
            assert_eq!(taken, jobs.len());
        }
        // Adding slides does not move the first 200 between shards.
        let before: Vec<bool> = jobs.iter().map(|j| in_shard(j, 1, 3)).collect();
        let after: Vec<bool> = jobs.iter().map(|j| in_shard(j, 1, 3)).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn shard_from_slurm_or_kubernetes_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| p.1.to_string())
        };
        assert_eq!(shard_from_env(env(&[])).unwrap(), None);
        assert_eq!(
            shard_from_env(env(&[
                ("SLURM_ARRAY_TASK_ID", "12"),
                ("SLURM_ARRAY_TASK_MIN", "10"),
                ("SLURM_ARRAY_TASK_COUNT", "4")
            ]))
            .unwrap(),
            Some((2, 4))
        );
        assert_eq!(
            shard_from_env(env(&[("JOB_COMPLETION_INDEX", "3"), ("FLASHSLIDE_SHARDS", "8")])).unwrap(),
            Some((3, 8))
        );
        assert!(shard_from_env(env(&[("JOB_COMPLETION_INDEX", "3")])).is_err());
        assert!(shard_from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "4")
        ]))
        .is_err());
        assert_eq!(parse_shard("2/5").unwrap(), (2, 5));
        assert!(parse_shard("5/5").is_err() && parse_shard("x").is_err());
    }
}
