//! Any text as a detector configuration: parsing never panics, and an error names a
//! line inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelwatch_detect::{Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(ConfigError::Invalid { line, .. }) = Config::parse(text, "fuzz") {
        assert!(line >= 1 && line <= text.lines().count().max(1) + 1, "line {line}");
    }
});
