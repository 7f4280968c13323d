use std::collections::HashMap;
use std::sync::Mutex;

/// One WGSL entry point: the kernel family it belongs to (for timing), its shader source and entry name.
#[derive(Debug)]
pub struct Kernel {
    pub family: &'static str,
    pub source: &'static str,
    pub entry: &'static str,
}

type PipelineMap = HashMap<(usize, &'static str), (wgpu::ComputePipeline, wgpu::BindGroupLayout)>;

/// Compiled pipelines keyed by (shader source address, entry point): each is built once per device.
#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<usize, wgpu::ShaderModule>>,
    pipelines: Mutex<PipelineMap>,
}

impl PipelineCache {
    pub fn get(
        &self,
        device: &wgpu::Device,
        kernel: &Kernel,
    ) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
        let key = (kernel.source.as_ptr() as usize, kernel.entry);
        let mut pipes = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pipes.get(&key) {
            return p.clone();
        }
        let module = {
            let mut mods = self.modules.lock().unwrap_or_else(|e| e.into_inner());
            mods.entry(key.0)
                .or_insert_with(|| {
                    let desc = wgpu::ShaderModuleDescriptor {
                        label: Some(kernel.family),
                        source: wgpu::ShaderSource::Wgsl(kernel.source.into()),
                    };
                    if runtime_checks() {
                        device.create_shader_module(desc)
                    } else {
                        // SAFETY: every kernel guards its stores with the element count, clamps or guards its
                        // loads to the tensors' extents (audited; exercised at awkward sizes by tests/kernels.rs
                        // and tests/finite_diff.rs), and every loop is bounded by a uniform parameter.
                        unsafe {
                            device.create_shader_module_trusted(
                                desc,
                                wgpu::ShaderRuntimeChecks::unchecked(),
                            )
                        }
                    }
                })
                .clone()
        };
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry),
            layout: None,
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let layout = pipeline.get_bind_group_layout(0);
        pipes.insert(key, (pipeline.clone(), layout.clone()));
        (pipeline, layout)
    }
}

/// Whether shaders keep wgpu's injected bounds checks and loop bounding: `VITUNE_SHADER_CHECKS=1` turns them back
/// on (for debugging a kernel); by default the audited kernels run without them.
fn runtime_checks() -> bool {
    std::env::var("VITUNE_SHADER_CHECKS").is_ok_and(|v| v != "0")
}
