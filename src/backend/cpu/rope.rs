//! 2D rotary position embedding, the definition every backend follows: the first half of
//! each head's dimensions rotates with the token's row, the second half with its column;
//! within a half, pair (2i, 2i+1) turns by coordinate · base^(−4i/head_dim). Scores then
//! depend on positions only through their differences, at any slide size.

/// Per token: (cos, sin) of each pair's angle, the row half then the column half.
pub struct Rope {
    table: Vec<(f32, f32)>,
    head_dim: usize,
}

impl Rope {
    pub fn new(positions: &[[f32; 2]], head_dim: usize, base: f64) -> Rope {
        let quarter = head_dim / 4;
        let freqs: Vec<f64> = (0..quarter)
            .map(|i| base.powf(-(i as f64) / quarter as f64))
            .collect();
        let mut table = Vec::with_capacity(positions.len() * 2 * quarter);
        for p in positions {
            for &coordinate in p {
                for f in &freqs {
                    let angle = coordinate as f64 * f;
                    table.push((angle.cos() as f32, angle.sin() as f32));
                }
            }
        }
        Rope { table, head_dim }
    }

    /// Rotates `x` (token-major `[tokens, heads, head_dim]`) in place.
    pub fn apply(&self, x: &mut [f32], heads: usize) {
        self.turn(x, heads, 1.0);
    }

    /// Turns `x` back (by the opposite angles): the rotation's inverse, and its transpose, so
    /// also what a rotated tensor's gradient goes through.
    pub fn apply_inverse(&self, x: &mut [f32], heads: usize) {
        self.turn(x, heads, -1.0);
    }

    /// Turns one head's values of token `t` (`head_dim` of them) back, as
    /// [`Rope::apply_inverse`] does a whole array.
    pub fn apply_inverse_row(&self, head: &mut [f32], t: usize) {
        self.turn_head(head, t, -1.0);
    }

    /// Rotates by each angle times `direction` (±1).
    fn turn(&self, x: &mut [f32], heads: usize, direction: f32) {
        let d = self.head_dim;
        for (t, token) in x.chunks_exact_mut(heads * d).enumerate() {
            for head in token.chunks_exact_mut(d) {
                self.turn_head(head, t, direction);
            }
        }
    }

    fn turn_head(&self, head: &mut [f32], t: usize, direction: f32) {
        let pairs = self.head_dim / 2;
        for (i, &(cos, sin)) in self.table[t * pairs..(t + 1) * pairs].iter().enumerate() {
            let sin = sin * direction;
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = a * cos - b * sin;
            head[2 * i + 1] = a * sin + b * cos;
        }
    }
}
