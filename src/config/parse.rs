//! Parsing and validation of the JSON config file: every error found, each naming worker and key.
