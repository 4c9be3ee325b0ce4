//! The operations the model is written against, with a CPU implementation (and, in the CUDA
//! issue, a GPU one behind the same seam).

pub mod cpu;
