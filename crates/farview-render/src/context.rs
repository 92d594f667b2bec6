//! Adapter selection and the shared device.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::RenderError;

/// Which adapter to render on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdapterChoice {
    /// A hardware GPU when there is one, else the software fallback (see [`GpuContext::new`]).
    #[default]
    Auto,
    /// A hardware GPU or fail.
    Hardware,
    /// The preferred software rasterizer (Mesa llvmpipe through GL/EGL).
    Software,
    /// Any Vulkan adapter (lavapipe when there is no GPU).
    Vulkan,
    /// Any GL adapter through EGL (llvmpipe when there is no GPU).
    Gl,
}

impl FromStr for AdapterChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "hardware" | "gpu" => Ok(Self::Hardware),
            "software" | "cpu" => Ok(Self::Software),
            "vulkan" => Ok(Self::Vulkan),
            "gl" | "gles" | "opengl" => Ok(Self::Gl),
            other => Err(format!(
                "unknown adapter choice '{other}' (auto, hardware, software, vulkan, gl)"
            )),
        }
    }
}

impl std::fmt::Display for AdapterChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Hardware => "hardware",
            Self::Software => "software",
            Self::Vulkan => "vulkan",
            Self::Gl => "gl",
        })
    }
}

/// Which physical GPU, on a machine with several (one host per GPU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuSelector {
    /// The n-th hardware GPU in PCI bus order (the order `nvidia-smi` numbers them in),
    /// counted among the Vulkan adapters where there are any.
    Index(usize),
    /// The GPU at this PCI bus id (`0000:65:00.0`; `65:00.0` matches too).
    PciBusId(String),
}

impl FromStr for GpuSelector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(i) = s.parse::<usize>() {
            return Ok(Self::Index(i));
        }
        let hex_parts = |p: &str, n: usize| {
            p.split([':', '.'])
                .filter(|x| !x.is_empty())
                .all(|x| x.chars().all(|c| c.is_ascii_hexdigit()))
                && p.split([':', '.']).count() == n
        };
        if s.len() <= 32 && (hex_parts(s, 3) || hex_parts(s, 4)) {
            return Ok(Self::PciBusId(s.to_ascii_lowercase()));
        }
        Err(format!(
            "'{s}' is neither a GPU index (0, 1, ...) nor a PCI bus id (0000:65:00.0)"
        ))
    }
}

impl GpuSelector {
    fn matches_bus(&self, bus: &str) -> bool {
        match self {
            Self::PciBusId(want) => {
                let bus = bus.to_ascii_lowercase();
                !bus.is_empty() && (bus == *want || bus.ends_with(&format!(":{want}")))
            }
            Self::Index(_) => false,
        }
    }
}

/// The wgpu device shared by every stream of a host. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GpuContext {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    // Kept alive for the device's sake.
    _instance: wgpu::Instance,
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    /// Formats that take 4x multisampling on this adapter.
    msaa4: Vec<wgpu::TextureFormat>,
    anisotropic: bool,
    /// Compute shaders with the storage buffers the deform pass binds.
    compute: bool,
    lost: Arc<LostFlag>,
}

/// Which block-compressed format KTX2 (Basis Universal) textures go to the GPU in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TextureCompression {
    /// The best the adapter samples on hardware; RGBA8 on software rasterizers.
    #[default]
    Auto,
    /// Always RGBA8.
    Off,
    /// This format where the adapter samples it, else RGBA8 (for comparisons and tests).
    Only(BlockFormat),
}

/// A block-compressed texture format the Basis Universal transcoder writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFormat {
    /// BC7 (desktop GPUs).
    Bc7,
    /// ASTC 4x4 (mobile and some desktop GPUs).
    Astc4x4,
    /// ETC2 RGBA8 (mobile GPUs, GLES).
    Etc2,
}

impl BlockFormat {
    /// In order of preference.
    pub const ALL: [Self; 3] = [Self::Bc7, Self::Astc4x4, Self::Etc2];

    pub(crate) fn feature(self) -> wgpu::Features {
        match self {
            Self::Bc7 => wgpu::Features::TEXTURE_COMPRESSION_BC,
            Self::Astc4x4 => wgpu::Features::TEXTURE_COMPRESSION_ASTC,
            Self::Etc2 => wgpu::Features::TEXTURE_COMPRESSION_ETC2,
        }
    }

