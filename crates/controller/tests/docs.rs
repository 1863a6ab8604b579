//! The documentation names commands, flags and make targets: each one it names must exist, so
//! that a page cannot keep telling a reader about a flag that was renamed or removed.
//!
//! What counts as a mention: a backticked span or a line of a fenced block in README.md or
//! docs/*.md. An `asyncscale` command there is checked against that subcommand's flags; a span
//! that is a flag alone (`--resync`) must be a flag of some `asyncscale` command; `make X` must be
//! a target of the Makefile that `make help` lists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use asyncscale_controller::cli::Cli;
use clap::CommandFactory;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// README.md and every page of docs/, by their path from the repository's root.
fn pages() -> Vec<(String, String)> {
    let mut pages = vec![("README.md".to_string(), read(&root().join("README.md")))];
    let mut docs: Vec<_> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    for path in docs {
        let name = format!("docs/{}", path.file_name().unwrap().to_string_lossy());
        pages.push((name, read(&path)));
    }
    pages
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The commands and flags of a page: each backticked span, and each line of a fenced block (with
/// a trailing backslash joining the next line).
fn mentions(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    let mut carried = String::new();
    for line in page.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            let line = line.split(" #").next().unwrap_or("");
            carried.push_str(line.trim_end_matches('\\'));
            carried.push(' ');
            if !line.trim_end().ends_with('\\') {
                out.push(std::mem::take(&mut carried));
            }
            continue;
        }
        out.extend(line.split('`').skip(1).step_by(2).map(str::to_string));
    }
    out
}

/// Every flag of each `asyncscale` command path ("plan", "sim serve", …), and of all of them.
fn flags() -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
    fn walk(
        command: &clap::Command,
        path: Vec<String>,
        inherited: &BTreeSet<String>,
        out: &mut BTreeMap<String, BTreeSet<String>>,
    ) {
        let mut own = inherited.clone();
        for arg in command.get_arguments() {
            own.extend(arg.get_long().map(|l| format!("--{l}")));
            own.extend(arg.get_short().map(|s| format!("-{s}")));
        }
        own.extend(["--help".to_string(), "-h".to_string()]);
        out.insert(path.join(" "), own.clone());
        for sub in command.get_subcommands() {
            let mut path = path.clone();
            path.push(sub.get_name().to_string());
            walk(sub, path, &own, out);
        }
    }
    let mut by_command = BTreeMap::new();
    walk(
        &Cli::command(),
        Vec::new(),
        &BTreeSet::new(),
        &mut by_command,
    );
    let all = by_command.values().flatten().cloned().collect();
    (by_command, all)
}

/// The `asyncscale` invocation a mention starts with (after `VAR=value` words), if it does: the
/// words after the binary's name. `cargo test -p asyncscale` or `helm install asyncscale` are
/// other tools' commands.
fn asyncscale_words(mention: &str) -> Option<Vec<&str>> {
    let mut words = mention
        .split_whitespace()
        .skip_while(|w| *w == "$" || w.contains('=') && !w.starts_with('-'));
    let binary = words.next()?;
    let named = binary == "asyncscale"
        || binary.ends_with("/asyncscale")
        || binary
            .trim_matches(['$', '{', '}', '"'])
            .ends_with("ASYNCSCALE_BIN");
    named.then(|| words.collect())
}

/// The flag a word names, without its value (`--resync=30s` → `--resync`), if it is one.
fn flag_of(word: &str) -> Option<String> {
    let word = word.trim_end_matches([',', ';', ')', '.', ':']);
    let name = word.split('=').next()?;
    let long = name.len() > 2
        && name.starts_with("--")
        && name[2..]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-');
    let short = name.len() == 2
        && name.starts_with('-')
        && name[1..].chars().all(|c| c.is_ascii_alphabetic());
    (long || short).then(|| name.to_string())
}

/// What is wrong in `pages` (one line each), and how many flags were checked.
fn wrong_flags(pages: &[(String, String)]) -> (Vec<String>, usize) {
    let (by_command, all) = flags();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (page, text) in pages {
        for mention in mentions(text) {
            if let Some(words) = asyncscale_words(&mention) {
                // The longest command path its leading words name ("sim serve" before "sim").
                let path: Vec<&str> = words
                    .iter()
                    .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
                    .copied()
                    .collect();
                let Some(command) = (0..=path.len())
                    .rev()
                    .map(|n| path[..n].join(" "))
                    .find(|p| by_command.contains_key(p))
                else {
                    continue;
                };
                for flag in words.iter().filter_map(|w| flag_of(w)) {
                    checked += 1;
                    if !by_command[&command].contains(&flag) {
                        wrong.push(format!(
                            "{page}: `asyncscale {command}` has no {flag} ({mention})"
                        ));
                    }
                }
            } else if let Some(flag) =
                flag_of(mention.trim()).filter(|_| mention.trim().starts_with("--"))
            {
                checked += 1;
                if !all.contains(&flag) {
                    wrong.push(format!("{page}: no asyncscale command has {flag}"));
                }
            }
        }
    }
    (wrong, checked)
}

