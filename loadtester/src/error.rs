//! The one error type of the load tester.

use std::path::PathBuf;

/// Everything that can stop a run or a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Flags that contradict each other or are out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The nodes could not be found or do not answer.
    #[error("node discovery failed: {0}")]
    Discovery(String),
    /// A local cluster could not be started.
    #[error("cluster: {0}")]
    Cluster(String),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An HTTP request outside the measured load failed (discovery, verification, configuration).
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// A plot could not be drawn.
    #[error("plot: {0}")]
    Plot(String),
    /// JSON could not be encoded or decoded.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The CSV of samples could not be written.
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
}

/// Result of the load tester's fallible operations.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
