//! Shared pieces of the spark-sdk example tools.
