//! Pages of the app (there is one).

pub mod translate;
