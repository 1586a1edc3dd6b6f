//! Any bytes sent as a JSON body to the API's create routes are either
//! refused by the JSON layer or by validation, never a panic: the same
//! deserialisation and checks the handlers run, without a running daemon.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sightline::alert::guard::Guard;
use sightline::control::{NewAlert, NewEvent, NewIndex, NewStream};

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = serde_json::from_slice::<NewStream>(data) {
        let _ = b.validate("rts-fuzz");
    }
    if let Ok(b) = serde_json::from_slice::<NewIndex>(data) {
        let _ = b.batch();
    }
    if let Ok(b) = serde_json::from_slice::<NewEvent>(data) {
        let labels: Vec<Arc<str>> = vec![Arc::from("person"), Arc::from("car")];
        let _ = b.validate("ev-fuzz", &labels);
    }
    if let Ok(b) = serde_json::from_slice::<NewAlert>(data) {
        if let Some(u) = &b.callback_url {
            if sightline::config::check_callback_url(u).is_ok() {
                if let Ok(url) = reqwest::Url::parse(u) {
                    let _ = Guard::default().check_url(&url);
                }
            }
        }
    }
});
