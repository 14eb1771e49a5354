//! Every shipped playbook validates and plans.

use std::path::Path;

use crate::support::finish;

#[test]
fn every_shipped_playbook_validates_and_plans() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for entry in std::fs::read_dir(root.join("playbooks")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml")
            || path.to_string_lossy().contains("mapping")
        {
            continue;
        }
        count += 1;
        let relative = path
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        for args in [
            vec!["validate", relative.as_str()],
            vec!["plan", relative.as_str(), "--format", "markdown"],
        ] {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_runner"));
            command
                .args(&args)
                .current_dir(root)
                .envs(crate::support::example_secrets());
            let run = finish(command);
            assert_eq!(run.code, 0, "{args:?}\n{}\n{}", run.stdout, run.stderr);
        }
    }
    assert!(count >= 1, "no playbooks found");
}
