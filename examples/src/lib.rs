//! Shared pieces of the spark-sdk example tools.

pub mod vcore;
