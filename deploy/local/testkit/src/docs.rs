//! Docs-drift and link checks over the repository's READMEs, for the
//! `docs` integration tests of each crate.
//!
//! Every environment variable is documented in exactly one Markdown table,
//! marked by an HTML comment on the line before it:
//!
//! ```text
//! <!-- env-table: worker -->
//! | variable | flag | default | meaning |
//! |---|---|---|---|
//! | `WORKER_CONCURRENCY` | `--concurrency` | `8` | jobs run at once |
//! ```
//!
//! The first column holds the variable name(s) in backticks; a flag, when
//! the setting has one, appears in backticks somewhere in the same row.
//! [`Docs::check`] compares one table (plus the shared tables it may lean
//! on) with what a program really reads: the settings of a clap command
//! ([`clap_settings`]) or the variables a script reads ([`script_reads`]).
//! [`Docs::broken_links`] checks that every relative link resolves, anchors
//! included. This module only reads files; it never touches the process
//! environment. It is not a Markdown parser: tables, fenced code blocks,
//! headings and inline links are all it understands.

mod markdown;
mod reads;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

pub use markdown::anchors;
use markdown::{links, normalize, prose_lines};
use reads::is_env_name;
pub use reads::{Setting, clap_settings, files_under, quoted_names, script_reads};

/// One row of an environment table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Variable names in the first cell (backticked, `NAME` or `PREFIX_*`).
    pub names: Vec<String>,
    /// The whole row as written.
    pub text: String,
    /// 1-based line number.
    pub line: usize,
}

/// A marked environment table.
#[derive(Debug, Clone)]
pub struct Table {
    /// The marker's name (`<!-- env-table: NAME -->`).
    pub name: String,
    /// The README holding it.
    pub file: PathBuf,
    /// Its rows, header and separator excluded.
    pub rows: Vec<Row>,
}

/// The READMEs of the repository, read once.
#[derive(Debug)]
pub struct Docs {
    root: PathBuf,
    files: BTreeMap<PathBuf, String>,
}

const MARKER: &str = "<!-- env-table:";

