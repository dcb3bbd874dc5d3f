//! Turning a source text into a translation with the attention of every step, in the
//! order a request goes: a loaded [`translator::Translator`], its input tokenised
//! ([`source`], with [`segment`] finding the sentences), the request checked once into a
//! [`plan::DecodePlan`], one sentence decoded ([`decode`]: greedy, forced and prefixed
//! decoding with interventions, or [`beam`] search, step by step through [`step`]), and a
//! whole input decoded sentence by sentence into one block-diagonal matrix ([`sentences`]).
//! Many sentences at once go through [`batch`], the requests of many clients through
//! [`together`]; what the attention mixes, for norm-weighted
//! attention, comes from [`values`]. Drives the networks; knows nothing of
//! training.

pub(crate) mod batch;
pub(crate) mod beam;
pub mod decode;
pub mod plan;
pub mod segment;
pub mod sentences;
pub mod source;
pub mod step;
pub mod together;
pub mod translator;
pub mod values;
