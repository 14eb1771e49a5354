//! Rollback keeps what it did not make: a file edited after the run (a hotfix) is kept beside
//! the restored one and listed; owner, group and mode come back with the content; the folders
//! made for a new file go when empty; line endings stay as they were.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::support::Project;

const PLAYBOOK: &str = r#"[playbook]
name = "keep"

[secrets]
PW = { env = "DB_PASSWORD" }

[[steps]]
id = "render"
kind = "template"
template = "app.hbs"
dest = "app.conf"

[[steps]]
id = "env"
kind = "env"
file = ".env"
set = { PASSWORD = "{{secrets.PW}}", PORT = 8080 }
"#;

fn run_id(p: &Project) -> String {
    let mut ids: Vec<String> = fs::read_dir(p.file(".runner/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids.pop().expect("a run")
}

/// (uid, gid, mode) of a file of the project.
fn owner(p: &Project, name: &str) -> (u32, u32, u32) {
    let meta = fs::metadata(p.file(name)).unwrap();
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

#[test]
fn a_hotfix_after_apply_is_kept_beside_the_restored_file_and_listed() {
    let p = Project::new();
    p.write("pb.toml", PLAYBOOK)
        .write("app.hbs", "port = 2\r\nname = \"ü ✓\"\r\n")
        .write("app.conf", "port = 1\r\nname = \"ü\"\r\n")
        .write(".env", "# keep me\r\nPORT=1\r\n");
    p.run(&["apply", "--yes", "pb.toml"]).expect(0);
    let id = run_id(&p);
    // Someone fixes the live file by hand after the run.
    p.write("app.conf", "port = 3 # hotfix 🔥\r\n");

    let out = p.run(&["rollback", "--yes"]).expect(0);
    let kept_name = format!("app.conf.runner-kept-{id}");
    assert_eq!(
        p.read("app.conf").unwrap(),
        "port = 1\r\nname = \"ü\"\r\n",
        "restored byte for byte, line endings too"
    );
    assert_eq!(
        p.read(&kept_name).as_deref(),
        Some("port = 3 # hotfix 🔥\r\n"),
        "the hotfix is kept"
    );
    assert_eq!(p.read(".env").unwrap(), "# keep me\r\nPORT=1\r\n");
    assert!(
        !p.file(&format!(".env.runner-kept-{id}")).exists(),
        "a file nobody touched is restored without a copy"
    );
    // Listed before anything is done, and in what the rollback reports...
    assert!(
        out.stderr
            .contains("was changed since the run: it is restored, and its current content kept as"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(&kept_name), "{}", out.stderr);
    assert!(out.stdout.contains(&kept_name), "{}", out.stdout);
    // ...and in the journal.
    let journal = p.journals();
    let undone = journal
        .lines()
        .find(|l| l.contains("\"step_rolled_back\"") && l.contains("\"render\""))
        .expect("the render step is rolled back");
    assert!(undone.contains(&kept_name), "{undone}");
    assert!(undone.contains("was changed since the run"), "{undone}");
}

#[test]
fn a_new_file_edited_after_apply_is_moved_aside_not_removed() {
    let p = Project::new();
    p.write("pb.toml", PLAYBOOK).write("app.hbs", "port = 2\n");
    p.run(&["apply", "--yes", "pb.toml"]).expect(0);
    let id = run_id(&p);
    p.write("app.conf", "port = 2\nextra = 1\n");
    p.write(".env", "edited by hand\n");
    p.run(&["rollback", "--yes"]).expect(0);
    assert!(
        !p.file("app.conf").exists(),
        "it did not exist before the run"
    );
    assert!(!p.file(".env").exists());
    assert_eq!(
        p.read(&format!("app.conf.runner-kept-{id}")).as_deref(),
        Some("port = 2\nextra = 1\n")
    );
    assert_eq!(
        p.read(&format!(".env.runner-kept-{id}")).as_deref(),
        Some("edited by hand\n")
    );
}

#[test]
fn owner_group_and_mode_are_kept_by_the_writes_and_restored_by_rollback() {
    let p = Project::new();
    p.write("pb.toml", PLAYBOOK)
        .write("app.hbs", "port = 2\n")
        .write("app.conf", "port = 1\n")
        .write(".env", "PORT=1\n");
    for (name, mode) in [("app.conf", 0o640), (".env", 0o604)] {
        std::os::unix::fs::chown(p.file(name), Some(1234), Some(2345)).unwrap();
        fs::set_permissions(p.file(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    p.run(&["apply", "--yes", "pb.toml"]).expect(0);
    assert_eq!(p.read("app.conf").unwrap(), "port = 2\n");
    assert_eq!(owner(&p, "app.conf"), (1234, 2345, 0o640), "after apply");
    assert_eq!(owner(&p, ".env"), (1234, 2345, 0o604), "after apply");
    // Someone changes only the mode after the run: that is an edit too.
    fs::set_permissions(p.file(".env"), fs::Permissions::from_mode(0o600)).unwrap();

    p.run(&["rollback", "--yes"]).expect(0);
    assert_eq!(p.read("app.conf").unwrap(), "port = 1\n");
    assert_eq!(owner(&p, "app.conf"), (1234, 2345, 0o640), "after rollback");
    assert_eq!(p.read(".env").unwrap(), "PORT=1\n");
    assert_eq!(owner(&p, ".env"), (1234, 2345, 0o604), "after rollback");
    let id = run_id(&p);
    let kept = format!(".env.runner-kept-{id}");
    assert_eq!(
        owner(&p, &kept),
        (1234, 2345, 0o600),
        "kept as it was found"
    );
    // The backup copies are private whatever the file's mode.
    let copy = p.file(&format!(".runner/runs/{id}/backup/render/0-app.conf"));
    assert_eq!(fs::metadata(copy).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn the_folders_made_for_a_new_file_are_removed_when_empty() {
    let p = Project::new();
    p.write(
        "pb.toml",
        r#"[playbook]
name = "dirs"

[[steps]]
id = "deep"
kind = "template"
template = "t.hbs"
dest = "made/by/run/out.txt"

[[steps]]
id = "shared"
kind = "template"
template = "t.hbs"
dest = "shared/sub/out.txt"
"#,
    )
    .write("t.hbs", "x\n");
    p.run(&["apply", "--yes", "pb.toml"]).expect(0);
    assert!(p.file("made/by/run/out.txt").exists());
    // Someone puts a file of their own in a folder the run made.
    p.write("shared/theirs.txt", "mine\n");
    p.run(&["rollback", "--yes"]).expect(0);
    assert!(!p.file("made").exists(), "every folder the run made goes");
    assert!(!p.file("shared/sub").exists(), "an empty one goes");
    assert_eq!(
        p.read("shared/theirs.txt").as_deref(),
        Some("mine\n"),
        "a folder holding someone's file stays"
    );
}

#[test]
fn an_upstream_file_edited_after_a_switch_is_kept_too() {
    // The load balancer does not run: the switch only writes the file (the Docker engine is
    // asked, so the test needs it).
    let p = Project::new();
    p.write(
        "pb.toml",
        r#"[playbook]
name = "switch"

[[steps]]
id = "switch"
kind = "lb_switch"
file = "lb/upstream.conf"
content = "server green:3000;\n"
container = "runner-test-no-such-lb"
drain = "0s"
"#,
    )
    .write("lb/upstream.conf", "server blue:3000;\n");
    p.run(&["apply", "--yes", "pb.toml"]).expect(0);
    let id = run_id(&p);
    p.write("lb/upstream.conf", "server blue:3000; # hotfix\n");
    let out = p.run(&["rollback", "--yes"]).expect(0);
    assert_eq!(p.read("lb/upstream.conf").unwrap(), "server blue:3000;\n");
    let kept = format!("lb/upstream.conf.runner-kept-{id}");
    assert_eq!(
        p.read(&kept).as_deref(),
        Some("server blue:3000; # hotfix\n")
    );
    assert!(out.stdout.contains(&kept), "{}", out.stdout);
    assert!(out.stderr.contains(&kept), "{}", out.stderr);
}
