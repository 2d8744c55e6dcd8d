//! User and group lookup from `/etc/passwd` and `/etc/group` text (no NSS: the binary is static).
