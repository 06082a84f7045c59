//! The command line: one file per subcommand, each parsing its options and calling the
//! library.

pub mod list;
