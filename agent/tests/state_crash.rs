//! Crash safety of the state: a child process proposing commands is SIGKILLed at random
//! points, and the database file is damaged at its tail after a clean close.
//!
//! The child is this test binary re-executed to run the ignored test
//! `crash_child_proposes_until_killed` with `BERTH_STATE_CRASH_DIR` set.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_agent::state::{Command, ObjectKey, State, StateConfig, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tempfile::TempDir;

const DIR_ENV: &str = "BERTH_STATE_CRASH_DIR";
const START_ENV: &str = "BERTH_STATE_CRASH_START";

/// Small snapshot thresholds, so kills also land during snapshots and log purges.
fn crash_config(dir: &Path) -> StateConfig {
    let mut config = StateConfig::new(dir, "crash-host");
    config.snapshot_after_entries = 40;
    config.entries_kept_after_snapshot = 5;
    config
}

fn config_map(name: &str, value: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"namespace": "crash", "name": name},
        "data": {"value": value}
    })
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("ConfigMap", "crash", name)
}

/// The i-th command of the workload (deterministic, so the parent can model it).
fn workload(index: u64) -> Command {
    let name = |i: u64| format!("c-{i}");
    let now = Timestamp::from_unix_seconds(1_700_000_000 + index as i64);
    match index % 4 {
        0 | 1 => Command::create(
            config_map(&name(index), &index.to_string()),
            format!("uid-{index}"),
            now,
        ),
        2 => Command::update(
            config_map(&name(index - 1), &format!("updated-{index}")),
            now,
        ),
        _ => Command::Batch(vec![
            Command::create(
                config_map(&name(index), &index.to_string()),
                format!("uid-{index}"),
                now,
            ),
            Command::delete(key(&name(index - 3)), now),
        ]),
    }
}

/// What the workload's i-th command does to the ConfigMaps' values.
fn model_apply(model: &mut BTreeMap<String, String>, index: u64) {
    match index % 4 {
        0 | 1 => {
            model.insert(format!("c-{index}"), index.to_string());
        }
        2 => {
            model.insert(format!("c-{}", index - 1), format!("updated-{index}"));
        }
        _ => {
            model.insert(format!("c-{index}"), index.to_string());
            model.remove(&format!("c-{}", index - 3));
        }
    }
}

