//! [`PackedWeights`]: a dense block of attention weights in a compact wire form.
//!
//! A Transformer step carries every layer's and head's weights; as nested JSON numbers
//! (`0.012345679,`) each weight costs about 11 bytes. Packed, each costs 2⅔ bytes: an IEEE
//! 754 half-precision float (11 significant bits, so a weight keeps about 3 decimal digits,
//! and weights down to 6·10⁻⁸ stay non-zero for a log colour scale), little-endian, in
//! standard padded base64.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use half::f16;
use serde::{Deserialize, Serialize};

/// A dense, row-major block of weights with its shape, e.g. `[layer, head, source]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PackedWeights {
    /// Dimensions, outermost first; their product is the number of values.
    pub shape: Vec<usize>,
    /// The values in row-major order as little-endian IEEE 754 half floats, base64-encoded
    /// (standard alphabet, padded).
    pub f16: String,
}

/// Why weights cannot be packed or unpacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackError {
    /// The number of values does not match the shape.
    Length { shape: Vec<usize>, values: usize },
    /// Nested rows of different lengths: the block is not rectangular.
    Ragged,
    /// The `f16` field is not valid base64.
    Base64(String),
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length { shape, values } => {
                write!(f, "shape {shape:?} does not match {values} packed values")
            }
            Self::Ragged => write!(f, "rows of different lengths cannot be packed"),
            Self::Base64(e) => write!(f, "packed weights are not valid base64: {e}"),
        }
    }
}

impl std::error::Error for PackError {}

impl PackedWeights {
    /// Packs `values` (row-major) with the given `shape`.
    pub fn pack(shape: Vec<usize>, values: &[f32]) -> Result<Self, PackError> {
        if shape.iter().product::<usize>() != values.len() {
            return Err(PackError::Length {
                shape,
                values: values.len(),
            });
        }
        let bytes: Vec<u8> = values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        Ok(Self {
            shape,
            f16: STANDARD.encode(bytes),
        })
    }

    /// Packs a rectangular `[a][b][c]` block.
    pub fn from_nested3(x: &[Vec<Vec<f32>>]) -> Result<Self, PackError> {
        let b = x.first().map_or(0, Vec::len);
        let c = x.first().and_then(|m| m.first()).map_or(0, Vec::len);
        if x.iter()
            .any(|m| m.len() != b || m.iter().any(|r| r.len() != c))
        {
            return Err(PackError::Ragged);
        }
        let flat: Vec<f32> = x.iter().flatten().flatten().copied().collect();
        Self::pack(vec![x.len(), b, c], &flat)
    }

    /// Packs a rectangular `[a][b][c][d]` block.
    pub fn from_nested4(x: &[Vec<Vec<Vec<f32>>>]) -> Result<Self, PackError> {
        let inner: Vec<Self> = x
            .iter()
            .map(|m| Self::from_nested3(m))
            .collect::<Result<_, _>>()?;
        let sub = inner.first().map_or(vec![0, 0, 0], |p| p.shape.clone());
        if inner.iter().any(|p| p.shape != sub) {
            return Err(PackError::Ragged);
        }
        let flat: Vec<f32> = x.iter().flatten().flatten().flatten().copied().collect();
        Self::pack([vec![x.len()], sub].concat(), &flat)
    }

    /// Number of values (the product of the shape).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// No values at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every value, row-major, checked against the shape.
    pub fn values(&self) -> Result<Vec<f32>, PackError> {
        let bytes = STANDARD
            .decode(self.f16.as_bytes())
            .map_err(|e| PackError::Base64(e.to_string()))?;
        if bytes.len() != 2 * self.len() {
            return Err(PackError::Length {
                shape: self.shape.clone(),
                values: bytes.len() / 2,
            });
        }
        Ok(bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect())
    }

    /// The values as rows of the innermost dimension: `[a][b][c]` gives `a·b` rows of `c`.
    pub fn rows(&self) -> Result<Vec<Vec<f32>>, PackError> {
        let width = self.shape.last().copied().unwrap_or(0);
        let values = self.values()?;
        if width == 0 {
            return Ok(Vec::new());
        }
        Ok(values.chunks(width).map(<[f32]>::to_vec).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_within_half_precision() {
        let x = vec![
            vec![vec![0.5, 0.25, 0.25], vec![1e-6, 0.999_999, 0.0]],
            vec![vec![0.1, 0.2, 0.7], vec![0.333, 0.333, 0.334]],
        ];
        let p = PackedWeights::from_nested3(&x).unwrap();
        assert_eq!(p.shape, vec![2, 2, 3]);
        let rows = p.rows().unwrap();
        assert_eq!(rows.len(), 4);
        for (got, want) in rows.iter().flatten().zip(x.iter().flatten().flatten()) {
            assert!(
                (got - want).abs() <= want.abs() / 1024.0 + 1e-7,
                "{got} vs {want}"
            );
        }
        assert!(rows[1][0] > 0.0, "small weights stay non-zero");
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<PackedWeights>(&json).unwrap(), p);
    }

    #[test]
    fn packed_is_smaller_than_nested_json() {
        // 3 layers x 4 heads x 21 source tokens, as a Transformer step's cross-attention.
        let x: Vec<Vec<Vec<f32>>> = (0..3)
            .map(|l| {
                (0..4)
                    .map(|h| {
                        let raw: Vec<f32> = (0..21).map(|s| ((l + h + s) % 7 + 1) as f32).collect();
                        let sum: f32 = raw.iter().sum();
                        raw.iter().map(|v| v / sum).collect()
                    })
                    .collect()
            })
            .collect();
        let nested = serde_json::to_string(&x).unwrap().len();
        let packed = serde_json::to_string(&PackedWeights::from_nested3(&x).unwrap())
            .unwrap()
            .len();
        assert!(
            packed * 3 < nested,
            "packed {packed} B vs nested {nested} B"
        );
    }

    #[test]
    fn four_dimensions_and_bad_input() {
        let m = vec![vec![vec![0.5, 0.5], vec![1.0, 0.0]]];
        let p = PackedWeights::from_nested4(&[m.clone(), m]).unwrap();
        assert_eq!((p.shape.clone(), p.len()), (vec![2, 1, 2, 2], 8));
        assert_eq!(
            PackedWeights::from_nested3(&[vec![vec![1.0], vec![0.5, 0.5]]]),
            Err(PackError::Ragged)
        );
        assert!(matches!(
            PackedWeights::pack(vec![2, 2], &[1.0]),
            Err(PackError::Length { .. })
        ));
        let bad = PackedWeights {
            shape: vec![1],
            f16: "not base64!".into(),
        };
        assert!(matches!(bad.values(), Err(PackError::Base64(_))));
        let short = PackedWeights {
            shape: vec![3],
            ..PackedWeights::pack(vec![1], &[1.0]).unwrap()
        };
        assert!(short.values().unwrap_err().to_string().contains("[3]"));
        let empty = PackedWeights::from_nested3(&[]).unwrap();
        assert!(empty.is_empty() && empty.rows().unwrap().is_empty());
    }
}