#[test]
fn every_asyncscale_flag_the_docs_name_exists() {
    let (wrong, checked) = wrong_flags(&pages());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The pages do name flags: a parser that finds none would pass anything.
    assert!(checked > 50, "only {checked} flags found in the docs");
}

/// The targets `make help` lists: those with a `## ` line above them.
fn documented_targets() -> BTreeSet<String> {
    let makefile = read(&root().join("Makefile"));
    let mut targets = BTreeSet::new();
    let mut documented = false;
    for line in makefile.lines() {
        if line.starts_with("## ") {
            documented = true;
        } else if line.is_empty() {
            documented = false;
        } else if let Some((name, _)) = line.split_once(':')
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        {
            if documented {
                targets.insert(name.to_string());
            }
            documented = false;
        }
    }
    targets
}

#[test]
fn every_make_target_the_docs_name_exists_and_make_help_lists_it() {
    let targets = documented_targets();
    let mut wrong = Vec::new();
    let mut named = BTreeSet::new();
    for (page, text) in pages() {
        for mention in mentions(&text) {
            let words: Vec<&str> = mention.split_whitespace().collect();
            for pair in words.windows(2).filter(|p| p[0] == "make") {
                let target = pair[1];
                if target.contains('=') || target.starts_with('-') {
                    continue;
                }
                named.insert(target.to_string());
                if !targets.contains(target) {
                    wrong.push(format!(
                        "{page}: make {target} is not a target make help lists"
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The quick start's two commands, and every .PHONY target has its line in `make help`.
    assert!(
        named.contains("demo") && named.contains("test"),
        "{named:?}"
    );
    let makefile = read(&root().join("Makefile"));
    let phony = makefile
        .lines()
        .find_map(|l| l.strip_prefix(".PHONY:"))
        .expect(".PHONY line");
    let undocumented: Vec<_> = phony
        .split_whitespace()
        .filter(|t| !targets.contains(*t))
        .collect();
    assert!(
        undocumented.is_empty(),
        "no `## ` line for {undocumented:?}"
    );
}

/// A renamed or invented flag is caught, in a command and alone, in a span and in a block.
#[test]
fn a_flag_that_does_not_exist_is_caught() {
    let page = "Run `asyncscale run --resynk 30s`, or `--no-such-flag`; `kubectl get --raw /` is kubectl's, `helm install asyncscale -n x --create-namespace` helm's.\n\
        ```sh\nasyncscale sim serve --listen 127.0.0.1:0 \\\n  --quotas ml.g4dn.xlarge=4\n```\n\
        `asyncscale plan -f x.yaml --region us-east-1` is right.\n";
    let (wrong, checked) = wrong_flags(&[("page.md".into(), page.into())]);
    assert_eq!(checked, 6, "{wrong:?}");
    assert_eq!(
        wrong,
        [
            "page.md: `asyncscale run` has no --resynk (asyncscale run --resynk 30s)",
            "page.md: no asyncscale command has --no-such-flag",
            "page.md: `asyncscale sim serve` has no --quotas (asyncscale sim serve --listen 127.0.0.1:0    --quotas ml.g4dn.xlarge=4 )",
        ]
    );
}

/// The relative links of a page (`](path)` or `](path#anchor)`), by target path.
fn relative_links(page: &str) -> Vec<String> {
    page.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &page[at + 2..];
            let target = &rest[..rest.find(')')?];
            let path = target.split('#').next().unwrap_or("");
            let external = target.contains("://") || target.starts_with("mailto:");
            (!external && !path.is_empty()).then(|| path.to_string())
        })
        .collect()
}

/// Every file or folder a page links to exists: a page cannot keep pointing at a file that moved.
#[test]
fn every_relative_link_of_the_docs_points_at_something_that_exists() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for (page, text) in pages() {
        let dir = root().join(&page).parent().unwrap().to_path_buf();
        for link in relative_links(&text) {
            checked += 1;
            if !dir.join(&link).exists() {
                broken.push(format!("{page}: {link}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to nothing:\n{}",
        broken.join("\n")
    );
    assert!(checked > 50, "only {checked} links found");
    assert_eq!(
        relative_links("[a](../x.rs#f) [b](https://e.com/y) [c](#here) [d](docs/z.md)"),
        ["../x.rs", "docs/z.md"]
    );
}
