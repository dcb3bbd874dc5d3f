//! Training a model from sentence pairs: reading and splitting the data ([`data`]), the
//! resumable, seeded training loop ([`train`]) and its [`options`], its log ([`run_log`]) and the model card
//! written with the exported model ([`card`]). Uses the networks, the kernels, decoding (to
//! score the test split) and evaluation (BLEU, chrF).

pub mod card;
pub mod data;
pub mod options;
pub mod run_log;
pub mod train;
