//! Turning a source text into a translation with the attention of every step: the
//! [`decode::Translator`] (a model folder loaded; greedy, forced and prefixed decoding with
//! interventions), [`beam`] search, many sentences at once ([`batch`]), and multi-sentence
//! input ([`segment`] finds the sentences, [`sentences`] translates them one by one into one
//! block-diagonal matrix). Drives the networks; knows nothing of training.

pub(crate) mod batch;
pub(crate) mod beam;
pub mod decode;
pub mod segment;
pub mod sentences;
pub mod step;
