//! The output types live in the schema crate (shared with consumers);
//! re-exported here so detector code reads `crate::model::Alert`.

pub use logpipe_schema::alert::*;
