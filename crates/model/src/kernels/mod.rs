//! CPU kernels with their own backward pass, and the optimiser.
//!
//! candle records every tensor op for backpropagation and allocates every result; for these
//! small models that bookkeeping, not arithmetic, dominated a training step. The networks
//! therefore call [`ops`] (dense layers, softmax, cross-entropy), which run as single fused
//! ops on the CPU ([`fused`], [`fused_rnn`], [`fused_seq`], [`fused_loss`]), each checked
//! against the candle composition it replaces; [`adam`] updates the weights in place and
//! [`alloc`] keeps freed training buffers. Depends on nothing else in the crate but its
//! errors.

pub mod adam;
pub mod alloc;
pub mod attention;
pub mod dense_layer;
pub(crate) mod fused;
pub(crate) mod fused_loss;
pub(crate) mod fused_rnn;
pub(crate) mod fused_seq;
pub mod gemm;
pub mod ops;
pub mod threads;
