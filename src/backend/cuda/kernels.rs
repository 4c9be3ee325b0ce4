//! The kernels of kernels/*.cu as build.rs reads them from the sources: names, parameter
//! types, and the attention kernels' tile sizes. Every launch is checked against its kernel's
//! signature before it is made ([`KernelSignature::check`]), so a launch whose arguments no
//! longer match the .cu (a parameter added, a type changed) fails with the kernel's name
//! instead of reading the wrong memory.

use cudarc::driver::{CudaSlice, CudaView, CudaViewMut};
use half::{bf16, f16};

/// A parameter's element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    /// `half_bits`: bf16 or fp16, by its bits.
    Half,
    F32,
    U8,
    I32,
    I64,
    /// A TMA descriptor ([`TensorMap`]), by value.
    TensorMap,
}

/// A kernel parameter: a pointer read (`const T*`), a pointer written (`T*`), or a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    In(Elem),
    Out(Elem),
    Value(Elem),
}

#[derive(Debug)]
pub struct KernelSignature {
    pub file: &'static str,
    pub name: &'static str,
    pub params: &'static [Param],
}

/// An attention kernel of kernels/flash_attn.cu: its 16-bit type, head dim, shared-memory
/// row stride, query rows per block, keys per stage and threads per block.
#[derive(Debug)]
pub struct FlashKernel {
    pub name: &'static str,
    pub bf16: bool,
    pub head_dim: usize,
    /// Elements from one row of a shared-memory tile to the next: the head dim (rows
    /// swizzled) or more (rows padded).
    pub row_stride: usize,
    pub block_m: usize,
    pub block_n: usize,
    pub threads: usize,
    /// K/V stages in shared memory.
    pub stages: usize,
    pub family: KernelFamily,
}

/// The attention kernels' families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFamily {
    /// kernels/flash_attn.cu: mma.sync, every GPU, every head dim.
    MmaSync,
    /// kernels/flash_attn_sm90.cu: wgmma (sm_90a only), products and softmax in turn.
    Wgmma,
    /// The same, the softmax overlapping the P·V of the block before.
    WgmmaPipelined,
    /// kernels/flash_attn_sm90_tma.cu: wgmma (sm_90a only), K and V by the TMA from a
    /// producer warpgroup, two consumer warpgroups ping-ponged.
    WgmmaTma,
    /// The same with persistent blocks, one an SM, each taking tiles one after another
    /// (tile-length batches).
    WgmmaTmaPersistent,
}

impl KernelFamily {
    /// Its name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            KernelFamily::MmaSync => "mma",
            KernelFamily::Wgmma => "wgmma",
            KernelFamily::WgmmaPipelined => "wgmma-pipelined",
            KernelFamily::WgmmaTma => "wgmma-tma",
            KernelFamily::WgmmaTmaPersistent => "wgmma-tma-persistent",
        }
    }

    /// Whether its kernels read q, k and v through TMA tensor maps.
    pub fn uses_tma(self) -> bool {
        matches!(self, KernelFamily::WgmmaTma | KernelFamily::WgmmaTmaPersistent)
    }
}

include!(concat!(env!("OUT_DIR"), "/kernel_table.rs"));

/// What a Rust launch argument is, for the check against the kernel's parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A device buffer of this element type, read-only or writable.
    Buffer(Elem, bool),
    /// A raw device address (a buffer whose type was chosen at run time): any pointer.
    Address,
    Value(Elem),
}

/// The kind of a launch argument.
pub trait LaunchArg {
    fn kind(&self) -> Arg;
}

/// A type device buffers hold, by its kernel element type.
pub trait DeviceElem {
    const ELEM: Elem;
}

macro_rules! device_elems {
    ($($t:ty => $e:ident),+) => {$(
        impl DeviceElem for $t {
            const ELEM: Elem = Elem::$e;
        }
    )+};
}
device_elems!(bf16 => Half, f16 => Half, f32 => F32, u8 => U8, i32 => I32, i64 => I64);

