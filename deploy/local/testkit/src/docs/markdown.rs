//! The little Markdown the docs checks need: lines outside fenced code,
//! inline link targets, and GitHub's heading anchors. Not a Markdown parser.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `a/b/../c` → `a/c` (no file system access).
pub(super) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Lines outside fenced code blocks, with their 1-based numbers.
pub(super) fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// Inline link targets `[text](target)` outside code, with line numbers.
pub(super) fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose_lines(text) {
        // Drop code spans: odd-numbered pieces between backticks.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            if !target.is_empty() {
                out.push((n, target.trim_matches(['<', '>']).to_owned()));
            }
            rest = &after[end..];
        }
    }
    out
}

/// GitHub's anchors for the headings of a Markdown text: lower case,
/// punctuation other than `-` and `_` dropped, spaces to `-`, and `-1`,
/// `-2`, ... for repeated headings.
pub fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, line) in prose_lines(text) {
        let Some(title) = line.strip_prefix('#') else { continue };
        let title = title.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                '-' | '_' => Some(c),
                c if c.is_alphanumeric() => Some(c.to_lowercase().next().unwrap_or(c)),
                _ => None,
            })
            .collect();
        let seen = counts.entry(slug.clone()).or_insert(0);
        out.insert(if *seen == 0 { slug.clone() } else { format!("{slug}-{seen}") });
        *seen += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_follow_github() {
        let a = anchors(
            "# Metrics (`GET /metrics`)\n## Status words (old contract → new meaning)\n```\n# not\n```\n## Tests\n## Tests\n",
        );
        assert!(a.contains("metrics-get-metrics"), "{a:?}");
        assert!(a.contains("status-words-old-contract--new-meaning"), "{a:?}");
        assert!(a.contains("tests") && a.contains("tests-1") && !a.contains("not"), "{a:?}");
    }

    #[test]
    fn links_skip_code() {
        let l = links("see [a](x.md#y) and `[b](no.md)`\n```\n[c](no.md)\n```\n[d](https://e)\n");
        assert_eq!(l, vec![(1, "x.md#y".to_owned()), (5, "https://e".to_owned())]);
    }
}
