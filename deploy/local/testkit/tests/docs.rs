//! Docs checks that need no binary: the shape of every environment table,
//! every relative link of every README (anchors included), the length of
//! the landing page, and the tables of the scripts (`make run`,
//! `make deploy-check`, `make bench`) and of the tests' own variables
//! against what those files really read. The binaries' tables are checked
//! by the `docs` test of each binary's crate.

use std::collections::BTreeSet;
use std::path::Path;

use testkit::docs::{Docs, Setting, files_under, quoted_names, script_reads};

/// Tables of binaries that `make run` passes variables through to.
const BINARY_TABLES: &[&str] = &["api", "gateway", "worker", "kube-standin"];

/// Read by tests but defined by the system, not by this repository.
const STANDARD_VARS: &[&str] = &["PATH", "HOME"];

/// The landing page stays a landing page.
const ROOT_README_MAX_LINES: usize = 250;

fn docs() -> Docs {
    Docs::load(env!("CARGO_MANIFEST_DIR").as_ref()).expect("the READMEs are readable")
}

/// What the files under `dir` (relative to the root) ending in `suffixes` read, by `read`.
fn reads_under(
    docs: &Docs,
    dir: &str,
    suffixes: &[&str],
    read: impl Fn(&Path, &str) -> BTreeSet<String>,
) -> Vec<Setting> {
    let files = files_under(&docs.root().join(dir), suffixes).expect("the sources are readable");
    assert!(!files.is_empty(), "no {suffixes:?} files under {dir}");
    let names: BTreeSet<String> = files.iter().flat_map(|(path, text)| read(path, text)).collect();
    names.iter().map(|n| Setting::env(n)).collect()
}

/// The docs checks themselves (`docs.rs`, `docs/`; `relative` to the root), which name variables only as examples.
fn is_docs_check(relative: &Path) -> bool {
    relative.components().any(|c| c.as_os_str() == "docs") || relative.file_name().is_some_and(|n| n == "docs.rs")
}

fn assert_none(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

#[test]
fn every_env_table_is_marked_once_and_well_formed() {
    let docs = docs();
    assert!(docs.files().len() >= 6, "expected the root and component READMEs, found {:?}", docs.files());
    assert_none("env tables", docs.table_shape_problems());
}

#[test]
fn every_relative_link_resolves() {
    assert_none("broken links in the READMEs", docs().broken_links());
}

#[test]
fn the_root_readme_is_a_landing_page() {
    let lines = docs().text("README.md").lines().count();
    assert!(
        lines <= ROOT_README_MAX_LINES,
        "README.md has {lines} lines (at most {ROOT_README_MAX_LINES}): move details next to the code"
    );
}

#[test]
fn make_run_documents_what_run_sh_reads() {
    let docs = docs();
    let reads =
        reads_under(&docs, "deploy/local", &["run.sh", "install-code-server.sh", "install-browser.sh"], |_, text| {
            script_reads(text)
        });
    assert!(reads.iter().any(|s| s.env.as_deref() == Some("DEV_REDIS_PORT")), "run.sh reads: {reads:?}");
    assert_none("the make-run table and deploy/local/run.sh", docs.check("make-run", BINARY_TABLES, &reads));
}

#[test]
fn deploy_check_documents_what_its_scripts_read() {
    let docs = docs();
    let reads = reads_under(&docs, "deploy/check", &[".sh", ".py"], |_, text| script_reads(text));
    assert_none("the deploy-check table and deploy/check/", docs.check("deploy-check", &[], &reads));
}

#[test]
fn bench_documents_what_the_harness_reads() {
    let docs = docs();
    let reads = reads_under(&docs, "loadtest", &[".py"], |_, text| quoted_names(text, "BENCH_"));
    assert_none("the bench table and loadtest/", docs.check("bench", &[], &reads));
}

#[test]
fn tests_document_the_variables_they_read() {
    let docs = docs();
    let mut names = BTreeSet::new();
    // Every crate's tests/ and the harness itself.
    for dir in ["api/tests", "worker/tests", "proto-types", "deploy/local/standin/tests", "deploy/local/testkit"] {
        for s in reads_under(&docs, dir, &[".rs"], |path, text| {
            if is_docs_check(path.strip_prefix(docs.root()).unwrap_or(path)) {
                BTreeSet::new()
            } else {
                script_reads(text)
            }
        }) {
            names.extend(s.env);
        }
    }
    let reads: Vec<Setting> =
        names.iter().filter(|n| !STANDARD_VARS.contains(&n.as_str())).map(|n| Setting::env(n)).collect();
    assert_none("the tests table and the tests' variables", docs.check("tests", &["deploy-check"], &reads));
}