impl<T: DeviceElem> LaunchArg for &CudaSlice<T> {
    fn kind(&self) -> Arg {
        Arg::Buffer(T::ELEM, false)
    }
}
impl<T: DeviceElem> LaunchArg for &mut CudaSlice<T> {
    fn kind(&self) -> Arg {
        Arg::Buffer(T::ELEM, true)
    }
}
impl<T: DeviceElem> LaunchArg for &CudaView<'_, T> {
    fn kind(&self) -> Arg {
        Arg::Buffer(T::ELEM, false)
    }
}
impl<T: DeviceElem> LaunchArg for &mut CudaViewMut<'_, T> {
    fn kind(&self) -> Arg {
        Arg::Buffer(T::ELEM, true)
    }
}

macro_rules! values {
    ($($t:ty => $e:ident),+) => {$(
        impl LaunchArg for &$t {
            fn kind(&self) -> Arg { Arg::Value(Elem::$e) }
        }
    )+};
}
values!(f32 => F32, i32 => I32, i64 => I64);

/// A TMA descriptor (CUtensorMap: what cuTensorMapEncodeTiled writes), passed to a kernel by
/// value (its `const __grid_constant__ TensorMap` parameters).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct TensorMap(pub [u64; 16]);

// SAFETY: plain bytes, laid out as the kernel's `TensorMap` (128 bytes, 64-byte aligned).
unsafe impl cudarc::driver::DeviceRepr for TensorMap {}

impl LaunchArg for &TensorMap {
    fn kind(&self) -> Arg {
        Arg::Value(Elem::TensorMap)
    }
}

impl LaunchArg for &u64 {
    fn kind(&self) -> Arg {
        Arg::Address
    }
}

/// A launch whose arguments do not fit its kernel's parameters.
#[derive(Debug, thiserror::Error)]
pub enum LaunchMismatch {
    #[error("kernel {name} (kernels/{file}) takes {takes} arguments, the launch gives {gives}")]
    Count {
        name: &'static str,
        file: &'static str,
        takes: usize,
        gives: usize,
    },
    #[error("kernel {name} (kernels/{file}): argument {position} is {arg:?}, the parameter {param:?}")]
    Type {
        name: &'static str,
        file: &'static str,
        position: usize,
        arg: Arg,
        param: Param,
    },
}

