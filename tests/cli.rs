//! `tickcast --help` lists every setting with its default; bad values are refused with a clear message.

use std::process::Command;

fn tickcast(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn help_lists_every_setting_with_its_default() {
    let (ok, help) = tickcast(&["--help"]);
    assert!(ok, "{help}");
    for (flag, default) in [
        ("--listen", "127.0.0.1:7000"),
        ("--tick-hz", "20"),
        ("--npcs", "16"),
        ("--max-connections", "10000"),
        ("--send-hwm-bytes", "65536"),
        ("--send-limit-bytes", "1048576"),
        ("--lag-limit-ms", "10000"),
        ("--max-message-bytes", "4096"),
        ("--max-header-bytes", "8192"),
        ("--handshake-timeout-ms", "5000"),
        ("--idle-timeout-ms", "15000"),
        ("--drain-timeout-ms", "5000"),
        ("--history-ticks", "128"),
    ] {
        let line = help.lines().position(|l| l.trim_start().starts_with(flag));
        let line = line.unwrap_or_else(|| panic!("{flag} missing from --help:\n{help}"));
        // clap puts the default at the end of the flag's description.
        let described = help.lines().skip(line).take(4).collect::<String>();
        assert!(
            described.contains(&format!("[default: {default}]")),
            "{flag}: {described}"
        );
    }
}

#[test]
fn out_of_range_settings_are_refused_with_a_reason() {
    let (ok, text) = tickcast(&["--tick-hz", "0"]);
    assert!(!ok);
    assert!(text.contains("--tick-hz"), "{text}");
    let (ok, text) = tickcast(&["--send-hwm-bytes", "1000", "--send-limit-bytes", "10"]);
    assert!(!ok);
    assert!(text.contains("must be at least --send-hwm-bytes"), "{text}");
}

#[test]
fn the_ticket_lifetime_bound_is_listed_with_its_default_and_0_is_refused() {
    let (ok, help) = tickcast(&["--help"]);
    assert!(ok, "{help}");
    let line = help
        .lines()
        .position(|l| l.trim_start().starts_with("--ticket-lifetime-max-s"))
        .unwrap_or_else(|| panic!("--ticket-lifetime-max-s missing from --help:\n{help}"));
    let described = help.lines().skip(line).take(4).collect::<String>();
    assert!(described.contains("[default: 300]"), "{described}");
    let (ok, text) = tickcast(&["--ticket-lifetime-max-s", "0"]);
    assert!(!ok);
    assert!(text.contains("--ticket-lifetime-max-s"), "{text}");
}
