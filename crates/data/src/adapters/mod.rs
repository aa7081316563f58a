//! Adapters for public relevance datasets: Home Depot, WANDS and Amazon ESCI.
//!
//! Each adapter returns a [`Dataset`](crate::Dataset) whose judgments are checked against its
//! catalog, plus one [`ReadReport`](crate::ReadReport) per file read.

pub mod esci;
pub mod homedepot;
pub mod wands;
