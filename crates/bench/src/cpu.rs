//! CPU time of the processes under test, read from `/proc/<pid>/stat` (utime + stime, the whole
//! thread group, in clock ticks of `sysconf(_SC_CLK_TCK)`): sampled before and after a write
//! run, the difference divided by the run's acknowledged writes gives the CPU each write cost the
//! servers (`cpu_us_per_write`).
//!
//! Invariant: a figure is given only when every process was read at both ends of the run and
//! its time did not go back (a process restarted in between gives none rather than a wrong one).

/// User + system CPU time of a process, in clock ticks, from the text of its
/// `/proc/<pid>/stat`. The process name (field 2) is in parentheses and may itself hold spaces
/// and parentheses, so the fields are counted from the last `)`: after it come state (field 3)
/// … utime (field 14) and stime (field 15).
pub(crate) fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // Field 3 is the first after the name: utime (14) is the 12th from there, stime next.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A process's user + system CPU time in clock ticks; `None` when it cannot be read.
fn process_ticks(pid: u32) -> Option<u64> {
    parse_stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub(crate) fn ticks_per_sec() -> Option<u64> {
    // SAFETY: sysconf takes no pointer and only reads a system setting.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&hz| hz > 0)
}

/// The summed CPU time of a set of processes at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CpuSample(Vec<(u32, u64)>);

impl CpuSample {
    /// Reads every process's CPU time; `None` without processes or when one cannot be read.
    pub fn take(pids: &[u32]) -> Option<CpuSample> {
        if pids.is_empty() {
            return None;
        }
        pids.iter()
            .map(|&pid| Some((pid, process_ticks(pid)?)))
            .collect::<Option<Vec<_>>>()
            .map(CpuSample)
    }

    /// Ticks used by all the processes from `before` to `self`; `None` if the two samples are
    /// not of the same processes or a time went back.
    pub fn ticks_since(&self, before: &CpuSample) -> Option<u64> {
        if self.0.len() != before.0.len() {
            return None;
        }
        self.0
            .iter()
            .zip(&before.0)
            .map(|(&(pid, after), &(pid_before, before))| {
                if pid == pid_before {
                    after.checked_sub(before)
                } else {
                    None
                }
            })
            .sum()
    }
}

/// Microseconds of CPU per acknowledged write: `ticks` clock ticks (at `ticks_per_sec`) over
/// `writes` writes; `None` without writes.
pub(crate) fn us_per_write(ticks: u64, ticks_per_sec: u64, writes: u64) -> Option<f64> {
    if writes == 0 || ticks_per_sec == 0 {
        return None;
    }
    Some(ticks as f64 * 1e6 / ticks_per_sec as f64 / writes as f64)
}

/// CPU per write of the processes sampled in `before` and `after`, over `writes` writes.
pub(crate) fn cpu_us_per_write(
    before: Option<&CpuSample>,
    after: Option<&CpuSample>,
    writes: u64,
) -> Option<f64> {
    us_per_write(after?.ticks_since(before?)?, ticks_per_sec()?, writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `/proc/<pid>/stat` line with utime 1234 and stime 567 (fields 14 and 15).
    fn stat_line(name: &str) -> String {
        format!(
            "4242 ({name}) S 1 4242 4242 0 -1 4194560 1500 0 0 0 1234 567 0 0 20 0 9 0 \
             123456 987654321 3000 18446744073709551615 1 1 0 0 0 0 0 4096 17926 0 0 0 17 1 \
             0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        )
    }

    #[test]
    fn parses_utime_plus_stime() {
        assert_eq!(parse_stat_ticks(&stat_line("regent")), Some(1234 + 567));
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        for name in [
            "tokio-runtime-w",
            "my proc",
            "a) b (c",
            ") 1 2 3 4 5 6 7 8 9 10 11 12 13 (",
            "((x))",
            "",
        ] {
            assert_eq!(parse_stat_ticks(&stat_line(name)), Some(1801), "{name:?}");
        }
    }

    #[test]
    fn a_truncated_or_garbled_line_gives_none() {
        assert_eq!(parse_stat_ticks(""), None);
        assert_eq!(parse_stat_ticks("4242 (regent S 1 2 3"), None);
        assert_eq!(parse_stat_ticks("4242 (regent) S 1 4242 4242 0 -1"), None);
        let garbled = stat_line("regent").replace(" 1234 ", " x ");
        assert_eq!(parse_stat_ticks(&garbled), None);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let sample = CpuSample::take(&[pid]).expect("own /proc/<pid>/stat");
        let later = CpuSample::take(&[pid]).expect("own /proc/<pid>/stat");
        assert!(later.ticks_since(&sample).is_some());
        assert!(ticks_per_sec().is_some());
    }

    #[test]
    fn no_processes_or_an_unreadable_one_gives_none() {
        assert_eq!(CpuSample::take(&[]), None);
        // Beyond the kernel's pid_max (at most 2^22): never a process.
        assert_eq!(CpuSample::take(&[std::process::id(), u32::MAX]), None);
    }

    #[test]
    fn ticks_are_summed_over_the_processes() {
        let before = CpuSample(vec![(1, 100), (2, 50), (3, 0)]);
        let after = CpuSample(vec![(1, 160), (2, 80), (3, 10)]);
        assert_eq!(after.ticks_since(&before), Some(100));
    }

    #[test]
    fn a_time_going_back_or_other_processes_give_none() {
        let before = CpuSample(vec![(1, 100), (2, 50)]);
        assert_eq!(
            CpuSample(vec![(1, 160), (2, 40)]).ticks_since(&before),
            None
        );
        assert_eq!(
            CpuSample(vec![(1, 160), (9, 80)]).ticks_since(&before),
            None
        );
        assert_eq!(CpuSample(vec![(1, 160)]).ticks_since(&before), None);
    }

    #[test]
    fn per_write_arithmetic() {
        // 250 ticks at 100 Hz = 2.5 s of CPU over 10,000 writes = 250 µs a write.
        assert_eq!(us_per_write(250, 100, 10_000), Some(250.0));
        // 1 tick at 100 Hz = 10 ms over 3 writes.
        let third = us_per_write(1, 100, 3).expect("writes");
        assert!((third - 10_000.0 / 3.0).abs() < 1e-9);
        assert_eq!(us_per_write(0, 100, 5), Some(0.0));
        assert_eq!(us_per_write(1000, 1000, 1), Some(1e6));
        assert_eq!(us_per_write(10, 100, 0), None);
        assert_eq!(us_per_write(10, 0, 5), None);
    }

    #[test]
    fn per_write_from_samples() {
        let before = CpuSample(vec![(1, 100), (2, 50), (3, 0)]);
        let after = CpuSample(vec![(1, 160), (2, 80), (3, 10)]);
        let hz = ticks_per_sec().expect("sysconf");
        assert_eq!(
            cpu_us_per_write(Some(&before), Some(&after), 100),
            us_per_write(100, hz, 100)
        );
        assert_eq!(cpu_us_per_write(None, Some(&after), 100), None);
        assert_eq!(cpu_us_per_write(Some(&before), None, 100), None);
        assert_eq!(cpu_us_per_write(Some(&before), Some(&after), 0), None);
    }
}
