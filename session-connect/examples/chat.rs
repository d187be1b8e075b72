//! Placeholder; the chat example is being written.
fn main() {}
