//! What the machine is and how busy it was: CPU model and count, load
//! average, and the CPU time of this process's threads by name (with an
//! embedded server, that splits server from load generator). Linux /proc;
//! elsewhere the figures are simply absent.

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

pub fn describe() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024.0 / 1024.0)
        })
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_owned())
        .unwrap_or_default();
    Machine {
        cpu_model,
        cpus,
        memory_gib,
        kernel,
    }
}

/// The 1-minute load average, if known.
pub fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// CPU seconds (user + system) of this process's threads, summed by thread
/// name with trailing digits dropped ("tokio-runtime-w", "payrail-sequencer").
pub fn thread_cpu_seconds() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    // Clock ticks per second: 100 on every Linux configuration in use.
    let ticks_per_second = 100.0;
    for task in tasks.flatten().take(4_096) {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ... utime stime ...": comm may hold spaces, so
        // split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close]
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '#')
            .to_owned();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the comm: state is field 0, utime 11, stime 12.
        let ticks = |index: usize| {
            fields
                .get(index)
                .and_then(|field| field.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        *out.entry(name).or_insert(0.0) += (ticks(11) + ticks(12)) / ticks_per_second;
    }
    out
}

/// Resident memory of process `pid`, bytes (`VmRSS`).
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1_024)
}

/// CPU seconds (user + system) of this whole process so far.
pub fn process_cpu_seconds() -> f64 {
    thread_cpu_seconds().values().sum()
}

/// The process of this user listening on TCP `port` (IPv4 or IPv6), found
/// through /proc: the socket's inode in /proc/net/tcp*, then the process
/// holding it. Bounded: at most 65,536 processes and 4,096 descriptors each
/// are looked at.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1 ("ADDR:PORT" in hex), st field 3
            // (0A: listening), inode field 9.
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listening_port = local
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            if *state == "0A" && listening_port == Some(port) {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let processes = std::fs::read_dir("/proc").ok()?;
    for process in processes.flatten().take(65_536) {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(descriptors) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for descriptor in descriptors.flatten().take(4_096) {
            if let Ok(target) = std::fs::read_link(descriptor.path()) {
                if inodes
                    .iter()
                    .any(|inode| target.as_os_str() == inode.as_str())
                {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// Bytes of the files under `dir` (three levels deep at most, 100,000
/// entries at most: a data directory is a few hundred files).
pub fn directory_bytes(dir: &std::path::Path) -> Option<u64> {
    fn walk(dir: &std::path::Path, depth: u32, budget: &mut u32) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut total = 0;
        for entry in entries.flatten() {
            if *budget == 0 {
                break;
            }
            *budget -= 1;
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                if depth < 3 {
                    total += walk(&entry.path(), depth + 1, budget);
                }
            } else {
                total += metadata.len();
            }
        }
        total
    }
    if !dir.is_dir() {
        return None;
    }
    let mut budget = 100_000;
    Some(walk(dir, 0, &mut budget))
}

/// `after - before`, per name.
pub fn cpu_delta(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(name, seconds)| {
            let earlier = before.get(name).copied().unwrap_or(0.0);
            (name.clone(), (seconds - earlier).max(0.0))
        })
        .filter(|(_, seconds)| *seconds > 0.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_threads_with_cpu_time() {
        let mut spin = 0u64;
        for index in 0..20_000_000u64 {
            spin = spin.wrapping_add(index * index);
        }
        assert!(spin > 0);
        let threads = thread_cpu_seconds();
        if cfg!(target_os = "linux") {
            assert!(!threads.is_empty());
        }
        let machine = describe();
        assert!(machine.cpus >= 1);
        if cfg!(target_os = "linux") {
            assert!(resident_bytes(std::process::id()).is_some_and(|bytes| bytes > 0));
            assert!(process_cpu_seconds() > 0.0);
        }
    }

    #[test]
    fn finds_the_process_listening_on_a_port_and_sizes_a_directory() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if cfg!(target_os = "linux") {
            assert_eq!(pid_listening_on(port), Some(std::process::id()));
        }
        drop(listener);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 1_000]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub").join("b"), [0u8; 24]).unwrap();
        assert_eq!(directory_bytes(dir.path()), Some(1_024));
        assert_eq!(directory_bytes(&dir.path().join("missing")), None);
    }
}
