//! Puts the git commit the binary is built from into `TICKCAST_GIT_COMMIT` (`tickcast --version`, the
//! `tickcast_build_info` metric): `git rev-parse --short=12 HEAD`, with `-dirty` when tracked files have
//! changes; in a crate tarball, the commit cargo packaged it from (`.cargo_vcs_info.json`); else
//! `unknown` (no git, or a Docker build without `.git`: pass `TICKCAST_GIT_COMMIT` in the environment
//! then). It reruns when HEAD, the branch it points to, the index or the sources change, not on every
//! build.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TICKCAST_GIT_COMMIT");
    let commit = std::env::var("TICKCAST_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .or_else(packaged_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=TICKCAST_GIT_COMMIT={commit}");
}

/// The commit, or `None` when git is absent or this crate is not the top of a git checkout (a tarball
/// unpacked inside some other repository must not report that repository's commit).
fn git_commit() -> Option<String> {
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?);
    let here = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    if top.canonicalize().ok()? != here.canonicalize().ok()? {
        return None;
    }
    let hash = git(&["rev-parse", "--short=12", "HEAD"])?;
    watch_head();
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(match dirty {
        true => format!("{hash}-dirty"),
        false => hash,
    })
}

/// Reruns the script when HEAD moves: HEAD itself (a checkout) and the ref it names (a commit). In a
/// worktree `.git` is a file, so the directories come from git itself.
fn watch_head() {
    let Some(git_dir) = git(&["rev-parse", "--git-dir"]).map(PathBuf::from) else {
        return;
    };
    println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
    // The `-dirty` mark follows the index (`git add`, commits) and the sources; an edit elsewhere (docs)
    // shows at the next rebuild.
    println!("cargo:rerun-if-changed={}", git_dir.join("index").display());
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    if let Some(name) = git(&["symbolic-ref", "-q", "HEAD"]) {
        // Branch refs live in the common directory (shared by every worktree); a packed ref has no file.
        let common = git(&["rev-parse", "--git-common-dir"]).map_or(git_dir, PathBuf::from);
        let path = common.join(&name);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        } else {
            println!(
                "cargo:rerun-if-changed={}",
                common.join("packed-refs").display()
            );
        }
    }
}

/// The commit `cargo package` recorded in the tarball: `"sha1": "<40 hex>"` in `.cargo_vcs_info.json`.
fn packaged_commit() -> Option<String> {
    println!("cargo:rerun-if-changed=.cargo_vcs_info.json");
    let info = std::fs::read_to_string(".cargo_vcs_info.json").ok()?;
    let rest = &info[info.find("\"sha1\"")? + 6..];
    let hex: String = rest
        .chars()
        .skip_while(|c| !c.is_ascii_hexdigit())
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    let dirty = info.contains("\"dirty\": true") || info.contains("\"dirty\":true");
    match (hex.len() >= 12, dirty) {
        (false, _) => None,
        (true, false) => Some(hex[..12].to_string()),
        (true, true) => Some(format!("{}-dirty", &hex[..12])),
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_string())
}
