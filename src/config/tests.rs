//! Validation tests: good configs get defaults, bad ones report every problem with its path.

use super::*;

const GOOD: &str = r#"
[runtime]
workers = 2

[[streams]]
id = "gate"
url = "rtsp://admin:pw@10.0.0.2:554/stream1"
fps = 2
keyframes_only = true

[[events]]
id = "intruder"
prompt = "Detect intruder"
label = "security_alert"
region = { name = "gate", points = [[0, 0], [1, 0], [1, 1]] }

[[alerts]]
id = "a1"
event = "intruder"
callback_url = "https://example.com/hook"

[mqtt]
host = "127.0.0.1"
"#;

#[test]
fn a_good_config_validates_with_defaults() {
    let c = Config::parse(GOOD, "t").expect("valid");
    assert_eq!(c.runtime.workers, 2);
    assert_eq!(c.streams[0].fps, 2.0);
    assert!(c.streams[0].keyframes_only);
    assert_eq!(c.streams[0].transport, Transport::Tcp);
    assert_eq!(
        c.events[0].min_confidence, None,
        "the model's own threshold"
    );
    assert_eq!(c.events[0].matching, MatchParams::default());
    assert_eq!(
        c.alerts[0].mqtt_topic.as_deref(),
        Some(DEFAULT_TOPIC),
        "MQTT on by default when [mqtt] exists"
    );
    assert_eq!(c.mqtt.as_ref().map(|m| m.port), Some(1883));
    assert_eq!(
        c.models
            .iter()
            .map(|m| (m.name.as_str(), m.path.as_str()))
            .collect::<Vec<_>>(),
        vec![("person", "ssdlite-person"), ("coco", "centernet-coco")],
        "the default models"
    );
    assert_eq!(
        c.runtime.stats_interval,
        Some(std::time::Duration::from_secs(60))
    );
    assert_eq!(c.runtime.streaming_nice, 5);
    let quiet = Config::parse("[runtime]\nstats_interval_secs = 0\n", "t").expect("valid");
    assert_eq!(
        quiet.runtime.stats_interval, None,
        "0 turns the counters log off"
    );
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let text = r#"
colour = "blue"
[runtime]
workers = 0
streaming_nice = 25
[[streams]]
id = "bad id!"
url = "http://not-rtsp"
fps = 0
transport = "sctp"
bogus = 1
[[events]]
id = "e"
prompt = "x"
min_confidence = 1.5
k = 5
window = 3
[[alerts]]
id = "a"
event = "nope"
callback_url = "ftp://x"
streams = ["ghost"]
"#;
    let err = Config::parse(text, "t").expect_err("invalid");
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    for want in [
        "colour",
        "streams.0.bogus",
        "runtime.workers",
        "runtime.streaming_nice",
        "streams[0].id",
        "streams[0].url",
        "streams[0].fps",
        "streams[0].transport",
        "events[0].min_confidence",
        "events[0].k",
        "alerts[0].event",
        "alerts[0].streams[0]",
        "alerts[0].callback_url",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
    let text = err.to_string();
    assert!(text.contains("must be between 1 and 64, got 0"), "{text}");
}

#[test]
fn a_type_error_is_reported_with_the_unknown_keys_seen_before_it() {
    let err =
        Config::parse("nonsense = 1\n[runtime]\nworkers = \"two\"\n", "t").expect_err("invalid");
    let text = err.to_string();
    assert!(text.contains("nonsense"), "{text}");
    assert!(
        text.contains("workers") || text.contains("invalid type"),
        "{text}"
    );
}

#[test]
fn syntax_errors_are_reported_not_panicked() {
    let err = Config::parse("[[streams]\nid = ", "t").expect_err("invalid");
    assert_eq!(err.problems.len(), 1);
}

#[test]
fn callback_urls_must_be_http_without_credentials() {
    use validate::check_callback_url;
    assert!(check_callback_url("https://h/x").is_ok());
    assert!(check_callback_url("http://127.0.0.1:8080/").is_ok());
    assert!(check_callback_url("ftp://h/x").is_err());
    assert!(check_callback_url("https://user:pw@h/x").is_err());
    assert!(check_callback_url("not a url").is_err());
}

#[test]
fn rtsp_urls_need_a_host() {
    use validate::parse_source;
    assert!(parse_source("rtsp://").is_err());
    assert!(parse_source("rtsp:///path").is_err());
    assert!(parse_source("rtsp://cam:554/a b").is_err());
    assert_eq!(
        parse_source("test:").unwrap(),
        SourceUrl::Test("smpte".into())
    );
    assert!(parse_source("file://").is_err());
}

#[test]
fn an_alert_without_a_target_is_refused() {
    let text = r#"
[[streams]]
id = "s"
url = "test:ball"
[[events]]
id = "e"
prompt = "person"
[[alerts]]
id = "a"
event = "e"
"#;
    let err = Config::parse(text, "t").expect_err("invalid");
    assert!(err.to_string().contains("has no target"), "{err}");
}

#[test]
fn webhook_secrets_are_checked() {
    let text = r#"
[[streams]]
id = "s"
url = "test:"
[[events]]
id = "e"
prompt = "person"
[[alerts]]
id = "a"
event = "e"
callback_url = "http://h/x"
webhook_secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "plain-text"]
"#;
    let err = Config::parse(text, "t").expect_err("invalid");
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, vec!["alerts[0].webhook_secrets[1]"], "{err}");
}

