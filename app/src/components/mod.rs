//! View components of the translate page.

pub mod export_bar;
pub mod heads_grid;
pub mod heatmap;
pub mod heatmap_canvas;
pub mod lessons;
pub mod lines;
pub mod model_picker;
pub mod playback_bar;
pub mod run_panel;
pub mod step_inside;
pub mod token;
pub mod token_strip;
pub mod view_toolbar;
