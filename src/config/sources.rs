//! Where a binary's settings come from, in this order of precedence: the command line, the environment
//! (`TICKCAST_<FLAG>`: `--tick-hz` is `TICKCAST_TICK_HZ`), a TOML file (`--config FILE`, or
//! `TICKCAST_CONFIG`), the flags' defaults. Generic over any clap parser, so the binary's own flags (the
//! arena's, the log's) get the same three sources as the server's [`Config`](super::Config).
//!
//! The file's keys are the flags' long names, spelled as on the command line (`tick-hz = 30`,
//! `allow-origin = ["https://a.example"]`, `tls-cert = "/etc/tickcast/cert.pem"`); a key no flag has is
//! refused with its name, a value of the wrong TOML type with the type expected, a value the flag refuses
//! with the flag's own words. The file is read whole, at most [`FILE_BYTES_MAX`] bytes. A file value is
//! handed to clap as that flag's default, so a flag or a variable still wins over it.
//!
//! A library user does not need any of this: [`Config::default()`](super::Config) has the flags'
//! defaults (it reads neither the environment nor a file).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};

/// The largest `--config` file read.
pub const FILE_BYTES_MAX: u64 = 1024 * 1024;

/// The two flags of the sources themselves, for a binary to flatten into its own.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Sources {
    /// Read settings from this TOML file: its keys are the flags' names (`tick-hz = 30`). A flag or a
    /// TICKCAST_* variable wins over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective settings (flags, environment, file and defaults merged) as TOML, in the form
    /// --config reads, and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// The ids of the flags that are not settings: never in a file, never printed.
const NOT_SETTINGS: [&str; 4] = ["help", "version", "config", "print_config"];

/// The environment variable of the flag `--long`: `TICKCAST_` and the name in SCREAMING_SNAKE_CASE.
pub fn env_name(long: &str) -> String {
    format!("TICKCAST_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// `T`'s command with its environment variable on every flag (a list flag takes a comma-separated
/// list from its variable).
pub fn command<T: CommandFactory>() -> Command {
    T::command().mut_args(|arg| {
        let Some(long) = arg.get_long().map(str::to_owned) else {
            return arg;
        };
        let arg = arg.env(env_name(&long));
        match arg.get_action() {
            ArgAction::Append => arg.value_delimiter(','),
            _ => arg,
        }
    })
}

/// What went wrong, said the way clap says it (and with its exit status: 2, or 0 for `--help`).
#[derive(Debug)]
pub enum Error {
    Clap(clap::Error),
    /// The `--config` file: unreadable, too big, not TOML, an unknown key, a value of the wrong type.
    File(String),
}

impl Error {
    /// Prints the error (or the help) and exits as clap would.
    pub fn exit(self) -> ! {
        match self {
            Error::Clap(e) => e.exit(),
            Error::File(why) => {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "tickcast: {why}");
                std::process::exit(2)
            }
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Clap(e) => write!(f, "{e}"),
            Error::File(why) => f.write_str(why),
        }
    }
}

impl From<clap::Error> for Error {
    fn from(e: clap::Error) -> Self {
        Error::Clap(e)
    }
}

/// Parsed settings: the value, and what it was parsed from (for [`Parsed::to_toml`]).
pub struct Parsed<T> {
    pub value: T,
    command: Command,
    matches: ArgMatches,
}

/// Parses `args` (the program name first) from every source. `T` must flatten [`Sources`].
pub fn parse<T, I, S>(args: I) -> Result<Parsed<T>, Error>
where
    T: CommandFactory + FromArgMatches,
    I: IntoIterator<Item = S>,
    S: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = command::<T>();
    // First the file's name (a flag or TICKCAST_CONFIG), from a parse without it.
    let first = command.clone().try_get_matches_from(&args)?;
    let file = first
        .try_get_one::<PathBuf>("config")
        .ok()
        .flatten()
        .cloned();
    if let Some(path) = file {
        // In place (`mut_arg` would move each to the end): `--help` and `--print-config` keep the order.
        let mut settings: std::collections::HashMap<String, Vec<String>> =
            read_file(&command, &path)?.into_iter().collect();
        command = command.mut_args(|arg| match settings.remove(arg.get_id().as_str()) {
            Some(values) => arg.default_values(values),
            None => arg,
        });
    }
    let matches = command.try_get_matches_from_mut(&args)?;
    let value = T::from_arg_matches(&matches)?;
    Ok(Parsed {
        value,
        command,
        matches,
    })
}

/// The TOML type a flag's value takes in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Integer,
    Float,
    String,
}

