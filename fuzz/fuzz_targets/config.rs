//! Any text handed to the config parser gives a Config or a list of problems,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match sightline::config::Config::parse(text, "fuzz") {
            Ok(_) => {}
            Err(e) => assert!(!e.problems.is_empty()),
        }
    }
});
