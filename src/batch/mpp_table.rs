//! `--mpp-csv`: pixel sizes of particular slides, by file name, as Trident's custom MPP table.

use crate::slide::mpp::{check_mpp, ImplausibleMpp};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A table that cannot be used: the file, the line, what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum MppTableError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: line {line}: {problem}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        problem: TableProblem,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TableProblem {
    #[error("empty; expected a header wsi,mpp")]
    Empty,
    #[error("the header must name the columns wsi and mpp")]
    Header,
    #[error("fewer cells than the header")]
    ShortRow,
    #[error("mpp {0:?} is not a number")]
    NotANumber(String),
    #[error(transparent)]
    Implausible(ImplausibleMpp),
    #[error("{0} is listed twice")]
    Twice(String),
}

/// Reads a table of pixel sizes by slide file name: CSV with a header naming the columns
/// `wsi` (the file name, as Trident's custom MPP table) and `mpp`, in any order; each value
/// plausible. Errors name the file and the line.
pub fn read_mpp_table(path: &Path) -> Result<BTreeMap<String, f64>, MppTableError> {
    let bad = |line: usize, problem: TableProblem| MppTableError::Line {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|source| MppTableError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let cells = |l: &str| -> Vec<String> {
        l.split(',')
            .map(|c| c.trim().trim_matches('"').to_string())
            .collect()
    };
    let (_, header) = lines.next().ok_or_else(|| bad(1, TableProblem::Empty))?;
    let header = cells(header);
    let column = |name: &str| header.iter().position(|c| c.eq_ignore_ascii_case(name));
    let (Some(wsi), Some(mpp)) = (column("wsi"), column("mpp")) else {
        return Err(bad(1, TableProblem::Header));
    };
    let mut table = BTreeMap::new();
    for (i, line) in lines {
        let row = cells(line);
        let (Some(name), Some(value)) = (row.get(wsi), row.get(mpp)) else {
            return Err(bad(i + 1, TableProblem::ShortRow));
        };
        let value: f64 = value
            .parse()
            .map_err(|_| bad(i + 1, TableProblem::NotANumber(value.clone())))?;
        check_mpp(value).map_err(|e| bad(i + 1, TableProblem::Implausible(e)))?;
        // A path in the wsi column names its file.
        let name = name.rsplit(['/', '\\']).next().unwrap_or(name).to_string();
        if table.insert(name.clone(), value).is_some() {
            return Err(bad(i + 1, TableProblem::Twice(name)));
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::read_mpp_table;

    #[test]
    fn mpp_tables_are_read_as_trident_writes_them() {
        let dir = std::env::temp_dir().join(format!("flashslide-mpp-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mpp.csv");
        std::fs::write(&path, "mpp,wsi\n0.25,a.svs\n\n0.5,\"sub/b c.ndpi\"\n").unwrap();
        let table = read_mpp_table(&path).unwrap();
        assert_eq!(table.get("a.svs"), Some(&0.25));
        assert_eq!(table.get("b c.ndpi"), Some(&0.5));
        for (text, says) in [
            ("wsi,mpp\na.svs,0\n", "line 2"),
            ("wsi,mpp\na.svs,x\n", "not a number"),
            ("wsi,microns\na.svs,0.5\n", "wsi and mpp"),
            ("wsi,mpp\na.svs,0.5\na.svs,0.25\n", "twice"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = read_mpp_table(&path).unwrap_err().to_string();
            assert!(e.contains("mpp.csv") && e.contains(says), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
