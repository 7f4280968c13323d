//! Subcommands, one file each (the rest still live in `main.rs`, moving here one by one).

pub mod hub;
