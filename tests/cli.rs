//! `tickcast --help` lists every setting with its default; bad values are refused with a clear message.

use std::process::Command;

/// Runs `command` to its end: its exit status and everything it printed.
fn run(command: &mut Command) -> (std::process::ExitStatus, String) {
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

fn tickcast(args: &[&str]) -> (bool, String) {
    let (status, text) = run(Command::new(env!("CARGO_BIN_EXE_tickcast")).args(args));
    (status.success(), text)
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
        ("--max-connections-per-ip", "256"),
        ("--accepts-per-ip-per-s", "64"),
        ("--accept-burst-per-ip", "256"),
        ("--peer-table-max", "65536"),
        ("--health-slots", "16"),
        ("--default-room", "default"),
        ("--room-creation", "open"),
        ("--max-rooms", "1000"),
        ("--max-rooms-per-ip", "32"),
        ("--room-idle-ms", "30000"),
        ("--room-max-players", "4096"),
        ("--room-max-spectators", "4096"),
        ("--agones-health-interval-ms", "2000"),
        ("--dashboard", "auto"),
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
fn version_names_the_commit_it_was_built_from() {
    let (ok, text) = tickcast(&["--version"]);
    assert!(ok, "{text}");
    let expected = format!(
        "tickcast {} (commit {})",
        env!("CARGO_PKG_VERSION"),
        tickcast::COMMIT
    );
    assert_eq!(text.trim(), expected);
    // Built in this git checkout (`.git` is a directory, or a file in a worktree): the commit of HEAD,
    // with `-dirty` for local changes. Elsewhere (a crate tarball): the commit it was packaged from, or
    // `unknown`.
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let hash = tickcast::COMMIT.trim_end_matches("-dirty");
    if std::path::Path::new(manifest_dir).join(".git").exists() {
        let out = Command::new("git")
            .args(["-C", manifest_dir, "rev-parse", "--short=12", "HEAD"])
            .output()
            .unwrap();
        assert!(out.status.success(), "git rev-parse: {out:?}");
        assert_eq!(hash, String::from_utf8_lossy(&out.stdout).trim());
    } else if tickcast::COMMIT != "unknown" {
        assert_eq!(hash.len(), 12, "{text}");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
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

/// Runs the binary under `ulimit -n <nofile>` (soft and hard) with `args`; returns (exit code, output).
fn tickcast_under_nofile(nofile: u32, args: &str) -> (Option<i32>, String) {
    let script = format!("ulimit -n {nofile} && exec \"$0\" {args}");
    let (status, text) =
        run(Command::new("bash").args(["-c", &script, env!("CARGO_BIN_EXE_tickcast")]));
    (status.code(), text)
}

#[test]
fn a_hard_descriptor_limit_below_max_connections_is_refused_at_start_with_the_numbers() {
    // 1000 connections + 16 health slots + 64 spare = 1080 descriptors, over a hard limit of 512.
    let (code, text) = tickcast_under_nofile(512, "--listen 127.0.0.1:0 --max-connections 1000");
    assert_ne!(code, Some(0), "{text}");
    assert!(code.is_some(), "killed instead of refusing: {text}");
    assert!(text.contains("need 1080 file descriptors"), "{text}");
    assert!(text.contains("hard limit (RLIMIT_NOFILE) is 512"), "{text}");
    assert!(text.contains("LimitNOFILE=1080"), "{text}");
    assert!(!text.contains("listening on"), "{text}");
}

#[test]
fn a_low_soft_descriptor_limit_is_raised_at_start() {
    use std::io::{BufRead, BufReader};
    // Soft 256, hard as it is (at least 1080 wherever these tests run): the server raises the soft limit.
    let script = "ulimit -Sn 256 && exec \"$0\" --listen 127.0.0.1:0 --max-connections 1000";
    let mut child = Command::new("bash")
        .args(["-c", script, env!("CARGO_BIN_EXE_tickcast")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    // The first line says it listens or why not; the pipe ends if the process exits.
    let first = BufReader::new(stderr).lines().next();
    let limits =
        std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap_or_default();
    child.kill().unwrap();
    child.wait().unwrap();
    let first = first.expect("a line").unwrap();
    assert!(first.contains("listening on"), "{first}");
    let open_files = limits.lines().find(|l| l.starts_with("Max open files"));
    let soft: u64 = open_files
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or_else(|| panic!("{limits}"));
    assert_eq!(soft, 1080, "{limits}");
}
