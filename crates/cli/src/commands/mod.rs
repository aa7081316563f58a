//! One module per subcommand group; each parses its arguments and calls the library.
pub mod audit;
pub mod bench;
pub mod common;
pub mod data;
pub mod embed;
pub mod eval;
pub mod export;
pub mod index;
pub mod label;
pub mod labeler;
pub mod model;
pub mod pipeline;
pub mod serve;
pub mod train;
