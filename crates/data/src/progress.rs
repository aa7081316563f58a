//! Progress reporting for long work. The library reports stages and counts; the command line
//! shows them with progress bars.

/// Receives progress from long-running work.
pub trait Progress: Sync {
    /// A new stage of `total` units begins.
    fn stage(&self, name: &str, total: u64);
    /// `n` more units of the current stage are done.
    fn advance(&self, n: u64);
    /// The current stage is done.
    fn finish(&self) {}
}

/// Ignores progress.
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _name: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
}
