//! The README and the pages of `docs/`: every relative Markdown link names a file that exists,
//! and the README stays short and keeps the two set-up commands.

use std::fs;
use std::path::{Path, PathBuf};

/// The top of the repository (this crate is `node/`).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `README.md` and every `docs/*.md`, sorted.
fn pages() -> Vec<PathBuf> {
    let root = repo();
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("a readable docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// Every Markdown link target of `text`: what follows `](` up to the next `)`.
fn link_targets(text: &str) -> Vec<&str> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.find(')').map(|end| &rest[..end]))
        .collect()
}

/// The file a target names, relative to the page's directory; `None` for a web or mail
/// address and for an anchor on the same page.
fn local_file(target: &str) -> Option<&str> {
    let target = target.trim();
    let external = ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| target.starts_with(*scheme));
    if external || target.is_empty() || target.starts_with('#') {
        return None;
    }
    let file = target.split('#').next().unwrap_or(target);
    Some(file.split_whitespace().next().unwrap_or(file))
}

#[test]
fn every_relative_link_in_the_readme_and_the_docs_names_a_file_that_exists() {
    let pages = pages();
    assert!(pages.len() > 1, "docs/ holds Markdown pages: {pages:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = fs::read_to_string(page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        let dir = page.parent().expect("a page is in a directory");
        for target in link_targets(&text) {
            if let Some(file) = local_file(target) {
                checked += 1;
                if !dir.join(file).exists() {
                    let name = page.strip_prefix(repo()).unwrap_or(page);
                    broken.push(format!("{}: ]({target})", name.display()));
                }
            }
        }
    }
    assert!(checked > 0, "the pages link to files");
    assert!(
        broken.is_empty(),
        "{} broken link(s):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn the_readme_is_at_most_12000_characters_and_names_the_two_commands() {
    let readme = fs::read_to_string(repo().join("README.md")).expect("README.md exists");
    let chars = readme.chars().count();
    assert!(
        chars <= 12_000,
        "README.md has {chars} characters, at most 12000"
    );
    for command in ["scripts/up.sh", "scripts/test.sh"] {
        assert!(readme.contains(command), "README.md names {command}");
    }
}
