//! Compute device selection (`--device cpu|cuda[:N]`).

use burn::tensor::Device;

/// Parses a device name: `cpu` (the flex backend) or, with the `cuda` feature, `cuda`/`cuda:N`.
pub fn parse_device(name: &str) -> anyhow::Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    if name == "cpu" {
        return Ok(Device::flex());
    }
    if let Some(rest) = name.strip_prefix("cuda") {
        let index: usize = match rest.strip_prefix(':') {
            Some(i) => i
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid CUDA device index in {name:?}"))?,
            None if rest.is_empty() => 0,
            None => anyhow::bail!("unknown device {name:?} (expected cpu, cuda or cuda:N)"),
        };
        return cuda(index);
    }
    anyhow::bail!("unknown device {name:?} (expected cpu, cuda or cuda:N)")
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> anyhow::Result<Device> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> anyhow::Result<Device> {
    anyhow::bail!(
        "this strata binary was built without CUDA support (rebuild with `--features cuda`)"
    )
}

/// Serialises seeded initialisation: burn's CPU backend keeps one random generator per
/// process, so two threads that each seed it and then draw (two models initialised at once,
/// or tests running in parallel) would interleave their draws and lose reproducibility.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Seeds `device`'s random generator with `seed` and runs `init` (which should draw every
/// random value it needs) while no other caller of this function can reseed or draw.
pub fn with_seed<T>(device: &Device, seed: u64, init: impl FnOnce() -> T) -> T {
    let _guard = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    init()
}

/// Whether `device` is the CPU (the flex backend, with or without autodiff).
pub fn is_cpu(device: &Device) -> bool {
    *device == Device::flex() || *device == Device::flex().autodiff()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert!(parse_device("cpu").is_ok());
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(format!("{:#}", parse_device("cuda:0").unwrap_err()).contains("without CUDA"));
    }
}