impl KernelSignature {
    /// Whether `args` fit the parameters: as many, each pointer given a buffer of its element
    /// type (writable where the kernel writes) or an address, each value its type.
    pub fn check(&self, args: &[Arg]) -> Result<(), LaunchMismatch> {
        if args.len() != self.params.len() {
            return Err(LaunchMismatch::Count {
                name: self.name,
                file: self.file,
                takes: self.params.len(),
                gives: args.len(),
            });
        }
        for (i, (param, arg)) in self.params.iter().zip(args).enumerate() {
            let fits = match (param, arg) {
                (Param::In(_) | Param::Out(_), Arg::Address) => true,
                (Param::In(e), Arg::Buffer(a, _)) => e == a,
                (Param::Out(e), Arg::Buffer(a, writable)) => e == a && *writable,
                (Param::Value(e), Arg::Value(a)) => e == a,
                _ => false,
            };
            if !fits {
                return Err(LaunchMismatch::Type {
                    name: self.name,
                    file: self.file,
                    position: i + 1,
                    arg: *arg,
                    param: *param,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(name: &str) -> Option<&'static KernelSignature> {
        KERNELS.iter().find(|k| k.name == name)
    }

    #[test]
    fn the_table_holds_every_kernel_with_its_parameters() {
        let gelu = find("gelu").expect("layers.cu declares gelu");
        assert_eq!(gelu.file, "layers.cu");
        assert_eq!(
            gelu.params,
            [
                Param::In(Elem::Half),
                Param::Out(Elem::Half),
                Param::Value(Elem::I64)
            ]
        );
        let assemble = find("assemble_tiles").expect("tiles.cu declares assemble_tiles");
        assert_eq!(assemble.params.len(), 13);
        for flash in FLASH_KERNELS {
            let k = find(flash.name).expect("the macro's kernels are in the table");
            // The TMA kernels take tensor maps for q, k, v (not their strides), the tiles'
            // count for persistent blocks, and where to write the log-sum-exp (or null).
            let tma = flash.family.uses_tma();
            assert_eq!(k.params.len(), if tma { 14 } else { 13 });
            if tma {
                assert_eq!(k.params[13], Param::Out(Elem::F32));
            }
            assert_eq!(k.params[0] == Param::Value(Elem::TensorMap), tma);
            assert!(flash.block_m % 16 == 0 && flash.block_n % 16 == 0 && flash.threads % 32 == 0);
            assert!(flash.head_dim % 16 == 0 && flash.row_stride >= flash.head_dim);
            // The name says what the flags do (a line with one copied wrong reads wrong).
            let ty = if flash.bf16 { "bf16" } else { "f16" };
            let (family, file) = match flash.family {
                KernelFamily::MmaSync => ("", "flash_attn.cu"),
                KernelFamily::Wgmma => ("sm90_", "flash_attn_sm90.cu"),
                KernelFamily::WgmmaPipelined => ("sm90_pipelined_", "flash_attn_sm90.cu"),
                KernelFamily::WgmmaTma if flash.block_m == 192 => ("sm90_tma_c3_", "flash_attn_sm90_tma.cu"),
                KernelFamily::WgmmaTma => ("sm90_tma_", "flash_attn_sm90_tma.cu"),
                KernelFamily::WgmmaTmaPersistent => ("sm90_tma_persistent_", "flash_attn_sm90_tma.cu"),
            };
            assert_eq!(flash.name, format!("flash_attn_{family}{ty}_d{}", flash.head_dim));
            assert_eq!(k.file, file);
            let stages = match flash.family {
                KernelFamily::WgmmaPipelined | KernelFamily::WgmmaTma | KernelFamily::WgmmaTmaPersistent => 3,
                _ => 2,
            };
            assert_eq!(flash.stages, stages);
        }
        // Every head dim in both types, and the foundation encoders' (ViT-S/B/L/g 64, ViT-H 80),
        // on every GPU.
        let has = |d: usize, bf16: bool| {
            FLASH_KERNELS
                .iter()
                .any(|k| k.head_dim == d && k.bf16 == bf16 && k.family == KernelFamily::MmaSync)
        };
        assert!(FLASH_KERNELS.iter().all(|k| has(k.head_dim, !k.bf16)));
        assert!([64, 80, 96, 128].iter().all(|&d| has(d, true)));
    }

    #[test]
    fn launches_are_checked_against_the_signature() {
        let gelu = find("gelu").unwrap();
        let good = [
            Arg::Buffer(Elem::Half, false),
            Arg::Buffer(Elem::Half, true),
            Arg::Value(Elem::I64),
        ];
        assert!(gelu.check(&good).is_ok());
        assert!(gelu
            .check(&[Arg::Address, Arg::Address, Arg::Value(Elem::I64)])
            .is_ok());
        // One argument too few, an f32 buffer for a bf16 one, a read-only output, an i32 count.
        assert!(gelu.check(&good[..2]).is_err());
        assert!(gelu
            .check(&[Arg::Buffer(Elem::F32, false), good[1], good[2]])
            .is_err());
        assert!(gelu
            .check(&[good[0], Arg::Buffer(Elem::Half, false), good[2]])
            .is_err());
        let message = gelu
            .check(&[good[0], good[1], Arg::Value(Elem::I32)])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("gelu") && message.contains("argument 3"),
            "{message}"
        );
    }
}
