//! What a model's attention mixes, so that attention weights can be weighed by how far they
//! move the output (norm-weighted attention, Kobayashi et al. 2020): a weight on a source
//! position whose value vector is short changes little, whatever its size.
//! [`Translator::attention_values`] encodes one source sentence and returns its
//! [`AttentionValues`]: per layer and head, the vector each source position adds per unit of
//! weight (see [`crate::networks::EncoderDecoder::attention_values`]).

use candle_core::{DType, Tensor};

use super::translator::Translator;
use crate::networks::EncoderDecoder;
use crate::{Error, Result, with_network};

/// Per layer, what each head adds to the output per unit of attention weight on each source
/// position of one sentence.
#[derive(Clone, Debug)]
pub struct AttentionValues {
    /// One `(heads, S, R)` per layer.
    layers: Vec<Tensor>,
}

impl AttentionValues {
    /// Wraps one `(heads, S, R)` tensor per layer.
    pub fn new(layers: Vec<Tensor>) -> Result<Self> {
        for l in &layers {
            l.dims3()?;
        }
        Ok(AttentionValues { layers })
    }

    /// The number of layers.
    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// `‖v_hj‖`, indexed `[layer][head][source]`.
    pub fn norms(&self) -> Result<Vec<Vec<Vec<f32>>>> {
        self.layers
            .iter()
            .map(|v| Ok(v.sqr()?.sum(2)?.sqrt()?.to_vec2::<f32>()?))
            .collect()
    }

    /// `‖Σ_h w[h][j] v_hj‖` for every source position `j` of layer `layer`: the size of what
    /// position `j` adds to the layer's output through all its heads at once.
    ///
    /// # Shapes
    /// - `weights`: `[head][source]`, the layer's attention at one step; returns `[source]`
    ///
    /// # Errors
    /// [`Error::Invalid`] for a layer past the last or weights of another shape.
    pub fn mixed_norms(&self, layer: usize, weights: &[Vec<f32>]) -> Result<Vec<f32>> {
        let v = self.layers.get(layer).ok_or_else(|| {
            Error::Invalid(format!(
                "layer {layer} asked for, but the model has {} attention layers",
                self.layers.len()
            ))
        })?;
        let (heads, s, _) = v.dims3()?;
        if weights.len() != heads || weights.iter().any(|w| w.len() != s) {
            return Err(Error::Invalid(format!(
                "weights for {} heads over {:?} positions given; the values have {heads} heads over {s}",
                weights.len(),
                weights.iter().map(Vec::len).collect::<Vec<_>>()
            )));
        }
        let w = Tensor::from_vec(weights.concat(), (heads, s, 1), v.device())?;
        Ok(v.broadcast_mul(&w)?
            .sum(0)?
            .sqr()?
            .sum(1)?
            .sqrt()?
            .to_vec1::<f32>()?)
    }
}

impl Translator {
    /// Encodes one source sentence (its piece ids, `</s>` included) and returns what its
    /// attention mixes at every layer and head.
    pub fn attention_values(&self, source_ids: &[u32]) -> Result<AttentionValues> {
        if source_ids.is_empty() {
            return Err(Error::Invalid(
                "an empty source has no attention values".into(),
            ));
        }
        let src = Tensor::from_vec(source_ids.to_vec(), (1, source_ids.len()), &self.device)?;
        let mask = Tensor::ones((1, source_ids.len()), DType::F32, &self.device)?;
        let layers = with_network!(&self.network, |net| {
            let memory = EncoderDecoder::encode(net, &src, &mask)?;
            net.attention_values(&memory)?
                .into_iter()
                .map(|t| Ok(t.squeeze(0)?))
                .collect::<Result<Vec<_>>>()
        })?;
        AttentionValues::new(layers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn norms_and_mixed_norms_follow_their_definitions() {
        // one layer, two heads, two positions, R = 2
        let v = Tensor::from_vec(
            vec![3.0f32, 4.0, 1.0, 0.0, 0.0, 2.0, 0.0, 1.0],
            (2, 2, 2),
            &Device::Cpu,
        )
        .unwrap();
        let values = AttentionValues::new(vec![v]).unwrap();
        assert_eq!(
            values.norms().unwrap(),
            vec![vec![vec![5.0, 1.0], vec![2.0, 1.0]]]
        );
        // position 0: 0.5·(3,4) + 1·(0,2) = (1.5, 4) → √18.25
        // position 1: 0.5·(1,0) + 0·(0,1) = (0.5, 0) → 0.5
        let m = values
            .mixed_norms(0, &[vec![0.5, 0.5], vec![1.0, 0.0]])
            .unwrap();
        assert!((m[0] - 18.25f32.sqrt()).abs() < 1e-6);
        assert!((m[1] - 0.5).abs() < 1e-6);
        assert!(values.mixed_norms(1, &[vec![0.5, 0.5]]).is_err());
        assert!(values.mixed_norms(0, &[vec![0.5, 0.5]]).is_err());
    }
}
