//! An async client for the Spark/Particle Cloud REST API.
