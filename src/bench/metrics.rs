//! Evaluation metrics shared by the tests and the benchmarks.

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative (ties count half). `None` when either class is empty.
pub fn auroc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    assert_eq!(labels.len(), scores.len());
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Mann–Whitney U with average ranks for ties.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += (i..=j).filter(|&k| labels[order[k]]).count() as f64 * avg_rank;
        i = j + 1;
    }
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    Some((rank_sum_pos - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

#[cfg(test)]
mod tests {
    use super::auroc;

    #[test]
    fn hand_computed_cases() {
        // Perfect, inverted, and chance.
        assert_eq!(
            auroc(&[false, false, true, true], &[0.1, 0.2, 0.8, 0.9]),
            Some(1.0)
        );
        assert_eq!(
            auroc(&[true, true, false, false], &[0.1, 0.2, 0.8, 0.9]),
            Some(0.0)
        );
        // Pairs (pos, neg): (0.35>0.1 ✓), (0.35<0.4 ✗), (0.8>0.1 ✓), (0.8>0.4 ✓) → 3/4.
        assert_eq!(
            auroc(&[false, true, false, true], &[0.1, 0.35, 0.4, 0.8]),
            Some(0.75)
        );
        // A tie counts half: (0.5 = 0.5) → 0.5, (0.5 > 0.2) → 1 → 1.5 / 2.
        assert_eq!(auroc(&[true, false, false], &[0.5, 0.5, 0.2]), Some(0.75));
        assert_eq!(auroc(&[true, true], &[0.5, 0.6]), None);
    }
}
