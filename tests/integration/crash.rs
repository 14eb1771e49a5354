//! Runs that stop where no one planned: the disk under the state dir fills up mid-run.

use std::process::Command;

use crate::support::Project;

/// A tmpfs mounted for the test's life (tests run as root, as CI does).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: std::path::PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs needs root, as CI runs");
        Tmpfs(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The state dir's disk fills while steps run: the run stops at the append that fails, and
/// a later `rollback` (space freed) undoes every step that ran, including the one whose
/// success could not be written.
#[test]
fn a_full_disk_stops_the_run_and_a_later_rollback_leaves_nothing_behind() {
    let p = Project::new();
    let _state = Tmpfs::mount(p.file("st"), "256k");
    let mut playbook = String::from(
        r#"[playbook]
name = "full"

[[steps]]
id = "file"
kind = "template"
template = "t.hbs"
dest = "out.txt"

[[steps]]
id = "fill"
kind = "exec"
command = ["sh", "-c", "touch made-by-fill; head -c 1000000 /dev/zero > st/filler; true"]
rollback = { command = ["rm", "-f", "made-by-fill"] }
"#,
    );
    for i in 0..30 {
        playbook.push_str(&format!(
            "\n[[steps]]\nid = \"after{i}\"\nkind = \"exec\"\ncommand = [\"touch\", \"after{i}\"]\nrollback = {{ command = [\"rm\", \"-f\", \"after{i}\"] }}\n"
        ));
    }
    p.write("t.hbs", "rendered\n").write("pb.toml", &playbook);
    let before: Vec<String> = listing(&p);

    let run = p.run(&["--state-dir", "st", "apply", "--yes", "pb.toml"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("cannot write the journal")
            && run.stderr.contains("No space left on device"),
        "{}",
        run.stderr
    );
    assert!(
        !p.file("after29").exists(),
        "the run stopped at the failed append"
    );
    assert!(p.file("out.txt").exists() && p.file("made-by-fill").exists());

    std::fs::remove_file(p.file("st/filler")).unwrap();
    let undo = p.run(&["--state-dir", "st", "rollback", "--yes"]).expect(0);
    assert_eq!(listing(&p), before, "{}", undo.stdout);
    let status = p.run(&["--state-dir", "st", "status"]).expect(0);
    assert!(status.stdout.contains("rolled back"), "{}", status.stdout);
}

/// The project's files outside the state dir.
fn listing(p: &Project) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(p.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "st")
        .collect();
    names.sort();
    names
}
