//! Orphans adopted by a primary that is PID 1 (a container's init) or a
//! child subreaper: they become its children when their own parent exits,
//! and only it can reap them, as tini does. Only pids nobody else owns are
//! reaped — never a worker (the engine reaps those by pid) nor a child the
//! app's own code spawned (libuv reaps those by pid): JS passes both in
//! `keep`. Never `waitpid(-1)`, which would steal their status.

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// From one `/proc/<pid>/stat` line: (pid, state, ppid). The command name
/// sits in parentheses and may itself hold spaces and parentheses, so the
/// fields after it are found from the last `)`.
pub fn parse_stat(line: &str) -> Option<(i32, char, i32)> {
  let open = line.find(" (")?;
  let close = line.rfind(')')?;
  let pid = line[..open].trim().parse().ok()?;
  let mut rest = line.get(close + 1..)?.split_ascii_whitespace();
  let state = rest.next()?.chars().next()?;
  let ppid = rest.next()?.parse().ok()?;
  Some((pid, state, ppid))
}

/// Whether `pid` is a zombie child of `parent` that `ours` says is nobody else's.
pub fn is_orphan_zombie(stat: (i32, char, i32), parent: i32, ours: impl Fn(u32) -> bool) -> bool {
  let (pid, state, ppid) = stat;
  state == 'Z' && ppid == parent && pid > 0 && ours(pid as u32)
}

/// Reaps every zombie child of this process not in `keep`; returns their pids.
pub fn reap(keep: &[u32]) -> Vec<u32> {
  reap_if(|pid| !keep.contains(&pid))
}

/// Reaps every zombie child of this process that `ours` accepts.
fn reap_if(ours: impl Fn(u32) -> bool) -> Vec<u32> {
  let me = std::process::id() as i32;
  let Ok(dir) = std::fs::read_dir("/proc") else {
    return Vec::new();
  };
  let mut reaped = Vec::new();
  for entry in dir.flatten() {
    let name = entry.file_name();
    let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
      continue;
    };
    // A process may be gone between the listing and the read: skip it.
    let Ok(line) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
      continue;
    };
    let Some(stat) = parse_stat(&line) else {
      continue;
    };
    if !is_orphan_zombie(stat, me, &ours) {
      continue;
    }
    // WNOHANG on this pid only: ECHILD means someone reaped it meanwhile.
    if waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).is_ok() {
      reaped.push(pid as u32);
    }
  }
  reaped
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn stat_lines_with_odd_command_names() {
    assert_eq!(
      parse_stat("123 (sleep) Z 1 123 123 0 -1"),
      Some((123, 'Z', 1))
    );
    assert_eq!(
      parse_stat("77 (a (weird) name) S 42 77 77 0"),
      Some((77, 'S', 42))
    );
    assert_eq!(parse_stat("garbage"), None);
  }

  #[test]
  fn only_zombie_children_nobody_keeps() {
    let keep = |pid: u32| ![11, 12].contains(&pid);
    assert!(is_orphan_zombie((10, 'Z', 1), 1, keep));
    assert!(!is_orphan_zombie((11, 'Z', 1), 1, keep));
    assert!(!is_orphan_zombie((10, 'S', 1), 1, keep));
    assert!(!is_orphan_zombie((10, 'Z', 2), 1, keep));
  }

  #[test]
  fn reaps_an_adopted_zombie_and_leaves_a_kept_one() {
    // Two children of this test process that exit at once: one kept (its
    // status must stay for its owner), one not.
    let kept = std::process::Command::new("true").spawn().unwrap();
    // Reaped by reap_if below, not by a wait() (what the lint asks for).
    #[allow(clippy::zombie_processes)]
    let orphan = std::process::Command::new("true").spawn().unwrap();
    let (kept_pid, orphan_pid) = (kept.id(), orphan.id());
    let zombie = |pid: u32| {
      std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|l| parse_stat(&l))
        .is_some_and(|(_, s, _)| s == 'Z')
    };
    let t0 = std::time::Instant::now();
    while !(zombie(kept_pid) && zombie(orphan_pid)) {
      assert!(t0.elapsed().as_secs() < 5, "children did not exit");
      std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Only these two: other tests run beside this one with children of their own.
    let reaped = reap_if(|pid| pid == orphan_pid);
    assert_eq!(reaped, vec![orphan_pid]);
    assert!(
      zombie(kept_pid),
      "a kept child's status is left for its owner"
    );
    let mut kept = kept;
    assert!(kept.wait().unwrap().success());
  }
}
