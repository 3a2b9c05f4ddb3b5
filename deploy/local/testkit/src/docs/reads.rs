//! What programs read: the settings of a clap command and the environment
//! variables a script or test names, for [`super::Docs::check`]. Text
//! scanning only: nothing here runs the programs or reads the process
//! environment.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

/// One setting a program reads: an environment variable, a flag, or both.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Setting {
    /// The environment variable, if any.
    pub env: Option<String>,
    /// The command-line word (`--long` flag or subcommand name), if any.
    pub flag: Option<String>,
}

impl Setting {
    /// A variable read from the environment only.
    pub fn env(name: &str) -> Self {
        Self { env: Some(name.to_owned()), flag: None }
    }
}

/// Every setting of a clap command, its subcommands included: each
/// argument's `env` and `--long` name, and each subcommand's name (as a flag
/// without variable). clap's own `--help` and `--version` are left out.
pub fn clap_settings(command: &clap::Command) -> Vec<Setting> {
    let mut out = Vec::new();
    for arg in command.get_arguments() {
        if matches!(arg.get_id().as_str(), "help" | "version") {
            continue;
        }
        out.push(Setting {
            env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
            flag: arg.get_long().map(|l| format!("--{l}")),
        });
    }
    for sub in command.get_subcommands() {
        out.push(Setting { env: None, flag: Some(sub.get_name().to_owned()) });
        out.extend(clap_settings(sub));
    }
    out
}

/// The environment variables a shell or Python script reads, from these
/// forms: `${NAME:-…}`, `${NAME-…}`, `${NAME:=…}`, `${NAME:?…}`,
/// `environ.get("NAME"`, `environ["NAME"]`, `getenv("NAME"`, and, for Rust,
/// `env::var("NAME")` / `env::var_os("NAME")`. Plain `$NAME` is not a read
/// (scripts use it for their own variables too).
pub fn script_reads(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (open, close) in [
        ("${", &[":-", "-", ":=", ":?"][..]),
        ("environ.get(\"", &["\""][..]),
        ("environ[\"", &["\"]"][..]),
        ("getenv(\"", &["\""][..]),
        ("env::var(\"", &["\")"][..]),
        ("env::var_os(\"", &["\")"][..]),
    ] {
        for (at, _) in text.match_indices(open) {
            let rest = &text[at + open.len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if is_env_name(&name) && close.iter().any(|c| rest[name.len()..].starts_with(c)) {
                out.insert(name);
            }
        }
    }
    out
}

/// Every quoted `"PREFIX…"` token in `text` that looks like a variable name
/// (for programs that keep their variable names in a table of strings).
pub fn quoted_names(text: &str, prefix: &str) -> BTreeSet<String> {
    text.match_indices(&format!("\"{prefix}"))
        .filter_map(|(at, _)| {
            let rest = &text[at + 1..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            (rest[name.len()..].starts_with('"') && is_env_name(&name)).then_some(name)
        })
        .collect()
}

pub(super) fn is_env_name(name: &str) -> bool {
    name.len() > 1
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The files under `dir` (recursively, hidden directories and `target/`
/// skipped) whose names end in one of `suffixes`, with their text.
pub fn files_under(dir: &Path, suffixes: &[&str]) -> io::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "node_modules" {
                    dirs.push(entry.path());
                }
            } else if suffixes.iter().any(|s| name.ends_with(s)) {
                out.push((entry.path(), std::fs::read_to_string(entry.path())?));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_reads_defaults_and_lookups() {
        let r = script_reads(
            "A=${API_ADDR:-x}\nB=${DEV_PORT-1}\necho $OWN ${OWN}\nos.environ.get(\"K8S_DIR\", 1)\nstd::env::var_os(\"REDIS_BIN\")",
        );
        let want: BTreeSet<String> = ["API_ADDR", "DEV_PORT", "K8S_DIR", "REDIS_BIN"].map(String::from).into();
        assert_eq!(r, want);
        assert_eq!(quoted_names("(\"BENCH_RUNS\", \"3\"), \"BENCH\"", "BENCH_"), ["BENCH_RUNS".to_owned()].into());
    }
}
