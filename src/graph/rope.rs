//! Rotary position tables: per token, the angle of every rotating pair. One `Op::Rope` consumes
//! them, so text (1-D), vision (2-D) and Qwen3-VL's interleaved MRoPE differ only here.

/// For each rotating pair: which position axis drives it and its inverse frequency.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeTable {
    /// Position axis of each pair.
    pub axis: Vec<usize>,
    /// Inverse frequency of each pair.
    pub inv_freq: Vec<f32>,
}

fn ladder(pairs: usize, theta: f32) -> Vec<f32> {
    // As transformers computes it: 1 / theta^(2i / dim) in f32, dim = 2 * pairs.
    (0..pairs).map(|i| 1.0 / theta.powf((2 * i) as f32 / (2 * pairs) as f32)).collect()
}

impl RopeTable {
    /// Plain 1-D rotary over `rot_dim` dimensions (all pairs read axis 0).
    pub fn text(rot_dim: usize, theta: f32) -> Self {
        RopeTable { axis: vec![0; rot_dim / 2], inv_freq: ladder(rot_dim / 2, theta) }
    }

    /// Qwen3-VL text MRoPE (interleaved): pair i reads the h axis (1) when `i % 3 == 1` and
    /// `i < 3 * sections[1]`, the w axis (2) when `i % 3 == 2` and `i < 3 * sections[2]`, else
    /// the t axis (0). Frequencies are the plain ladder over `head_dim`.
    pub fn mrope_interleaved(head_dim: usize, theta: f32, sections: [usize; 3]) -> Self {
        let pairs = head_dim / 2;
        let axis = (0..pairs)
            .map(|i| match i % 3 {
                1 if i < 3 * sections[1] => 1,
                2 if i < 3 * sections[2] => 2,
                _ => 0,
            })
            .collect();
        RopeTable { axis, inv_freq: ladder(pairs, theta) }
    }

    /// Qwen-VL vision 2-D rotary: the first half of the pairs read the row (axis 0), the second
    /// half the column (axis 1), each half with its own ladder over `head_dim / 2`.
    pub fn vision_2d(head_dim: usize, theta: f32) -> Self {
        let quarter = head_dim / 4;
        let l = ladder(quarter, theta);
        RopeTable {
            axis: (0..2 * quarter).map(|i| i / quarter).collect(),
            inv_freq: l.iter().chain(l.iter()).copied().collect(),
        }
    }

    /// Number of rotating pairs (R / 2).
    pub fn pairs(&self) -> usize {
        self.axis.len()
    }

    /// Number of position axes this table reads.
    pub fn axes(&self) -> usize {
        self.axis.iter().max().map_or(1, |m| m + 1)
    }

    /// cos and sin tables `[T, R/2]` for per-token positions (`positions[t][axis]`).
    pub fn cos_sin<P: AsRef<[u32]>>(&self, positions: &[P]) -> crate::Result<(Vec<f32>, Vec<f32>)> {
        let n = positions.len() * self.pairs();
        let (mut cos, mut sin) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (t, p) in positions.iter().enumerate() {
            let p = p.as_ref();
            if p.len() < self.axes() {
                return Err(crate::Error::Data(format!(
                    "rope: token {t} has {} position axes, the table reads {}",
                    p.len(),
                    self.axes()
                )));
            }
            for (a, f) in self.axis.iter().zip(&self.inv_freq) {
                let angle = p[*a] as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok((cos, sin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mrope_interleaving_matches_qwen3_vl_sections() {
        let t = RopeTable::mrope_interleaved(128, 5e6, [24, 20, 20]);
        assert_eq!(t.pairs(), 64);
        assert_eq!(&t.axis[..6], &[0, 1, 2, 0, 1, 2]);
        // h and w each own 20 pairs, t owns the rest (24).
        assert_eq!(t.axis.iter().filter(|&&a| a == 1).count(), 20);
        assert_eq!(t.axis.iter().filter(|&&a| a == 2).count(), 20);
        assert_eq!(&t.axis[58..], &[1, 2, 0, 0, 0, 0]);
    }

    #[test]
    fn vision_table_restarts_the_ladder_for_columns() {
        let t = RopeTable::vision_2d(64, 10000.0);
        assert_eq!(t.pairs(), 32);
        assert_eq!(t.axis[15], 0);
        assert_eq!(t.axis[16], 1);
        assert_eq!(t.inv_freq[0], 1.0);
        assert_eq!(t.inv_freq[16], 1.0);
        assert!((t.inv_freq[1] - 10000f32.powf(-2.0 / 32.0)).abs() < 1e-7);
        let (c, s) = t.cos_sin(&[[3u32, 5]]).unwrap();
        assert!((c[0] - 3f32.cos()).abs() < 1e-6 && (s[16] - 5f32.sin()).abs() < 1e-6);
        assert!(t.cos_sin(&[[3u32]]).is_err());
    }
}
