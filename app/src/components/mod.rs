//! View components of the translate page.

pub mod heads_grid;
pub mod heatmap;
pub mod heatmap_canvas;
pub mod lines;
pub mod model_picker;
pub mod run_panel;
pub mod token;
pub mod token_strip;
pub mod view_toolbar;
