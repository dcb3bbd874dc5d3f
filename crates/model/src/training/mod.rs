//! Training a model from sentence pairs: reading and splitting the data ([`data`]), the
//! resumable, seeded training loop ([`train`]) and its [`options`], the run folder and its
//! [`checkpoint`], the model a fine-tune [`start`]s from, its log ([`run_log`]) and the model
//! card written with the exported model ([`card`]). Uses the networks, the kernels, decoding (to
//! score the test split) and evaluation (BLEU, chrF).

pub mod card;
pub(crate) mod checkpoint;
pub mod data;
pub mod options;
pub mod run_log;
pub mod shards;
pub(crate) mod start;
pub mod train;
