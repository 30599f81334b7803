//! The command line explains itself: what each command does and what it reads.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_authgraph"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_names_what_each_command_does_and_reads() {
    let top = help(&[]);
    for word in [
        "serve",
        "migrate",
        "print-schema",
        "keygen",
        "user",
        "DATABASE_URL",
        "JWT_KEYS",
        "SHUTDOWN_TIMEOUT",
        "MFA_ENCRYPTION_KEY",
    ] {
        assert!(top.contains(word), "`authgraph --help` lacks {word}:\n{top}");
    }
    for (command, reads) in [
        (vec!["serve"], "SHUTDOWN_TIMEOUT"),
        (vec!["migrate"], "DATABASE_URL"),
        (vec!["print-schema"], "no environment variable"),
        (vec!["keygen"], "no environment variable"),
        (vec!["user", "set-role"], "email"),
        (vec!["user", "reset-mfa"], "email"),
        (vec!["user"], "reset-mfa"),
        (vec!["user"], "DATABASE_URL"),
    ] {
        let text = help(&command);
        assert!(
            text.contains(reads),
            "`authgraph {command:?} --help` lacks {reads}:\n{text}"
        );
    }
}
