//! Seeded parameter initialisation (candle's CPU random generator cannot be seeded).

use candle_core::Tensor;
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Result;

/// Re-initialises every variable of `varmap` from `seed`, in name order, so that the same
/// seed always gives the same model.
///
/// Every matrix (embeddings included, whose "fan-in" is their width) and every bias draws
/// from U(-k, k) with k = 1/sqrt(fan-in), as PyTorch does for `Linear` and `GRU`; a bias
/// uses the fan-in of the matrix beside it.
pub fn init_seeded(varmap: &VarMap, seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = varmap
        .data()
        .lock()
        .map_err(|_| crate::Error::Internal("poisoned variable map".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    // Fan-in of each bias is that of the weight beside it.
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let k = if dims.len() >= 2 {
            1.0 / (dims[dims.len() - 1] as f64).sqrt()
        } else {
            let stem = name.rsplit_once('.').map(|(s, _)| s).unwrap_or("");
            let weight = data
                .iter()
                .find(|(n, v)| {
                    n.rsplit_once('.').map(|(s, _)| s) == Some(stem) && v.dims().len() == 2
                })
                .map(|(_, v)| v.dims()[1]);
            1.0 / (weight.unwrap_or(dims[0]) as f64).sqrt()
        };
        let n: usize = dims.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.random_range(-k..k) as f32).collect();
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}

/// [`init_seeded`], then what the architecture needs on top (layer norms at 1 and 0 for a
/// Transformer).
pub fn init_network(varmap: &VarMap, cfg: &crate::ModelConfig, seed: u64) -> Result<()> {
    init_seeded(varmap, seed)?;
    if let crate::config::Architecture::Transformer(_) = cfg.architecture {
        crate::networks::transformer::init_layer_norms(varmap)?;
    }
    Ok(())
}
