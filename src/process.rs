//! Facts about this process the reports record, and about other processes on this host (for
//! telling a dead lock holder from a live one).

/// Peak resident set size of this process (VmHWM), where the system reports it (Linux).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`), or
/// None when no such process exists or the system has no `/proc` (see [`proc_available`]).
/// With the pid it names one process: a pid reused later has another start time.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command name, is in parentheses and may itself hold spaces and ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields from 3 on; 22 is the 20th of them.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether [`start_time`] can tell (Linux's `/proc` is mounted).
pub fn proc_available() -> bool {
    start_time(std::process::id()).is_some()
}

/// This boot of this machine (Linux), so that pids and start times from before a reboot,
/// or from another machine of the same name, are not compared with this one's.
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string()).filter(|s| !s.is_empty())
}

/// This machine's name.
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_a_start_time_a_pid_nobody_has_none() {
        if !super::proc_available() {
            return;
        }
        let me = super::start_time(std::process::id()).unwrap();
        assert_eq!(super::start_time(std::process::id()), Some(me));
        // Above the kernel's pid_max (at most 2^22).
        assert_eq!(super::start_time(u32::MAX - 1), None);
    }
}
