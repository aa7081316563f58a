//! Compute device selection (`--device cpu|cuda[:N]|vulkan[:N]|wgpu[:N]`).

use burn::tensor::Device;

/// The device names strata knows, for error messages.
const NAMES: &str = "cpu, cuda[:N], vulkan[:N] or wgpu[:N]";

/// Parses a device name: `cpu` (the flex backend); with the `cuda` feature `cuda`/`cuda:N`;
/// with the `vulkan` feature `vulkan`/`vulkan:N` (burn's wgpu runtime pinned to Vulkan, kernels
/// compiled to SPIR-V); with the `wgpu` feature `wgpu`/`wgpu:N` (the graphics API wgpu picks,
/// kernels compiled to WGSL and translated by naga: the path Mesa's software Vulkan driver
/// runs in CI). Without an index the GPU backends take wgpu's preferred adapter (a discrete
/// GPU first; `CUBECL_WGPU_DEFAULT_DEVICE` overrides it); `:N` is the N-th discrete GPU.
pub fn parse_device(name: &str) -> anyhow::Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    if name == "cpu" {
        return Ok(Device::flex());
    }
    for (prefix, make) in [
        ("cuda", cuda as fn(Option<usize>) -> anyhow::Result<Device>),
        ("vulkan", vulkan),
        ("wgpu", wgpu),
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let index = match rest.strip_prefix(':') {
                Some(i) => Some(i.parse::<usize>().map_err(|_| {
                    anyhow::anyhow!("invalid device index in {name:?} (expected {NAMES})")
                })?),
                None if rest.is_empty() => None,
                None => anyhow::bail!("unknown device {name:?} (expected {NAMES})"),
            };
            return make(index);
        }
    }
    anyhow::bail!("unknown device {name:?} (expected {NAMES})")
}

#[cfg(feature = "cuda")]
fn cuda(index: Option<usize>) -> anyhow::Result<Device> {
    Ok(Device::cuda(index.unwrap_or(0)))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: Option<usize>) -> anyhow::Result<Device> {
    anyhow::bail!(
        "this strata binary was built without CUDA support (rebuild with `--features cuda`, which needs network access at build time)"
    )
}

#[cfg(any(feature = "vulkan", feature = "wgpu"))]
fn adapter(index: Option<usize>) -> burn::tensor::DeviceKind {
    match index {
        Some(i) => burn::tensor::DeviceKind::DiscreteGpu(i),
        None => burn::tensor::DeviceKind::DefaultDevice,
    }
}

#[cfg(feature = "vulkan")]
fn vulkan(index: Option<usize>) -> anyhow::Result<Device> {
    Ok(Device::vulkan(adapter(index)))
}

#[cfg(not(feature = "vulkan"))]
fn vulkan(_index: Option<usize>) -> anyhow::Result<Device> {
    anyhow::bail!(
        "this strata binary was built without Vulkan support (rebuild with `--features vulkan`)"
    )
}

#[cfg(feature = "wgpu")]
fn wgpu(index: Option<usize>) -> anyhow::Result<Device> {
    Ok(Device::wgpu(adapter(index)))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_index: Option<usize>) -> anyhow::Result<Device> {
    anyhow::bail!(
        "this strata binary was built without wgpu support (rebuild with `--features wgpu`)"
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
        assert!(parse_device("vulkanx").is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(format!("{:#}", parse_device("cuda:0").unwrap_err()).contains("without CUDA"));
        #[cfg(not(feature = "vulkan"))]
        assert!(format!("{:#}", parse_device("vulkan").unwrap_err()).contains("without Vulkan"));
        #[cfg(not(feature = "wgpu"))]
        assert!(format!("{:#}", parse_device("wgpu:0").unwrap_err()).contains("without wgpu"));
    }
}