    /// The wgpu format, sRGB or linear.
    pub(crate) fn texture_format(self, srgb: bool) -> wgpu::TextureFormat {
        use wgpu::{AstcBlock, AstcChannel, TextureFormat as F};
        match (self, srgb) {
            (Self::Bc7, true) => F::Bc7RgbaUnormSrgb,
            (Self::Bc7, false) => F::Bc7RgbaUnorm,
            (Self::Astc4x4, true) => F::Astc {
                block: AstcBlock::B4x4,
                channel: AstcChannel::UnormSrgb,
            },
            (Self::Astc4x4, false) => F::Astc {
                block: AstcBlock::B4x4,
                channel: AstcChannel::Unorm,
            },
            (Self::Etc2, true) => F::Etc2Rgba8UnormSrgb,
            (Self::Etc2, false) => F::Etc2Rgba8Unorm,
        }
    }

    /// The transcoder's target.
    pub(crate) fn target(self) -> basisu::TargetFormat {
        match self {
            Self::Bc7 => basisu::TargetFormat::Bc7Rgba,
            Self::Astc4x4 => basisu::TargetFormat::Astc4x4Rgba,
            Self::Etc2 => basisu::TargetFormat::Etc2Rgba,
        }
    }
}

/// Set by the device-lost callback.
#[derive(Debug, Default)]
struct LostFlag {
    lost: AtomicBool,
    message: Mutex<String>,
}

fn is_software(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu
        || ["llvmpipe", "lavapipe", "softpipe", "swiftshader"]
            .iter()
            .any(|s| info.name.to_ascii_lowercase().contains(s))
}

/// Orders candidate adapters: lower is better.
fn rank(info: &wgpu::AdapterInfo, choice: AdapterChoice) -> Option<u32> {
    let software = is_software(info);
    let hw_rank = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        _ => 3,
    };
    // On a GPU, Vulkan is the native path. In software, GL through llvmpipe measured faster than
    // Vulkan through lavapipe for our pass (see benches/README.md), so it ranks first.
    let backend_rank = |prefer_gl: bool| match (info.backend, prefer_gl) {
        (wgpu::Backend::Gl, true) | (wgpu::Backend::Vulkan, false) => 0,
        _ => 1,
    };
    match choice {
        AdapterChoice::Auto if !software => Some(hw_rank * 2 + backend_rank(false)),
        AdapterChoice::Auto => Some(100 + backend_rank(true)),
        AdapterChoice::Hardware => (!software).then(|| hw_rank * 2 + backend_rank(false)),
        AdapterChoice::Software => software.then(|| backend_rank(true)),
        AdapterChoice::Vulkan => {
            (info.backend == wgpu::Backend::Vulkan).then(|| u32::from(software))
        }
        AdapterChoice::Gl => (info.backend == wgpu::Backend::Gl).then(|| u32::from(software)),
    }
}

impl GpuContext {
    /// Opens the best adapter for `choice` and creates a device on it. Logs the adapter chosen.
    pub fn new(choice: AdapterChoice) -> Result<Self, RenderError> {
        pollster::block_on(Self::new_async(choice, None))
    }

    /// [`Self::new`] on one GPU of several: among the hardware adapters `choice` allows, the
    /// one `gpu` names. Fails, listing what was found, when none matches.
    pub fn with_gpu(choice: AdapterChoice, gpu: &GpuSelector) -> Result<Self, RenderError> {
        pollster::block_on(Self::new_async(choice, Some(gpu)))
    }

