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

/// Now, in UTC, as RFC 3339 to the second ("2026-12-02T17:45:03Z").
pub fn utc_now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_timestamp(seconds)
}

/// Seconds since the epoch as RFC 3339 UTC: the proleptic Gregorian calendar, by the
/// days-from-civil inverse of Howard Hinnant's `civil_from_days`.
fn utc_timestamp(seconds: u64) -> String {
    let (days, rest) = ((seconds / 86_400) as i64, seconds % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
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

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(super::utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::utc_timestamp(1_796_233_503), "2026-12-02T17:45:03Z");
        assert_eq!(super::utc_timestamp(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
