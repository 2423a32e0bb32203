//! Settings from every source, through the real binary: a `--config` TOML file, `TICKCAST_*` variables
//! and flags, in that order of strength; unknown keys and wrong types refused with the key's name;
//! `--print-config` prints what `--config` reads back.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A file in a fresh directory of this test's own, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, text: &str) -> TempFile {
        let dir =
            std::env::temp_dir().join(format!("tickcast-config-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tickcast.toml");
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

/// The binary with `args` and the variables `env` only (every TICKCAST_* of ours removed).
fn tickcast(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tickcast"));
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("TICKCAST_")) {
        command.env_remove(name);
    }
    command.args(args).envs(env.iter().copied());
    command
}

/// Runs it to its end: (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = tickcast(args, env).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--print-config` with `args` and `env`: the effective settings, parsed.
fn effective(args: &[&str], env: &[(&str, &str)]) -> (String, toml::Table) {
    let mut args = args.to_vec();
    args.push("--print-config");
    let (code, out, err) = run(&args, env);
    assert_eq!(code, Some(0), "{err}");
    let table = out.parse().unwrap_or_else(|e| panic!("{e}:\n{out}"));
    (out, table)
}

const FILE: &str = r#"
# A config file: keys as the flags.
tick-hz = 30
max-rooms = 50
messages-per-s = 100
room-creation = "off"
allow-origin = ["https://a.example", "https://b.example"]
npcs = 3
log-format = "json"
"#;

#[test]
fn a_files_values_apply_and_variables_beat_the_file_and_flags_beat_both() {
    let file = TempFile::new("precedence", FILE);
    let (_, from_file) = effective(&["--config", file.path()], &[]);
    assert_eq!(from_file["tick-hz"].as_integer(), Some(30));
    assert_eq!(from_file["max-rooms"].as_integer(), Some(50));
    assert_eq!(from_file["messages-per-s"].as_float(), Some(100.0));
    assert_eq!(from_file["room-creation"].as_str(), Some("off"));
    assert_eq!(from_file["npcs"].as_integer(), Some(3));
    assert_eq!(from_file["log-format"].as_str(), Some("json"));
    let origins = from_file["allow-origin"].as_array().unwrap();
    assert_eq!(origins.len(), 2);
    // Untouched settings keep their defaults.
    assert_eq!(from_file["max-connections"].as_integer(), Some(10_000));

    let env = [("TICKCAST_TICK_HZ", "40"), ("TICKCAST_MAX_ROOMS", "60")];
    let (_, from_env) = effective(&["--config", file.path()], &env);
    assert_eq!(from_env["tick-hz"].as_integer(), Some(40));
    assert_eq!(from_env["max-rooms"].as_integer(), Some(60));
    assert_eq!(from_env["npcs"].as_integer(), Some(3), "the file's still");

    let (_, from_flag) = effective(&["--config", file.path(), "--tick-hz", "50"], &env);
    assert_eq!(from_flag["tick-hz"].as_integer(), Some(50));
    assert_eq!(from_flag["max-rooms"].as_integer(), Some(60));

    // The file may be named by TICKCAST_CONFIG too; a list variable is comma-separated.
    let env = [
        ("TICKCAST_CONFIG", file.path()),
        (
            "TICKCAST_ALLOW_ORIGIN",
            "https://c.example,https://d.example",
        ),
    ];
    let (_, named_by_env) = effective(&[], &env);
    assert_eq!(named_by_env["tick-hz"].as_integer(), Some(30));
    let origins: Vec<&str> = named_by_env["allow-origin"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(origins, ["https://c.example", "https://d.example"]);
}

#[test]
fn the_listen_address_from_a_file_is_where_the_server_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = TempFile::new(
        "listen",
        &format!("listen = \"127.0.0.1:{port}\"\nnpcs = 0\n"),
    );
    let mut child = tickcast(&["--config", file.path()], &[])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        line.contains(&format!("listening on http://127.0.0.1:{port} ")),
        "{line}"
    );
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_with_the_key_and_the_file() {
    for (text, says) in [
        ("tick-hz = 30\nbogus = 1\n", "unknown key `bogus`"),
        (
            "tick_hz = 30\n",
            "unknown key `tick_hz` (keys are spelled as the flags: `tick-hz`)",
        ),
        ("config = \"other.toml\"\n", "unknown key `config`"),
        (
            "tick-hz = \"30\"\n",
            "key `tick-hz`: expected an integer, found a string",
        ),
        (
            "listen = 7000\n",
            "key `listen`: expected a string, found an integer",
        ),
        (
            "allow-origin = \"https://a.example\"\n",
            "key `allow-origin`: expected an array of strings, found a string",
        ),
        ("tick-hz = 300\n", "key `tick-hz`: invalid value '300'"),
        (
            "room-creation = \"sometimes\"\n",
            "key `room-creation`: invalid value 'sometimes'",
        ),
        ("tick-hz = \n", "not TOML"),
    ] {
        let file = TempFile::new("refused", text);
        let (code, out, err) = run(&["--config", file.path()], &[]);
        assert_eq!(code, Some(2), "{text}: {out}{err}");
        assert!(
            err.contains(&format!("--config {}: ", file.path())),
            "{err}"
        );
        assert!(err.contains(says), "{text}: {err}");
        assert!(!err.contains("listening"), "{err}");
    }
}

#[test]
fn a_file_over_a_mebibyte_is_refused() {
    let file = TempFile::new("big", &format!("#{}\n", "x".repeat(1024 * 1024)));
    let (code, _, err) = run(&["--config", file.path()], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("larger than 1048576 bytes"), "{err}");
}

#[test]
fn print_config_output_read_back_as_a_file_gives_the_same_settings() {
    let file = TempFile::new("round-trip-source", FILE);
    let env = [("TICKCAST_HISTORY_TICKS", "64")];
    let args = [
        "--config",
        file.path(),
        "--ticket-secret-file",
        "/etc/tickcast/ticket-secret",
        "--seed",
        "7",
    ];
    let (printed, table) = effective(&args, &env);
    assert_eq!(table["history-ticks"].as_integer(), Some(64));
    assert_eq!(
        table["ticket-secret-file"].as_str(),
        Some("/etc/tickcast/ticket-secret")
    );
    let copy = TempFile::new("round-trip-copy", &printed);
    let (again, _) = effective(&["--config", copy.path()], &[]);
    assert_eq!(again, printed);
}

#[test]
fn print_config_never_shows_a_password() {
    let (printed, table) = effective(
        &["--redis", "redis://tickcast:hunter22@127.0.0.1:6379/0"],
        &[],
    );
    assert!(!printed.contains("hunter22"), "{printed}");
    assert_eq!(
        table["redis"].as_str(),
        Some("redis://tickcast:<redacted>@127.0.0.1:6379/0")
    );
}