#[test]
fn duplicate_ids_are_refused() {
    let text = r#"
[[streams]]
id = "s"
url = "test:"
[[streams]]
id = "s"
url = "test:"
"#;
    let err = Config::parse(text, "t").expect_err("invalid");
    assert!(err.to_string().contains("duplicate stream id"), "{err}");
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    const KEYS: &[&str] = &[
        "[runtime]",
        "[[streams]]",
        "[[events]]",
        "[[alerts]]",
        "[mqtt]",
        "[webhook]",
        "id",
        "url",
        "fps",
        "workers",
        "prompt",
        "label",
        "event",
        "callback_url",
        "streams",
        "region",
        "k",
        "window",
        "port",
        "webhook_secrets",
        "min_confidence",
        "timeout_ms",
        "topic",
    ];
    const VALUES: &[&str] = &[
        "\"a\"",
        "0",
        "-1",
        "1e308",
        "nan",
        "inf",
        "true",
        "[]",
        "[\"a\"]",
        "{}",
        "\"rtsp://\"",
        "\"whsec_\"",
        "{ points = [[0, 0]] }",
        "\"test:\"",
        "\"http://u:p@h/\"",
        "9999999999999",
    ];

    proptest! {
        /// Arbitrary text, and config-shaped lines of known keys with odd values,
        /// give a Config or problems, never a panic.
        #[test]
        fn on_any_text(s in ".{0,200}") {
            let _ = Config::parse(&s, "p");
        }

        #[test]
        fn on_config_shaped_text(lines in proptest::collection::vec((0..KEYS.len(), 0..VALUES.len()), 0..30)) {
            let text: String = lines
                .iter()
                .map(|&(k, v)| if KEYS[k].starts_with('[') { format!("{}\n", KEYS[k]) } else { format!("{} = {}\n", KEYS[k], VALUES[v]) })
                .collect();
            if let Err(e) = Config::parse(&text, "p") {
                prop_assert!(!e.problems.is_empty());
            }
        }
    }
}

#[test]
fn object_rules_are_read_and_checked() {
    let good = r#"
[[events]]
id = "loiter"
prompt = "person"
min_dwell_secs = 30
per = "object"
stationary_secs = 120

[[events]]
id = "door"
prompt = "person"
line = { points = [[0.0, 0.6], [1.0, 0.6]], direction = "in" }

[[events]]
id = "plain"
prompt = "person"
"#;
    let c = Config::parse(good, "t").expect("valid");
    let rules = c.events[0].objects.expect("loiter has object rules");
    assert!(rules.per_object);
    assert_eq!((rules.min_dwell, rules.stationary), (30.0, Some(120.0)));
    let line = c.events[1].objects.and_then(|o| o.line).expect("a line");
    assert_eq!(
        (line.a, line.b, line.direction),
        ((0.0, 0.6), (1.0, 0.6), Direction::In)
    );
    assert_eq!(
        c.events[2].objects, None,
        "no object rules: frames judged alone"
    );

    let bad = r#"
[[events]]
id = "a"
prompt = "person"
per = "everyone"
min_dwell_secs = -1
stationary_secs = 0

[[events]]
id = "b"
prompt = "person"
line = { points = [[0.0, 0.6], [1.0, 0.6], [1.0, 1.0]], direction = "sideways" }

[[events]]
id = "c"
prompt = "person"
per = "object"
line = { points = [[0.5, 0.5], [0.5, 0.5]] }
"#;
    let err = Config::parse(bad, "t").expect_err("invalid");
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    for want in [
        "events[0].per",
        "events[0].min_dwell_secs",
        "events[0].stationary_secs",
        "events[1].line.points",
        "events[1].line.direction",
        "events[2].line.points",
        "events[2].line",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
}
