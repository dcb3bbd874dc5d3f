//! Opening models trained elsewhere: a checkpoint folder as its authors saved it becomes an
//! attnscope model folder, which the translator, the server and the page then use like
//! the models trained here. [`marian`]: Hugging Face Marian (the opus-mt models).

pub mod marian;
mod marian_card;
