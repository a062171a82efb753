//! The `dingtalk-exporter` binary: command-line parsing only; everything else is the library.

fn main() {}
