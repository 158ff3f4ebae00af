//! Shared pieces of the spark-sdk example tools.

pub mod cloud;
pub mod demo;
pub mod load;
pub mod vcore;
