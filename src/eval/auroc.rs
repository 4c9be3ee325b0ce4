//! Area under the ROC curve: the probability that a random positive scores above a random
//! negative, ties counting one half (the Mann–Whitney statistic with mid-ranks).

/// AUROC of `scores` against `labels` (true = positive); `None` unless both classes occur.
pub fn auroc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the positives' ranks (1-based), tied scores sharing their mean rank.
    let mut positive_ranks = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        positive_ranks += mean_rank * order[start..end].iter().filter(|&&i| labels[i]).count() as f64;
        start = end;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((positive_ranks - p * (p + 1.0) / 2.0) / (p * n))
}

#[cfg(test)]
mod tests {
    use super::auroc;

    #[test]
    fn hand_computed_cases() {
        // Pairs (positive, negative): 0.35 beats 0.1, loses to 0.4; 0.8 beats both: 3 of 4.
        assert_eq!(
            auroc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        // A tie counts one half: (0.5 + 1) / 2.
        assert_eq!(auroc(&[0.5, 0.5, 0.2], &[true, false, false]), Some(0.75));
        assert_eq!(auroc(&[0.9, 0.1], &[true, false]), Some(1.0));
        assert_eq!(auroc(&[0.9, 0.1], &[false, true]), Some(0.0));
        assert_eq!(auroc(&[0.3, 0.3, 0.3], &[true, false, true]), Some(0.5));
        assert_eq!(auroc(&[0.3, 0.7], &[true, true]), None);
    }
}