fn observed(state: &State) -> BTreeMap<String, String> {
    let (objects, revision) = state.list("ConfigMap", Some("crash"));
    objects
        .iter()
        .map(|object| {
            let version: u64 = object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                version <= revision,
                "resourceVersion {version} after revision {revision}"
            );
            (
                object["metadata"]["name"].as_str().unwrap().to_string(),
                object["data"]["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The child: proposes the workload from `BERTH_STATE_CRASH_START` on, printing `ack <i>`
/// after each command is acknowledged, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by acknowledged_commands_survive_sigkill_at_random_points as its child"]
async fn crash_child_proposes_until_killed() {
    let dir = PathBuf::from(std::env::var(DIR_ENV).expect("BERTH_STATE_CRASH_DIR is set"));
    let start: u64 = std::env::var(START_ENV).unwrap().parse().unwrap();
    let state = State::open(crash_config(&dir))
        .await
        .expect("the child opens the state");
    println!("ready {}", state.revision());
    for index in start.. {
        state
            .propose(workload(index))
            .await
            .unwrap_or_else(|error| panic!("command {index} failed: {error}"));
        println!("ack {index}");
    }
}

fn spawn_child(dir: &Path, start: u64, stderr: &Path) -> std::process::Child {
    Process::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child_proposes_until_killed",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(DIR_ENV, dir)
        .env(START_ENV, start.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .expect("spawn the crash child")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commands_survive_sigkill_at_random_points() {
    let seed = std::env::var("BERTH_STATE_CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("crash test seed {seed} (set BERTH_STATE_CRASH_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = TempDir::new().unwrap();
    let stderr = dir.path().join("child.stderr");
    let mut model = BTreeMap::new();
    let mut next = 0u64;
    let mut kills_before_ready = 0;
    let mut in_flight_applied = 0;

    for round in 0..25 {
        let mut child = spawn_child(dir.path(), next, &stderr);
        let stdout = child.stdout.take().unwrap();
        let (lines, received) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill anywhere from during open (recovery) to well into the proposals.
        let delay = Duration::from_millis(rng.gen_range(0..600));
        let deadline = Instant::now() + delay;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&stderr).unwrap_or_default();
                panic!("round {round}: the child exited on its own ({status}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().expect("SIGKILL the child");
        child.wait().unwrap();
        reader.join().unwrap();

        let mut ready = false;
        let mut acked = Vec::new();
        // libtest prints `test <name> ... ` without a newline before the test's own output.
        for line in received.try_iter() {
            if line.contains("ready ") {
                ready = true;
            } else if let Some((_, index)) = line.split_once("ack ") {
                acked.push(index.parse::<u64>().unwrap());
            }
        }
        if !ready {
            kills_before_ready += 1;
        }
        let expected_acks: Vec<u64> = (next..next + acked.len() as u64).collect();
        assert_eq!(acked, expected_acks, "round {round}: acks are consecutive");
        for index in &acked {
            model_apply(&mut model, *index);
        }
        next += acked.len() as u64;

        // Reopen in this process: everything acknowledged is there, and at most the one
        // command in flight at the kill was applied on top.
        let state = State::open(crash_config(dir.path()))
            .await
            .unwrap_or_else(|error| panic!("round {round}: reopen failed: {error:?}"));
        let found = observed(&state);
        let mut with_in_flight = model.clone();
        model_apply(&mut with_in_flight, next);
        if found == with_in_flight {
            model = with_in_flight;
            next += 1;
            in_flight_applied += 1;
        } else {
            assert_eq!(
                found, model,
                "round {round} (seed {seed}): the state is neither the acknowledged commands \
                 nor those plus the one in flight"
            );
        }
        // The state accepts writes again, continuing the revision sequence.
        let revision = state.revision();
        let applied = state.propose(Command::Noop).await.unwrap();
        assert!(applied.revision > revision);
        state.shutdown().await;
    }
    println!(
        "crash test: 25 kills, {next} commands, {kills_before_ready} kills before the child was \
         ready, {in_flight_applied} unacknowledged in-flight commands found applied"
    );
    assert!(next > 0, "the children made progress");
}

/// Opens the pristine database copied into a fresh directory after `damage`; returns what
/// happened.
async fn open_damaged(
    pristine: &Path,
    damage: impl FnOnce(&Path),
) -> (PathBuf, Result<State, String>, TempDir) {
    let dir = TempDir::new().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let file = state_dir.join("state.redb");
    std::fs::copy(pristine, &file).unwrap();
    damage(&file);
    let result = State::open(StateConfig::new(dir.path(), "host"))
        .await
        .map_err(|error| {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        });
    (file, result, dir)
}

fn truncate_by(bytes: u64) -> impl FnOnce(&Path) {
    move |file| {
        let handle = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        let length = handle.metadata().unwrap().len();
        handle.set_len(length.saturating_sub(bytes)).unwrap();
    }
}

fn overwrite(from_end: u64, length: usize, byte: Option<u8>, seed: u64) -> impl FnOnce(&Path) {
    move |file| {
        use std::io::{Seek, SeekFrom, Write};
        let mut handle = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        let size = handle.metadata().unwrap().len();
        let mut rng = StdRng::seed_from_u64(seed);
        let bytes: Vec<u8> = (0..length)
            .map(|_| byte.unwrap_or_else(|| rng.r#gen()))
            .collect();
        handle
            .seek(SeekFrom::Start(size.saturating_sub(from_end)))
            .unwrap();
        handle.write_all(&bytes).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_database_tail_is_recovered_or_refused_naming_the_file() {
    // A database with some history, closed cleanly.
    let source = TempDir::new().unwrap();
    let state = State::open(StateConfig::new(source.path(), "host"))
        .await
        .unwrap();
    for index in 0..40u64 {
        state.propose(workload(index)).await.unwrap();
    }
    let expected = observed(&state);
    let expected_revision = state.revision();
    state.shutdown().await;
    let pristine = source.path().join("state").join("state.redb");
    let size = std::fs::metadata(&pristine).unwrap().len();

    type Damage = Box<dyn FnOnce(&Path)>;
    let cases: Vec<(&str, Damage)> = vec![
        ("truncated by 1 byte", Box::new(truncate_by(1))),
        ("truncated by 100 bytes", Box::new(truncate_by(100))),
        ("truncated by one page", Box::new(truncate_by(4096))),
        ("truncated by 64 KiB", Box::new(truncate_by(65536))),
        ("truncated to half", Box::new(truncate_by(size / 2))),
        (
            "last 64 bytes scribbled",
            Box::new(overwrite(64, 64, None, 1)),
        ),
        (
            "last page scribbled",
            Box::new(overwrite(4096, 4096, None, 2)),
        ),
        (
            "last page zeroed",
            Box::new(overwrite(4096, 4096, Some(0), 3)),
        ),
        (
            "last 64 KiB scribbled",
            Box::new(overwrite(65536, 65536, None, 4)),
        ),
        (
            "a page in the middle scribbled",
            Box::new(overwrite(size / 2, 4096, None, 5)),
        ),
    ];
    let mut report = Vec::new();
    for (name, damage) in cases {
        println!("opening the database {name}");
        let (file, result, _dir) = open_damaged(&pristine, damage).await;
        match result {
            Ok(state) => {
                assert_eq!(
                    observed(&state),
                    expected,
                    "{name}: opened with different data"
                );
                assert_eq!(state.revision(), expected_revision, "{name}");
                state.propose(Command::Noop).await.unwrap();
                state.shutdown().await;
                report.push(format!("{name}: recovered the last committed state"));
            }
            Err(message) => {
                assert!(
                    message.contains(&file.display().to_string()),
                    "{name}: the error does not name {}: {message}",
                    file.display()
                );
                report.push(format!("{name}: refused: {message}"));
            }
        }
    }
    println!(
        "damaged database outcomes ({size} byte file):\n{}",
        report.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scribbling_over_any_page_never_opens_with_different_data() {
    let source = TempDir::new().unwrap();
    let state = State::open(StateConfig::new(source.path(), "host"))
        .await
        .unwrap();
    for index in 0..40u64 {
        state.propose(workload(index)).await.unwrap();
    }
    let expected = observed(&state);
    let expected_revision = state.revision();
    state.shutdown().await;
    let pristine = source.path().join("state").join("state.redb");
    let size = std::fs::metadata(&pristine).unwrap().len();

    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for page in 0..size.div_ceil(4096) {
        let (file, result, _dir) = open_damaged(
            &pristine,
            overwrite(size - page * 4096, 4096, Some(0xa5), 0),
        )
        .await;
        let outcome = match result {
            Ok(state) => {
                assert_eq!(
                    observed(&state),
                    expected,
                    "page {page}: opened with different data"
                );
                assert_eq!(state.revision(), expected_revision, "page {page}");
                state.shutdown().await;
                "opened with the same data"
            }
            Err(message) => {
                assert!(
                    message.contains(&file.display().to_string()),
                    "page {page}: {message}"
                );
                "refused, naming the file"
            }
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    println!(
        "one scribbled page of {} ({size} bytes): {outcomes:?}",
        pristine.display()
    );
}