    async fn new_async(
        choice: AdapterChoice,
        gpu: Option<&GpuSelector>,
    ) -> Result<Self, RenderError> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::GL;
        let instance = wgpu::Instance::new(desc);
        let adapters = instance.enumerate_adapters(desc_backends()).await;
        let found: Vec<String> = adapters
            .iter()
            .map(|a| a.get_info())
            .map(|i| {
                format!(
                    "{} ({:?}, {:?}, bus {})",
                    i.name,
                    i.backend,
                    i.device_type,
                    if i.device_pci_bus_id.is_empty() {
                        "?"
                    } else {
                        &i.device_pci_bus_id
                    }
                )
            })
            .collect();
        tracing::debug!(?found, %choice, "adapters");
        let mut candidates: Vec<(u32, wgpu::Adapter)> = adapters
            .into_iter()
            .filter_map(|a| rank(&a.get_info(), choice).map(|r| (r, a)))
            .collect();
        if let Some(gpu) = gpu {
            // One physical GPU shows once per backend, and GL reports no PCI bus id: number
            // the hardware GPUs of one backend (Vulkan where there is one, the native path on
            // GPUs), in PCI bus order, one per bus.
            candidates.retain(|(_, a)| !is_software(&a.get_info()));
            if candidates
                .iter()
                .any(|(_, a)| a.get_info().backend == wgpu::Backend::Vulkan)
            {
                candidates.retain(|(_, a)| a.get_info().backend == wgpu::Backend::Vulkan);
            }
            candidates.sort_by(|(ra, a), (rb, b)| {
                (a.get_info().device_pci_bus_id, *ra).cmp(&(b.get_info().device_pci_bus_id, *rb))
            });
            candidates.dedup_by(|(_, a), (_, b)| {
                let (a, b) = (a.get_info(), b.get_info());
                !a.device_pci_bus_id.is_empty() && a.device_pci_bus_id == b.device_pci_bus_id
            });
            let picked = match gpu {
                GpuSelector::Index(i) => candidates.into_iter().nth(*i),
                bus => candidates
                    .into_iter()
                    .find(|(_, a)| bus.matches_bus(&a.get_info().device_pci_bus_id)),
            };
            candidates = picked.into_iter().collect();
        }
        let adapter = candidates
            .into_iter()
            .min_by_key(|(r, _)| *r)
            .map(|(_, a)| a)
            .ok_or_else(|| RenderError::NoAdapter {
                choice: match gpu {
                    Some(g) => format!("{choice}, gpu {g:?}"),
                    None => choice.to_string(),
                },
                found: found.join(", "),
            })?;
        let info = adapter.get_info();
        let offered = adapter.limits();
        let mut limits = wgpu::Limits::downlevel_defaults().using_resolution(offered.clone());
        // Large skinned or morphed meshes are posed from one storage binding each: as large as
        // the adapter allows, up to 1 GiB.
        limits.max_storage_buffer_binding_size = offered
            .max_storage_buffer_binding_size
            .clamp(limits.max_storage_buffer_binding_size, 1 << 30);
        limits.max_buffer_size = offered
            .max_buffer_size
            .clamp(limits.max_buffer_size, 1 << 30)
            .max(limits.max_storage_buffer_binding_size);
        let msaa4 = [
            wgpu::TextureFormat::Rgba8UnormSrgb,
            wgpu::TextureFormat::Depth24PlusStencil8,
        ]
        .into_iter()
        .filter(|f| {
            adapter
                .get_texture_format_features(*f)
                .flags
                .contains(wgpu::TextureFormatFeatureFlags::MULTISAMPLE_X4)
        })
        .collect();
        let downlevel = adapter.get_downlevel_capabilities().flags;
        let anisotropic = downlevel.contains(wgpu::DownlevelFlags::ANISOTROPIC_FILTERING);
        let compute = downlevel.contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
            && offered.max_storage_buffers_per_shader_stage >= 4
            && offered.max_compute_workgroup_size_x >= 64
            && offered.max_compute_invocations_per_workgroup >= 64
            && offered.max_compute_workgroups_per_dimension > 0;
        // Block-compressed texture formats the adapter samples, for KTX2 textures.
        let features = adapter.features()
            & (wgpu::Features::TEXTURE_COMPRESSION_BC
                | wgpu::Features::TEXTURE_COMPRESSION_ASTC
                | wgpu::Features::TEXTURE_COMPRESSION_ETC2);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("farview"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| RenderError::Device {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;
        let lost = Arc::new(LostFlag::default());
        {
            let lost = lost.clone();
            device.set_device_lost_callback(move |reason, message| {
                // Dropping the device reports `Destroyed`; only a real loss is worth a log line.
                if reason != wgpu::DeviceLostReason::Destroyed {
                    tracing::error!(?reason, %message, "GPU device lost");
                }
                if let Ok(mut m) = lost.message.lock() {
                    *m = format!("{reason:?}: {message}");
                }
                lost.lost.store(true, Ordering::Release);
            });
        }
        tracing::info!(
            adapter = %info.name,
            backend = ?info.backend,
            device_type = ?info.device_type,
            driver = %info.driver,
            driver_info = %info.driver_info,
            %choice,
            "GPU adapter selected"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                _instance: instance,
                device,
                queue,
                info,
                limits,
                msaa4,
                anisotropic,
                compute,
                lost,
            }),
        })
    }

    /// The device.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// Whether both formats take 4x multisampling on this adapter.
    pub(crate) fn supports_msaa4(
        &self,
        color: wgpu::TextureFormat,
        depth: wgpu::TextureFormat,
    ) -> bool {
        self.inner.msaa4.contains(&color) && self.inner.msaa4.contains(&depth)
    }

    /// Whether samplers may filter anisotropically on this adapter.
    pub(crate) fn supports_anisotropy(&self) -> bool {
        self.inner.anisotropic
    }

    /// The adapter's description.
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }

    /// The block-compressed format KTX2 textures are transcoded to under `choice`, if any.
    /// `Auto` picks BC7, else ASTC 4x4, else ETC2 on a hardware adapter, and none on a software
    /// rasterizer (it decodes blocks per sample, slower than reading RGBA8).
    pub fn block_format(&self, choice: TextureCompression) -> Option<BlockFormat> {
        let features = self.inner.device.features();
        let has = |f: BlockFormat| features.contains(f.feature());
        match choice {
            TextureCompression::Off => None,
            TextureCompression::Auto if is_software(&self.inner.info) => None,
            TextureCompression::Auto => BlockFormat::ALL.into_iter().find(|f| has(*f)),
            TextureCompression::Only(f) => has(f).then_some(f),
        }
    }

    /// The largest storage binding, when the device runs the compute shaders that pose skinned
    /// and morphed meshes (`None`: they are posed on the CPU).
    pub(crate) fn gpu_posing_binding(&self) -> Option<u64> {
        self.inner
            .compute
            .then_some(self.inner.limits.max_storage_buffer_binding_size)
    }

    /// The limits the device was created with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    /// The device-lost message when the device has been lost, else `None`. A lost device stays
    /// lost: every renderer on this context fails and the host needs a new context.
    pub fn lost(&self) -> Option<String> {
        if !self.inner.lost.lost.load(Ordering::Acquire) {
            return None;
        }
        Some(
            self.inner
                .lost
                .message
                .lock()
                .map(|m| m.clone())
                .unwrap_or_else(|_| "device lost".to_owned()),
        )
    }

    /// The graphics API the adapter is driven through.
    pub(crate) fn backend(&self) -> wgpu::Backend {
        self.inner.info.backend
    }

    /// True when rendering happens on the CPU (Mesa llvmpipe/lavapipe).
    pub fn is_software(&self) -> bool {
        is_software(&self.inner.info)
    }

    /// One line naming the adapter, for logs and the `Welcome` message.
    pub fn summary(&self) -> String {
        let i = &self.inner.info;
        format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
    }
}