impl Docs {
    /// Reads every `README.md` under the workspace root that holds `start`
    /// (the nearest ancestor whose `Cargo.toml` has `[workspace]`), skipping
    /// `target/`, `node_modules/` and hidden directories.
    pub fn load(start: &Path) -> io::Result<Self> {
        let root = start
            .ancestors()
            .find(|d| std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]")))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no workspace Cargo.toml above the crate"))?
            .to_path_buf();
        let mut files = BTreeMap::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    if !name.starts_with('.') && name != "target" && name != "node_modules" {
                        dirs.push(path);
                    }
                } else if name == "README.md" {
                    files.insert(path.clone(), std::fs::read_to_string(&path)?);
                }
            }
        }
        Ok(Self { root, files })
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The text of a README, by path relative to the root (`""` if absent).
    pub fn text(&self, relative: &str) -> &str {
        self.files.get(&self.root.join(relative)).map_or("", String::as_str)
    }

    /// The READMEs read, relative to the root.
    pub fn files(&self) -> Vec<PathBuf> {
        self.files.keys().map(|p| p.strip_prefix(&self.root).unwrap_or(p).to_path_buf()).collect()
    }

    /// Every marked table, in file order.
    pub fn tables(&self) -> Vec<Table> {
        let mut out = Vec::new();
        for (file, text) in &self.files {
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let Some(rest) = line.trim().strip_prefix(MARKER) else { continue };
                let name = rest.trim_end_matches("-->").trim().to_owned();
                let rows = lines
                    .iter()
                    .enumerate()
                    .skip(i + 1)
                    .skip_while(|(_, l)| l.trim().is_empty())
                    .take_while(|(_, l)| l.trim_start().starts_with('|'))
                    .skip(2) // header and separator
                    .map(|(n, l)| Row { names: first_cell_names(l), text: (*l).to_owned(), line: n + 1 })
                    .collect();
                out.push(Table { name, file: file.clone(), rows });
            }
        }
        out
    }

    /// Problems with the tables themselves: a marker used twice, a marker
    /// with no table under it, a row naming no variable, a variable written
    /// twice in one table, or a table of variables without a marker (a
    /// second, unchecked place for them).
    pub fn table_shape_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen = BTreeMap::new();
        for table in self.tables() {
            let at = self.show(&table.file);
            if let Some(first) = seen.insert(table.name.clone(), at.clone()) {
                problems.push(format!("env table `{}` is marked twice: {first} and {at}", table.name));
            }
            if table.rows.is_empty() {
                problems.push(format!("env table `{}` in {at}: no table rows under the marker", table.name));
            }
            let mut names = BTreeSet::new();
            for row in &table.rows {
                if row.names.is_empty() {
                    problems.push(format!("{at}:{}: row names no `VARIABLE` in its first cell", row.line));
                }
                for n in &row.names {
                    if !names.insert(n.clone()) {
                        problems.push(format!("{at}:{}: `{n}` is written twice in table `{}`", row.line, table.name));
                    }
                }
            }
        }
        for (file, text) in &self.files {
            let lines = prose_lines(text);
            for (k, (n, line)) in lines.iter().enumerate() {
                let starts_table =
                    line.trim_start().starts_with('|') && (k == 0 || !lines[k - 1].1.trim_start().starts_with('|'));
                if !starts_table {
                    continue;
                }
                let marked = lines[..k]
                    .iter()
                    .rev()
                    .find(|(_, l)| !l.trim().is_empty())
                    .is_some_and(|(_, l)| l.trim().starts_with(MARKER));
                let names_vars = lines[k..]
                    .iter()
                    .take_while(|(_, l)| l.trim_start().starts_with('|'))
                    .skip(2)
                    .any(|(_, l)| !first_cell_names(l).is_empty());
                if names_vars && !marked {
                    problems.push(format!(
                        "{}:{n}: a table of variables without `{MARKER} NAME -->`: add its rows to the one marked table of their program",
                        self.show(file)
                    ));
                }
            }
        }
        problems
    }

    /// Compares table `own` with the settings a program reads. Each
    /// variable must be documented in exactly one row of `own` or of the
    /// shared tables `also` (which document other programs too), and that
    /// row must mention its flag; a flag without variable (or a subcommand)
    /// must be mentioned in the README that holds `own`. Every variable of
    /// `own` must be read by the program. Returns one line per problem.
    pub fn check(&self, own: &str, also: &[&str], reads: &[Setting]) -> Vec<String> {
        let tables = self.tables();
        let Some(own_table) = tables.iter().find(|t| t.name == own) else {
            return vec![format!("no env table marked `{MARKER} {own} -->` in any README")];
        };
        let mut problems = Vec::new();
        let searched: Vec<&Table> =
            tables.iter().filter(|t| t.name == own || also.contains(&t.name.as_str())).collect();
        for name in also {
            if !tables.iter().any(|t| t.name == *name) {
                problems.push(format!("no env table marked `{MARKER} {name} -->` in any README"));
            }
        }
        let where_ = || {
            let mut names = vec![format!("`{own}` ({})", self.show(&own_table.file))];
            names.extend(also.iter().map(|a| format!("`{a}`")));
            names.join(" or ")
        };
        let mut read_names = BTreeSet::new();
        for setting in reads {
            match (&setting.env, &setting.flag) {
                (Some(env), flag) => {
                    read_names.insert(env.clone());
                    let rows: Vec<(&Table, &Row)> = searched
                        .iter()
                        .flat_map(|t| t.rows.iter().map(move |r| (*t, r)))
                        .filter(|(_, r)| r.names.contains(env))
                        .collect();
                    match rows.as_slice() {
                        [] => problems.push(format!(
                            "`{env}`{} is read by `{own}` but documented in no table row of {}",
                            flag.as_ref().map(|f| format!(" (`{f}`)")).unwrap_or_default(),
                            where_()
                        )),
                        [(_, row)] => {
                            if let Some(f) = flag
                                && !row.text.contains(&format!("`{f}`"))
                            {
                                problems.push(format!(
                                    "`{env}`: its row ({}:{}) does not mention the flag `{f}`",
                                    self.show(&own_table.file),
                                    row.line
                                ));
                            }
                        }
                        many => problems.push(format!(
                            "`{env}` is documented {} times for `{own}` (tables {}); keep one row",
                            many.len(),
                            many.iter()
                                .map(|(t, r)| format!("`{}` line {}", t.name, r.line))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    }
                }
                (None, Some(flag)) => {
                    let text = self.files.get(&own_table.file).map_or("", String::as_str);
                    if !text.contains(flag.as_str()) {
                        problems.push(format!(
                            "`{flag}` of `{own}` (no variable) is not mentioned in {}",
                            self.show(&own_table.file)
                        ));
                    }
                }
                (None, None) => {}
            }
        }
        for row in &own_table.rows {
            for name in row.names.iter().filter(|n| !read_names.contains(*n)) {
                problems.push(format!(
                    "`{name}` is documented in table `{own}` ({}:{}) but `{own}` does not read it",
                    self.show(&own_table.file),
                    row.line
                ));
            }
        }
        problems
    }

    /// Every relative link of every README whose file (or directory) does
    /// not exist, or whose `#anchor` names no heading of the target README.
    /// Links inside fenced code blocks and code spans are not links.
    pub fn broken_links(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (file, text) in &self.files {
            let dir = file.parent().unwrap_or(&self.root);
            for (line, target) in links(text) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = target.split_once('#').unwrap_or((target.as_str(), ""));
                let resolved = if path.is_empty() { file.clone() } else { dir.join(path) };
                let at = format!("{}:{line}", self.show(file));
                if !resolved.exists() {
                    problems.push(format!("{at}: link `{target}`: {} does not exist", self.show(&resolved)));
                    continue;
                }
                if anchor.is_empty() || resolved.extension().is_none_or(|e| e != "md") {
                    continue;
                }
                let body = match self.files.get(&normalize(&resolved)) {
                    Some(t) => t.clone(),
                    None => std::fs::read_to_string(&resolved).unwrap_or_default(),
                };
                if !anchors(&body).contains(anchor) {
                    problems.push(format!("{at}: link `{target}`: no heading `#{anchor}` in {}", self.show(&resolved)));
                }
            }
        }
        problems
    }

    fn show(&self, path: &Path) -> String {
        normalize(path).strip_prefix(&self.root).unwrap_or(path).display().to_string()
    }
}
/// Backticked variable names of a row's first cell.
fn first_cell_names(row: &str) -> Vec<String> {
    let cell = row.trim().trim_start_matches('|').split('|').next().unwrap_or("");
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter(|n| is_env_name(n.trim_end_matches('*').trim_end_matches('_')) || is_env_name(n))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_cell_names_take_backticked_variables() {
        assert_eq!(first_cell_names("| `A_B` / `CD` | `--x` |"), vec!["A_B", "CD"]);
        assert_eq!(first_cell_names("| `OTEL_BSP_*` | x |"), vec!["OTEL_BSP_*"]);
        assert!(first_cell_names("| (`K8sConfig::x`) | x |").is_empty());
    }
}
