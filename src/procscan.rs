//! Parsers of /proc files (pure: bytes in, values out) and scans of the process table.