impl Kind {
    fn of(arg: &Arg) -> Kind {
        use std::any::TypeId;
        if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
            return Kind::Bool;
        }
        let ty = arg.get_value_parser().type_id();
        let integers = [
            TypeId::of::<u8>(),
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<usize>(),
            TypeId::of::<i32>(),
            TypeId::of::<i64>(),
        ];
        if integers.iter().any(|t| ty == *t) {
            Kind::Integer
        } else if ty == TypeId::of::<f64>() || ty == TypeId::of::<f32>() {
            Kind::Float
        } else if ty == TypeId::of::<bool>() {
            Kind::Bool
        } else {
            Kind::String
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Bool => "a boolean (true or false)",
            Kind::Integer => "an integer",
            Kind::Float => "a number",
            Kind::String => "a string",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::Bool => "booleans",
            Kind::Integer => "integers",
            Kind::Float => "numbers",
            Kind::String => "strings",
        }
    }

    /// `value` as the flag's raw text, if it is of this kind (an integer is a number too).
    fn raw(self, value: &toml::Value) -> Option<String> {
        match (self, value) {
            (Kind::Bool, toml::Value::Boolean(b)) => Some(b.to_string()),
            (Kind::Integer | Kind::Float, toml::Value::Integer(i)) => Some(i.to_string()),
            (Kind::Float, toml::Value::Float(f)) => Some(f.to_string()),
            (Kind::String, toml::Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// The flag's raw text as a TOML value of this kind.
    fn value(self, raw: &str) -> toml::Value {
        let parsed = match self {
            Kind::Bool => raw.parse().ok().map(toml::Value::Boolean),
            Kind::Integer => raw.parse().ok().map(toml::Value::Integer),
            Kind::Float => raw.parse().ok().map(toml::Value::Float),
            Kind::String => None,
        };
        parsed.unwrap_or_else(|| toml::Value::String(raw.to_string()))
    }
}

fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn is_list(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

/// The settings a file holds, as (flag id, raw values), each checked against its flag.
fn read_file(command: &Command, path: &Path) -> Result<Vec<(String, Vec<String>)>, Error> {
    let at = path.display();
    let text = read_bounded(path).map_err(|e| Error::File(format!("--config {at}: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| Error::File(format!("--config {at}: not TOML: {e}")))?;
    let mut settings = Vec::new();
    for (key, value) in &table {
        let Some(arg) = setting(command, key) else {
            let kebab = key.replace('_', "-");
            let hint = match kebab != *key && setting(command, &kebab).is_some() {
                true => format!(" (keys are spelled as the flags: `{kebab}`)"),
                false => String::new(),
            };
            return Err(Error::File(format!(
                "--config {at}: unknown key `{key}`{hint}"
            )));
        };
        let kind = Kind::of(arg);
        let wrong = |found: &toml::Value, list: bool| {
            let expected = match list {
                true => format!("an array of {}", kind.plural()),
                false => kind.name().to_string(),
            };
            Error::File(format!(
                "--config {at}: key `{key}`: expected {expected}, found {}",
                type_name(found)
            ))
        };
        let raws = match (is_list(arg), value) {
            (true, toml::Value::Array(items)) => items
                .iter()
                .map(|item| kind.raw(item).ok_or_else(|| wrong(item, true)))
                .collect::<Result<Vec<_>, _>>()?,
            (true, other) => return Err(wrong(other, true)),
            (false, value) => vec![kind.raw(value).ok_or_else(|| wrong(value, false))?],
        };
        check_values(command, arg, &raws)
            .map_err(|why| Error::File(format!("--config {at}: key `{key}`: {why}")))?;
        settings.push((arg.get_id().to_string(), raws));
    }
    Ok(settings)
}

/// The setting whose flag is `--key`.
fn setting<'c>(command: &'c Command, key: &str) -> Option<&'c Arg> {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(key))
        .filter(|a| !NOT_SETTINGS.contains(&a.get_id().as_str()))
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > FILE_BYTES_MAX {
        let why = format!("larger than {FILE_BYTES_MAX} bytes");
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
    }
    Ok(text)
}

/// Runs `raws` through the flag's own parser (on a copy of the command that reads no environment), so a
/// value it refuses is refused here, in the flag's words, with the file's name.
fn check_values(command: &Command, arg: &Arg, raws: &[String]) -> Result<(), String> {
    let long = arg.get_long().expect("a flag");
    let mut args = vec!["tickcast".to_string()];
    match Kind::of(arg) {
        Kind::Bool if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) => {}
        _ => args.extend(raws.iter().map(|raw| format!("--{long}={raw}"))),
    }
    let trial = command.clone().mut_args(|a| a.env(None::<&str>));
    match trial.try_get_matches_from(args) {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = e.render().to_string();
            let line = text.lines().next().unwrap_or_default();
            Err(line.trim_start_matches("error: ").to_string())
        }
    }
}

impl<T> Parsed<T> {
    /// The effective settings as TOML, every setting in the order of `--help`, in the form `--config`
    /// reads (a setting with no value, an optional path say, is a comment). Secrets are redacted: a
    /// password in a URL, and any setting whose name says it holds a secret, a token or a password
    /// itself (paths to secret files are shown: they are not the secret).
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# tickcast's effective settings (flags > TICKCAST_* > --config file > defaults)\n",
        );
        for arg in self.command.get_arguments() {
            let id = arg.get_id().as_str();
            let Some(long) = arg.get_long() else {
                continue;
            };
            if NOT_SETTINGS.contains(&id) {
                continue;
            }
            let kind = Kind::of(arg);
            let raws: Vec<String> = self
                .matches
                .get_raw(id)
                .map(|values| values.map(|v| redact(long, &v.to_string_lossy())).collect())
                .unwrap_or_default();
            let line = match (is_list(arg), raws.as_slice()) {
                (true, raws) => {
                    let items = raws.iter().map(|r| kind.value(r)).collect();
                    format!("{long} = {}", toml::Value::Array(items))
                }
                (false, []) => format!("# {long} =  (not set)"),
                (false, [raw, ..]) => format!("{long} = {}", kind.value(raw)),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

/// `raw` as it may be printed: a URL's password masked; a setting named for a secret, token or password
/// replaced whole (paths to files are kept).
fn redact(long: &str, raw: &str) -> String {
    let secret_named = ["secret", "token", "password"]
        .iter()
        .any(|word| long.contains(word));
    if secret_named && !long.ends_with("-file") {
        return "<redacted>".to_string();
    }
    // scheme://user:password@host... -> scheme://user:<redacted>@host... The userinfo ends at the last `@`
    // (a password may hold `/`, `?` or `#`); anything after a `?` is dropped (a `password=` parameter).
    if let Some(scheme_end) = raw.find("://") {
        let rest = &raw[scheme_end + 3..];
        if let Some(query) = rest.find('?').filter(|q| !rest[*q..].contains('@')) {
            return format!(
                "{}?<redacted>",
                redact(long, &raw[..scheme_end + 3 + query])
            );
        }
        let authority = rest;
        if let Some(at) = authority.rfind('@') {
            if let Some(colon) = authority[..at].find(':') {
                let start = scheme_end + 3;
                return format!(
                    "{}<redacted>{}",
                    &raw[..start + colon + 1],
                    &raw[start + at..]
                );
            }
        }
    }
    raw.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Everything {
        #[command(flatten)]
        config: super::super::Config,
        #[command(flatten)]
        arena: crate::sim::arena::ArenaSettings,
        #[command(flatten)]
        sources: Sources,
    }

    #[test]
    fn every_flag_has_its_tickcast_variable() {
        let command = command::<Everything>();
        let mut flags = 0;
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else {
                continue;
            };
            let expected = format!("TICKCAST_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(expected.as_str()),
                "--{long}"
            );
            flags += 1;
        }
        assert!(flags > 60, "{flags} flags");
    }

    #[test]
    fn every_setting_has_a_toml_kind_that_round_trips_its_default() {
        let parsed: Parsed<Everything> = parse(["tickcast"]).unwrap();
        let text = parsed.to_toml();
        let table: toml::Table = text.parse().unwrap();
        assert_eq!(table["tick-hz"], toml::Value::Integer(20));
        assert_eq!(table["messages-per-s"], toml::Value::Float(120.0));
        assert_eq!(table["room-creation"], toml::Value::String("open".into()));
        assert_eq!(table["allow-origin"], toml::Value::Array(Vec::new()));
        assert!(text.contains("# ticket-secret-file =  (not set)"), "{text}");
        assert!(!table.contains_key("config") && !table.contains_key("print-config"));
    }

    #[test]
    fn config_default_is_the_flags_defaults_and_reads_no_variable() {
        use clap::CommandFactory;
        // The variables are added by `command` only: `Config::default()` parses the bare derive.
        assert!(super::super::Config::command()
            .get_arguments()
            .all(|a| a.get_env().is_none()));
        let parsed: Parsed<Everything> = parse(["tickcast"]).unwrap();
        let (a, b) = (super::super::Config::default(), parsed.value.config);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    #[test]
    fn passwords_in_urls_and_secret_named_settings_are_redacted() {
        assert_eq!(
            redact("redis", "redis://user:hunter2@host:6379/0"),
            "redis://user:<redacted>@host:6379/0"
        );
        assert_eq!(
            redact("redis", "redis://:hunter2@host/"),
            "redis://:<redacted>@host/"
        );
        assert_eq!(redact("redis", "redis://host:6379/"), "redis://host:6379/");
        // A password holding `/`, and one passed as a query parameter (found by review).
        assert_eq!(
            redact("redis", "redis://u:pa/ss@host/0"),
            "redis://u:<redacted>@host/0"
        );
        assert_eq!(
            redact("redis", "redis://host/0?password=hunter2"),
            "redis://host/0?<redacted>"
        );
        assert_eq!(redact("admin-token", "abc"), "<redacted>");
        assert_eq!(redact("ticket-secret-file", "/etc/s"), "/etc/s");
    }
}
