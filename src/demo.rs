//! The demo (being written).
