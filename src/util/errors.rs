//! An error as one line: its message, then each cause (its sources) that the message does not
//! already quote. Some messages quote their cause (a path and the I/O error), others leave it
//! to the chain; either way each is said once.

pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    for cause in std::iter::successors(e.source(), |e| e.source()) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::with_causes;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot read x.json")]
        Quiet(#[source] std::io::Error),
        #[error("x.json: {0}")]
        Quoting(#[source] std::io::Error),
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = || std::io::Error::other("permission denied");
        assert_eq!(
            with_causes(&Outer::Quiet(io())),
            "cannot read x.json: permission denied"
        );
        assert_eq!(with_causes(&Outer::Quoting(io())), "x.json: permission denied");
    }
}
