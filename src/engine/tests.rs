//! The engine driven in-process: a stop request injected through what it lends the steps, and
//! timeouts and retry waits kept on tokio's clock, so that a test pauses that clock instead of
//! waiting minutes.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::context::Lent;
use crate::template::RunIdentity;

/// Keeps every event; undo records inline. With `stop_at`, requests a stop when it has seen
/// that many failed attempts.
#[derive(Default)]
struct Events {
    seen: Vec<Event>,
    secrets: Secrets,
    stop_at: Option<(usize, crate::context::Stop)>,
}

impl Sink for Events {
    fn emit(&mut self, event: Event) -> Result<()> {
        self.seen.push(event);
        if let Some((n, stop)) = &self.stop_at
            && failures(&self.seen).len() == *n
        {
            stop.request("Ctrl-C");
        }
        Ok(())
    }

    fn store(&self, _: &Path, _: &str, undo: &Undo) -> Result<StoredUndo> {
        Ok(StoredUndo::Inline(serde_json::to_value(undo).unwrap()))
    }

    fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    async fn finishing(&mut self, _: RunStatus, _: Option<&str>, _: &Lent) -> Result<()> {
        Ok(())
    }
}

/// Applies the playbook whose steps are `steps` in `dir`, as `runner apply` does.
async fn apply(dir: &Path, steps: &str, lent: &Lent) -> (Outcome, Vec<Event>) {
    apply_into(dir, steps, lent, Events::default()).await
}

async fn apply_into(dir: &Path, steps: &str, lent: &Lent, sink: Events) -> (Outcome, Vec<Event>) {
    let path = dir.join("pb.toml");
    std::fs::write(
        &path,
        format!("[playbook]\nname = \"t\"\nworkdir = \".\"\n\n{steps}"),
    )
    .unwrap();
    std::fs::write(dir.join("t.hbs"), "rendered\n").unwrap();
    let playbook =
        crate::playbook::load(&path, &BTreeMap::new(), Some(&RunIdentity::start())).unwrap();
    let observed = crate::plan::observe(&playbook, false, lent).await.unwrap();
    let plan = crate::plan::plan(&playbook, &observed);
    let run_dir = dir.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let mut run = Run {
        playbook: &playbook,
        plan: &plan,
        dir: &run_dir,
        sink,
        lent,
    };
    let outcome = execute(&mut run, None).await.unwrap();
    (outcome, run.sink.seen)
}

/// The errors of the failed attempts, in order.
fn failures(events: &[Event]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StepFailed {
                error, will_retry, ..
            } => Some((error.clone(), *will_retry)),
            _ => None,
        })
        .collect()
}

fn finished_after(events: &[Event]) -> Duration {
    events
        .iter()
        .find_map(|e| match e {
            Event::RunFinished { duration_ms, .. } => Some(Duration::from_millis(*duration_ms)),
            _ => None,
        })
        .expect("the run finished")
}

/// Whether process `pid` runs (a zombie, killed and not yet reaped, does not), within 5 s.
fn alive_5s_later(pid: i32) -> bool {
    let runs = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| !s.trim_start().starts_with('Z'))
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while runs() {
        if std::time::Instant::now() > deadline {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

const RENDER: &str =
    "[[steps]]\nid = \"render\"\nkind = \"template\"\ntemplate = \"t.hbs\"\ndest = \"out.txt\"\n\n";

#[tokio::test]
async fn a_stop_request_ends_the_running_step_stops_its_children_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let lent = Lent::default();
    let pid_file = dir.path().join("child.pid");
    let stopper = {
        let stop = lent.stop.clone();
        let pid_file = pid_file.clone();
        tokio::spawn(async move {
            // Once the step's child runs, not before.
            while !pid_file.exists() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.request("a test");
        })
    };
    let steps = format!(
        "{RENDER}[[steps]]\nid = \"wait\"\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo $$ > child.pid; exec sleep 600\"]\nrollback = \"none\"\nreason = \"waits\"\n"
    );
    let (outcome, events) = apply(dir.path(), &steps, &lent).await;
    stopper.await.unwrap();
    assert_eq!(outcome.status, RunStatus::RolledBack, "{events:#?}");
    assert_eq!(
        failures(&events),
        [("interrupted by a test".to_string(), false)]
    );
    // The step rendered before it is undone: the file it made is gone.
    assert!(!dir.path().join("out.txt").exists());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !alive_5s_later(pid),
        "the step's child {pid} outlived the stop"
    );
}

#[tokio::test]
async fn a_stop_requested_between_steps_keeps_the_next_one_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let lent = Lent::default();
    lent.stop.request("SIGTERM");
    let (outcome, events) = apply(dir.path(), RENDER, &lent).await;
    assert_eq!(outcome.status, RunStatus::RolledBack);
    assert_eq!(
        failures(&events),
        [("interrupted by SIGTERM".to_string(), false)]
    );
    assert!(!dir.path().join("out.txt").exists(), "the step ran");
}

#[tokio::test(start_paused = true)]
async fn a_step_timeout_is_kept_on_tokio_time() {
    let dir = tempfile::tempdir().unwrap();
    let wall = std::time::Instant::now();
    let steps = "[[steps]]\nid = \"slow\"\nkind = \"exec\"\ncommand = [\"sleep\", \"3600\"]\ntimeout = \"10m\"\nrollback = \"none\"\nreason = \"waits\"\n";
    let (outcome, events) = apply(dir.path(), steps, &Lent::default()).await;
    assert_eq!(outcome.status, RunStatus::RolledBack);
    assert_eq!(
        failures(&events),
        [("timed out after 10m".to_string(), false)]
    );
    // Ten minutes on the run's clock, in the moment the paused clock took to jump.
    assert!(finished_after(&events) >= Duration::from_secs(600));
    assert!(
        wall.elapsed() < Duration::from_secs(60),
        "{:?}",
        wall.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn retries_wait_their_backoff_and_a_stop_request_cuts_the_wait_short() {
    let dir = tempfile::tempdir().unwrap();
    let failing = |retries: u32| {
        format!(
            "[[steps]]\nid = \"flaky\"\nkind = \"exec\"\ncommand = [\"false\"]\nretries = {retries}\nbackoff = \"10s\"\nrollback = \"none\"\nreason = \"fails\"\n"
        )
    };
    // 10 s, 20 s, 40 s between the four attempts.
    let (outcome, events) = apply(dir.path(), &failing(3), &Lent::default()).await;
    assert_eq!(outcome.status, RunStatus::RolledBack);
    let retried: Vec<bool> = failures(&events).into_iter().map(|(_, r)| r).collect();
    assert_eq!(retried, [true, true, true, false]);
    let took = finished_after(&events);
    assert!(
        (Duration::from_secs(70)..Duration::from_secs(71)).contains(&took),
        "{took:?}"
    );

    // Asked to stop once the second attempt failed, in the 20 s wait after it: the run ends
    // then, 10 s in, and the next attempt does not run.
    let lent = Lent::default();
    let sink = Events {
        stop_at: Some((2, lent.stop.clone())),
        ..Events::default()
    };
    let (outcome, events) = apply_into(dir.path(), &failing(5), &lent, sink).await;
    assert_eq!(outcome.status, RunStatus::RolledBack);
    let errors: Vec<String> = failures(&events).into_iter().map(|(e, _)| e).collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_eq!(errors[2], "interrupted by Ctrl-C");
    let took = finished_after(&events);
    assert!(
        (Duration::from_secs(10)..Duration::from_secs(11)).contains(&took),
        "{took:?}"
    );
}
