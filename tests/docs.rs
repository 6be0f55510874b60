//! The docs a user reads hold against the code: the contract lists every
//! error code with the status hookwire answers it with, the README's
//! commands name real subcommands and options, and no doc points outside
//! the repository.

mod common;

use std::path::Path;
use std::process::Command;

use hookwire::reject::Code;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn docs() -> Vec<(String, String)> {
    let mut files = vec![("README.md".to_owned(), read("README.md"))];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for entry in std::fs::read_dir(&dir).expect("a docs/ directory") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = format!("docs/{}", path.file_name().unwrap().to_string_lossy());
            files.push((name.clone(), read(&name)));
        }
    }
    files
}

#[test]
fn the_contract_lists_every_error_code_with_its_status() {
    let contract = read("docs/contract.md");
    for code in Code::ALL {
        let row = contract
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", code.as_str())))
            .unwrap_or_else(|| panic!("docs/contract.md has no row for {}", code.as_str()));
        let status = row.split('|').nth(2).unwrap().trim();
        assert_eq!(
            status,
            code.status().code().to_string(),
            "docs/contract.md: the status of {}",
            code.as_str()
        );
    }
}

#[test]
fn the_docs_point_nowhere_outside_the_repository() {
    for (name, text) in docs() {
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            for outside in ["../shared", "spec/ingest.md", "shared docs"] {
                assert!(!lower.contains(outside), "{name}:{}: {line}", n + 1);
            }
            let issue = lower
                .match_indices("issue ")
                .any(|(at, m)| lower[at + m.len()..].starts_with(|c: char| c.is_ascii_digit()));
            assert!(!issue, "{name}:{}: names an issue: {line}", n + 1);
        }
    }
}

/// The command lines of the README's shell blocks that run hookwire.
fn readme_commands() -> Vec<String> {
    let readme = read("README.md");
    let mut commands = Vec::new();
    let mut in_shell = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_shell = matches!(line.trim(), "```sh" | "```bash" | "```shell");
            continue;
        }
        if !in_shell {
            continue;
        }
        let line = line.split(" # ").next().unwrap().trim_end();
        pending.push_str(line.trim_end_matches('\\'));
        if line.ends_with('\\') {
            continue;
        }
        let command = std::mem::take(&mut pending);
        if command.trim_start().starts_with("hookwire")
            || command.contains("target/release/hookwire")
        {
            commands.push(command.trim().to_owned());
        }
    }
    commands
}

#[test]
fn readme_commands_use_one_binary_name_a_subcommand_and_real_options() {
    let commands = readme_commands();
    assert!(
        commands.iter().any(|c| c.starts_with("hookwire serve")),
        "the README runs `hookwire serve` somewhere: {commands:?}"
    );
    for command in &commands {
        assert!(
            command.starts_with("hookwire "),
            "README runs hookwire as `hookwire`, not by path: {command}"
        );
        let words: Vec<&str> = command.split_whitespace().collect();
        let sub = words[1];
        assert!(
            sub == "serve" || sub == "tap",
            "README names a subcommand: {command}"
        );
        let help = Command::new(common::BIN)
            .args([sub, "--help"])
            .output()
            .expect("run hookwire --help");
        let help = String::from_utf8_lossy(&help.stdout);
        for flag in words.iter().filter(|w| w.starts_with("--")) {
            let flag = flag.split('=').next().unwrap();
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                "README's `{command}`: `hookwire {sub}` has no option {flag}"
            );
        }
    }
}