fn desc_backends() -> wgpu::Backends {
    wgpu::Backends::VULKAN | wgpu::Backends::GL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_selectors_parse() {
        assert_eq!("0".parse(), Ok(GpuSelector::Index(0)));
        assert_eq!(" 3 ".parse(), Ok(GpuSelector::Index(3)));
        assert_eq!(
            "0000:65:00.0".parse(),
            Ok(GpuSelector::PciBusId("0000:65:00.0".into()))
        );
        assert_eq!(
            "65:00.0".parse(),
            Ok(GpuSelector::PciBusId("65:00.0".into()))
        );
        for bad in ["", "-1", "gpu0", "65:00", "zz:00.0", "0000:65:00.0:1:2"] {
            assert!(bad.parse::<GpuSelector>().is_err(), "{bad:?}");
        }
        // A short bus id matches the full one the driver reports, not another bus.
        let short = GpuSelector::PciBusId("65:00.0".into());
        assert!(short.matches_bus("0000:65:00.0"));
        assert!(!short.matches_bus("0000:165:00.0"));
        assert!(!short.matches_bus(""));
    }

    #[test]
    fn choices_parse_and_print() {
        for c in ["auto", "hardware", "software", "vulkan", "gl"] {
            assert_eq!(
                c.parse::<AdapterChoice>().map(|c| c.to_string()),
                Ok(c.to_owned())
            );
        }
        assert!("metal".parse::<AdapterChoice>().is_err());
    }
}
