//! The checkpoint's process: the state at a checkpoint marker, copied on
//! write by the operating system.
//!
//! At a marker the router completes the batches before it, has every shard
//! stop at a freeze ([`ShardedLedger::freeze`]) and forks. The forked
//! process has the whole memory of the engine as it was at that instant,
//! copied on write page by page by the kernel, so the shards go on with
//! their next batch at once: the engine stops for the fork (its page
//! tables), not for a copy of the state. The forked process, with no other
//! thread, merges the shards' states into one lone ledger (as
//! [`ShardedLedger::to_ledger`] does), digests and encodes it, and streams
//! it through a pipe to the engine's checkpoint thread, which writes it
//! into the storage as it arrives and trims the log behind it. So the
//! engine keeps no second copy of the state and replays nothing to have
//! one; a checkpoint costs the engine the fork, the pages its shards write
//! while the process runs (each copied once), and the storage's write.
//!
//! The forked process runs nothing but this module's code, which neither
//! logs nor takes a lock another thread could have held: merging, digesting
//! and encoding the state only read it and allocate. It closes every file
//! it inherited but its pipe (the server's sockets and the storage's files
//! stay the engine's alone), lowers its priority (its own session's
//! scheduling group at nice 10, so that it does not weigh like another
//! engine thread where the kernel groups threads by session), and ends with
//! `_exit`, never running the engine's destructors; SIGTERM and SIGINT end
//! it (the engine's handlers for them are put back to the default). If the
//! engine dies the process finds its pipe closed at its next write and
//! ends; an engine that stops, or gives a checkpoint up, kills it.
//!
//! What goes through the pipe (all integers little-endian): a header, the
//! magic `PRCKPT01`, the state's digest (32 bytes) and, per table of
//! [`crate::ledger::memory::TABLE_NAMES`], its entries, entries per account,
//! fixed entries, bytes per entry and accounts (5 x u64); then frames of a
//! u32 length and that many bytes of the encoded state; then a frame of
//! length 0 (the end) or of length `u32::MAX` followed by a u32 length and
//! a UTF-8 message (the process failed).

// Forking, pipes and reading the frozen shards' memory are system calls
// and raw reads; each block says why it is sound.
#![allow(unsafe_code)]

use std::io::Read;
use std::time::{Duration, Instant};

use crate::ledger::memory::{TableUse, TABLES, TABLE_NAMES};
use crate::ledger::RecordsInOrder;
use crate::shard::Frozen;
use crate::storage::{CheckpointSource, LedgerCheckpoint, StorageError};

const MAGIC: &[u8; 8] = b"PRCKPT01";
/// Bytes of the header: magic, digest, tables.
const HEADER_BYTES: usize = 8 + 32 + TABLES * 5 * 8;
/// A frame's length that says the process failed (a message follows).
const FAILED: u32 = u32::MAX;
/// The forked process's nice value, for its own scheduling group and
/// itself (Linux: 0 normal, 19 lowest).
const PROCESS_NICE: i32 = 10;
/// Bytes the forked process encodes into one frame.
const FRAME_BYTES: usize = 1 << 20;
/// Longest the checkpoint thread waits for the next bytes from the
/// process before it gives the checkpoint up (the process merges and
/// digests the whole state before its first frame: seconds at millions of
/// accounts, more on a machine the engine keeps busy).
const SILENCE_MAX: Duration = Duration::from_secs(600);
/// How often a wait for the process looks at the stop flag.
const POLL_MS: i32 = 100;

/// A forked checkpoint process and the read end of its pipe.
#[derive(Debug)]
pub(crate) struct Forked {
    pid: libc::pid_t,
    pipe: std::fs::File,
    /// Whether the process was reaped (`waitpid`).
    reaped: bool,
}

/// Forks the checkpoint's process for the state `frozen` holds, to be
/// saved as the checkpoint at the marker (`sequence`, `timestamp`).
pub(crate) fn fork(frozen: &Frozen<'_>, sequence: u64, timestamp: u64) -> Result<Forked, String> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!(
            "cannot make the checkpoint's pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    let [read_fd, write_fd] = fds;
    // SAFETY: the child runs only `child`, which never returns (it ends
    // with `_exit`) and touches only memory no other thread of the child
    // could hold (there is none) and the frozen state (see `child`).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: we are the forked process.
        unsafe { child(frozen, sequence, timestamp, read_fd, write_fd) }
    }
    // SAFETY: the parent's copy of the write end is not used here.
    unsafe { libc::close(write_fd) };
    if pid < 0 {
        let error = std::io::Error::last_os_error();
        // SAFETY: the read end is ours and not used.
        unsafe { libc::close(read_fd) };
        return Err(format!("cannot fork the checkpoint's process: {error}"));
    }
    // SAFETY: `read_fd` is a descriptor we own, handed to the `File`.
    let pipe = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(read_fd) };
    Ok(Forked {
        pid,
        pipe,
        reaped: false,
    })
}

/// The forked process: makes the image and writes it into the pipe.
///
/// # Safety
/// Only in the child of `fork`, with `frozen` the state frozen at the
/// fork.
unsafe fn child(
    frozen: &Frozen<'_>,
    sequence: u64,
    timestamp: u64,
    read_fd: libc::c_int,
    write_fd: libc::c_int,
) -> ! {
    // SAFETY: plain system calls on this process's own descriptors and
    // scheduling.
    unsafe {
        libc::close(read_fd);
        // Every inherited descriptor goes but stdin/stdout/stderr and the
        // pipe: listening sockets, connections and the storage's files
        // belong to the engine alone.
        for fd in 3..write_fd {
            libc::close(fd);
        }
        libc::syscall(
            libc::SYS_close_range,
            (write_fd + 1) as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
        libc::setsid();
        libc::setpriority(libc::PRIO_PROCESS, 0, PROCESS_NICE);
        // The engine's handlers (a clean stop on SIGTERM or SIGINT) are the
        // engine's: a signal sent to this process ends it.
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
    // A new session is a new scheduling group under Linux's autogroups:
    // give it the same low weight (a failure only costs fairness).
    let _ = std::fs::write("/proc/self/autogroup", PROCESS_NICE.to_string());
    // A panic says nothing on stderr (whose lock a thread of the engine
    // may have held at the fork); it fails the checkpoint through the pipe.
    std::panic::set_hook(Box::new(|_| {}));
    // SAFETY: the descriptor is ours; the `File` is never dropped (exit).
    let pipe = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(write_fd) };
    let mut out = std::mem::ManuallyDrop::new(pipe);
    let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: this is the forked process of the freeze `frozen`. The
        // state is never dropped (see `merge_in_fork`).
        let state = unsafe { frozen.in_fork() };
        write_image(
            &state.ledger,
            state.records(),
            sequence,
            timestamp,
            &mut *out,
        )
    }));
    let code = match made {
        Ok(Ok(())) => 0,
        Ok(Err(error)) => {
            let _ = write_failure(&mut *out, &error.to_string());
            2
        }
        Err(_) => {
            let _ = write_failure(&mut *out, "the checkpoint's process panicked");
            3
        }
    };
    // SAFETY: ends the forked process without running anything of the
    // engine's (destructors, atexit handlers, buffered output).
    unsafe { libc::_exit(code) }
}

/// Header, frames and the end frame of `ledger`'s checkpoint.
fn write_image(
    ledger: &crate::Ledger,
    records: &dyn RecordsInOrder,
    sequence: u64,
    timestamp: u64,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(MAGIC);
    let tables = ledger.tables();
    let digest = ledger.digest_with_records(records);
    header.extend_from_slice(&digest);
    for table in &tables {
        for value in [
            table.entries,
            table.entries_per_account,
            table.entries_fixed,
            table.entry_bytes,
            table.accounts,
        ] {
            header.extend_from_slice(&value.to_le_bytes());
        }
    }
    debug_assert_eq!(header.len(), HEADER_BYTES);
    out.write_all(&header)?;
    let checkpoint = LedgerCheckpoint::with_records(ledger, records, sequence, timestamp, digest);
    let mut io_error = None;
    let written = checkpoint.write_state(FRAME_BYTES, &mut |bytes| {
        let length = u32::try_from(bytes.len())
            .ok()
            .filter(|&length| length != FAILED && length != 0);
        let Some(length) = length else {
            return Err(StorageError::Io(
                "a chunk of no or too many bytes".to_owned(),
            ));
        };
        let sent = out
            .write_all(&length.to_le_bytes())
            .and_then(|()| out.write_all(bytes));
        sent.map_err(|error| {
            let message = error.to_string();
            io_error = Some(error);
            StorageError::Io(message)
        })
    });
    if let Some(error) = io_error {
        return Err(error);
    }
    written.map_err(|error| std::io::Error::other(error.to_string()))?;
    out.write_all(&0u32.to_le_bytes())?;
    out.flush()
}

fn write_failure(out: &mut impl std::io::Write, message: &str) -> std::io::Result<()> {
    let bytes = message.as_bytes();
    let length = u32::try_from(bytes.len().min(4096)).unwrap_or(0);
    out.write_all(&FAILED.to_le_bytes())?;
    out.write_all(&length.to_le_bytes())?;
    out.write_all(&bytes[..length as usize])
}

impl Forked {
    /// Reads the header: the state's digest and table use.
    pub(crate) fn read_header(
        &mut self,
        stopping: &std::sync::atomic::AtomicBool,
    ) -> Result<([u8; 32], [TableUse; TABLES]), String> {
        let mut header = [0u8; HEADER_BYTES];
        if let Err(error) = read_exact(&self.pipe, &mut header, stopping) {
            return Err(self.failure(error));
        }
        if &header[..8] != MAGIC {
            return Err("the checkpoint's process sent no header".to_owned());
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&header[8..40]);
        let mut values = header[40..]
            .chunks_exact(8)
            .map(|bytes| u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])));
        let mut next = || values.next().unwrap_or(0);
        let tables = TABLE_NAMES.map(|name| TableUse {
            name,
            entries: next(),
            entries_per_account: next(),
            entries_fixed: next(),
            entry_bytes: next(),
            accounts: next(),
        });
        Ok((digest, tables))
    }

    /// What went wrong, after `error` reading the pipe: the process's
    /// message if it sent one (it is then reaped), else `error`.
    fn failure(&mut self, error: PipeError) -> String {
        match error {
            PipeError::Closed => match self.reap() {
                Some(status) => format!(
                    "the checkpoint's process ended early ({})",
                    describe(status)
                ),
                None => "the checkpoint's process closed its pipe early".to_owned(),
            },
            PipeError::Failed(error) => error,
        }
    }

    /// Waits for the process to end; its wait status (`None` if it was
    /// reaped before or cannot be waited for).
    fn reap(&mut self) -> Option<libc::c_int> {
        if self.reaped {
            return None;
        }
        self.reaped = true;
        wait_for(self.pid)
    }

    /// Waits for the process to end after its last frame: an error unless
    /// it exited with 0.
    pub(crate) fn finish(mut self) -> Result<(), String> {
        match self.reap() {
            Some(status) if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 => Ok(()),
            Some(status) => Err(format!(
                "the checkpoint's process ended with {}",
                describe(status)
            )),
            None => Err("the checkpoint's process could not be waited for".to_owned()),
        }
    }
}

impl Drop for Forked {
    /// A checkpoint given up: the process is killed and reaped on a thread
    /// of its own. A killed process ends only once the kernel has unmapped
    /// its memory, which for a state of gigabytes shared with the engine
    /// takes seconds at the process's low priority (at 2M accounts a stop
    /// in the middle of a checkpoint waited 8.8-10.5 s for it on a busy
    /// machine); neither a stop nor the next checkpoint needs to wait: the
    /// process holds no file of the engine's (it closed them at its start)
    /// and no lock. If the engine ends first, the process's new parent
    /// reaps it. If no thread can be started, it is reaped here.
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: our child's pid, not yet reaped (so not reused).
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        self.reaped = true;
        let pid = self.pid;
        let reaper = std::thread::Builder::new()
            .name("payrail-reap".into())
            .spawn(move || wait_for(pid));
        if reaper.is_err() {
            let _ = wait_for(pid);
        }
    }
}

/// Waits for the process `pid` (a child not yet reaped) to end: its wait
/// status, `None` if it cannot be waited for.
fn wait_for(pid: libc::pid_t) -> Option<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: our child's pid; `status` is written by the call.
        let reaped = unsafe { libc::waitpid(pid, &mut status, 0) };
        if reaped == pid {
            return Some(status);
        }
        if reaped >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
        {
            return None;
        }
    }
}

/// A wait status as text: an exit code or a signal.
fn describe(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status}")
    }
}

/// Why `read_exact` read less than asked.
#[derive(Debug)]
enum PipeError {
    /// The pipe closed before the bytes came (the process ended).
    Closed,
    /// Anything else: a stop, silence, an I/O error.
    Failed(String),
}

impl std::fmt::Display for PipeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PipeError::Closed => f.write_str("the checkpoint's process closed its pipe"),
            PipeError::Failed(error) => f.write_str(error),
        }
    }
}

/// Reads `buf.len()` bytes, waiting at most [`SILENCE_MAX`] for each part
/// and giving up once `stopping` is set.
fn read_exact(
    mut pipe: &std::fs::File,
    buf: &mut [u8],
    stopping: &std::sync::atomic::AtomicBool,
) -> Result<(), PipeError> {
    let mut filled = 0;
    let mut since = Instant::now();
    while filled < buf.len() {
        if stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(PipeError::Failed(
                "the engine is stopping; checkpoint abandoned".to_owned(),
            ));
        }
        if since.elapsed() > SILENCE_MAX {
            return Err(PipeError::Failed(format!(
                "the checkpoint's process sent nothing for {} s",
                SILENCE_MAX.as_secs()
            )));
        }
        let mut poll = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(pipe),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, POLL_MS) };
        if ready == 0 {
            continue;
        }
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(PipeError::Failed(format!(
                "waiting for the checkpoint's process: {error}"
            )));
        }
        match pipe.read(&mut buf[filled..]) {
            Ok(0) => return Err(PipeError::Closed),
            Ok(read) => {
                filled += read;
                since = Instant::now();
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                return Err(PipeError::Failed(format!(
                    "reading the checkpoint's process: {error}"
                )))
            }
        }
    }
    Ok(())
}

/// The checkpoint the process streams, as the storage takes it: its frames
/// regrouped into the chunk size the storage asks for.
pub(crate) struct Streamed<'a> {
    pub(crate) forked: std::cell::RefCell<&'a mut Forked>,
    pub(crate) sequence: u64,
    pub(crate) timestamp: u64,
    pub(crate) digest: [u8; 32],
    pub(crate) stopping: &'a std::sync::atomic::AtomicBool,
    /// Bytes of state handed on.
    pub(crate) state_bytes: std::cell::Cell<u64>,
}

impl CheckpointSource for Streamed<'_> {
    fn sequence(&self) -> u64 {
        self.sequence
    }

    fn timestamp(&self) -> u64 {
        self.timestamp
    }

    fn digest(&self) -> [u8; 32] {
        self.digest
    }

    fn write_state(
        &self,
        chunk_bytes: usize,
        chunk: &mut dyn FnMut(&[u8]) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut forked = self.forked.borrow_mut();
        let chunk_bytes = chunk_bytes.max(1);
        let mut pending: Vec<u8> = Vec::with_capacity(chunk_bytes + FRAME_BYTES);
        let mut total = 0u64;
        let failed =
            |forked: &mut Forked, error: PipeError| StorageError::Io(forked.failure(error));
        loop {
            let mut length = [0u8; 4];
            if let Err(error) = read_exact(&forked.pipe, &mut length, self.stopping) {
                return Err(failed(&mut forked, error));
            }
            let length = u32::from_le_bytes(length);
            if length == 0 {
                break;
            }
            if length == FAILED {
                let mut size = [0u8; 4];
                let mut message = vec![0u8; 4096];
                let read = read_exact(&forked.pipe, &mut size, self.stopping).and_then(|()| {
                    let size = (u32::from_le_bytes(size) as usize).min(message.len());
                    message.truncate(size);
                    read_exact(&forked.pipe, &mut message, self.stopping)
                });
                let message = match read {
                    Ok(()) => String::from_utf8_lossy(&message).into_owned(),
                    Err(error) => error.to_string(),
                };
                return Err(StorageError::Io(format!(
                    "the checkpoint's process failed: {message}"
                )));
            }
            let start = pending.len();
            pending.resize(start + length as usize, 0);
            if let Err(error) = read_exact(&forked.pipe, &mut pending[start..], self.stopping) {
                return Err(failed(&mut forked, error));
            }
            total += u64::from(length);
            let mut whole = 0;
            while pending.len() - whole >= chunk_bytes {
                chunk(&pending[whole..whole + chunk_bytes])?;
                whole += chunk_bytes;
            }
            pending.drain(..whole);
        }
        if !pending.is_empty() {
            chunk(&pending)?;
        }
        self.state_bytes.set(total);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::command::{AccountId, AccountKind, Command, CommandKind, OpenAccount};
    use crate::currency::Currency;
    use std::io::Write;
    use std::sync::atomic::AtomicBool;

    /// A pipe's read and write ends.
    fn pipe_ends() -> (std::fs::File, std::fs::File) {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: room for the two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors, each owned by one `File`.
        unsafe {
            (
                <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]),
                <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]),
            )
        }
    }

    /// A pipe: (read end as the engine holds it, write end).
    fn pipe() -> (Forked, std::fs::File) {
        let (read, write) = pipe_ends();
        // No process behind it: nothing to kill or reap.
        let forked = Forked {
            pid: -1,
            pipe: read,
            reaped: true,
        };
        (forked, write)
    }

    /// A ledger of `accounts` customer accounts with deposits: several
    /// frames of state.
    fn ledger(accounts: u64) -> crate::Ledger {
        let mut ledger = crate::Ledger::default();
        let mut commands = Vec::new();
        for account in 1..=accounts {
            commands.push(Command::new(
                u128::from(account),
                CommandKind::OpenAccount(OpenAccount {
                    account: AccountId(account),
                    owner: account,
                    kind: AccountKind::Customer,
                    currency: Currency::CNY,
                    kyc_tier: 1,
                    mcc: 0,
                }),
            ));
        }
        let mut results = Vec::new();
        ledger.apply(1, 1_000, &commands, &mut results);
        ledger
    }

    /// The header's digest and tables, and the state's chunks.
    type Streamed3 = ([u8; 32], [TableUse; TABLES], Vec<Vec<u8>>);

    /// Reads what `write` puts into a pipe as the checkpoint thread does,
    /// with `chunk_bytes` chunks: header, then the state's chunks or the
    /// error.
    fn stream(
        chunk_bytes: usize,
        write: impl FnOnce(std::fs::File) + Send + 'static,
    ) -> Result<Streamed3, String> {
        let (mut forked, writer) = pipe();
        let writing = std::thread::spawn(move || write(writer));
        let stopping = AtomicBool::new(false);
        let read = (|| {
            let (digest, tables) = forked.read_header(&stopping)?;
            let source = Streamed {
                forked: std::cell::RefCell::new(&mut forked),
                sequence: 9,
                timestamp: 9,
                digest,
                stopping: &stopping,
                state_bytes: std::cell::Cell::new(0),
            };
            let mut chunks = Vec::new();
            source
                .write_state(chunk_bytes, &mut |chunk| {
                    chunks.push(chunk.to_vec());
                    Ok(())
                })
                .map_err(|error| error.to_string())?;
            assert_eq!(
                source.state_bytes.get(),
                chunks.iter().map(Vec::len).sum::<usize>() as u64
            );
            Ok((digest, tables, chunks))
        })();
        writing.join().unwrap();
        read
    }

    #[test]
    fn the_streamed_image_is_the_encoded_state_in_the_storages_chunks() {
        let ledger = std::sync::Arc::new(ledger(40_000));
        let mut want = Vec::new();
        crate::storage::encode_state(&ledger, &mut want);
        assert!(want.len() > 2 * FRAME_BYTES, "several frames");
        for chunk_bytes in [1_000, FRAME_BYTES, 3 * FRAME_BYTES + 7, want.len()] {
            let sent = std::sync::Arc::clone(&ledger);
            let (digest, tables, chunks) = stream(chunk_bytes, move |mut pipe| {
                write_image(&sent, &sent.records, 9, 9, &mut pipe).unwrap();
            })
            .unwrap();
            assert_eq!(digest, ledger.digest());
            assert_eq!(tables, ledger.tables());
            let (last, whole) = chunks.split_last().unwrap();
            assert!(whole.iter().all(|chunk| chunk.len() == chunk_bytes));
            assert!(!last.is_empty() && last.len() <= chunk_bytes);
            assert_eq!(chunks.concat(), want, "chunks of {chunk_bytes}");
        }
    }

    /// The forked process's image of a frozen sharded state (one shard:
    /// the shard's state with the router's records read in place; two:
    /// merged) is the image of the lone ledger the state merges into.
    #[test]
    #[allow(unsafe_code)]
    fn a_frozen_sharded_state_streams_the_image_of_its_merged_ledger() {
        let lone = crate::storage::snapshot::tests::busy_ledger();
        for shards in [1, 2] {
            let mut sharded =
                crate::shard::ShardedLedger::from_ledger(lone.clone(), shards).unwrap();
            let (digest, image) = {
                let frozen = sharded.freeze().unwrap();
                // SAFETY: the shards wait at the freeze while the state is
                // read, and what `in_fork` returns is never dropped.
                let state = unsafe { frozen.in_fork() };
                let mut image = Vec::new();
                write_image(&state.ledger, state.records(), 9, 9, &mut image).unwrap();
                (state.ledger.digest_with_records(state.records()), image)
            };
            let merged = sharded.to_ledger().unwrap();
            assert_eq!(digest, lone.digest(), "{shards} shards");
            assert_eq!(merged.digest(), lone.digest(), "{shards} shards");
            let mut want = Vec::new();
            write_image(&merged, &merged.records, 9, 9, &mut want).unwrap();
            assert!(want.len() > HEADER_BYTES + 1_000);
            assert!(image == want, "{shards} shards: the same bytes");
        }
    }

    #[test]
    fn a_failed_or_cut_image_is_an_error_not_a_checkpoint() {
        let ledger = ledger(10);
        let mut header = Vec::new();
        {
            let mut image = Vec::new();
            write_image(&ledger, &ledger.records, 9, 9, &mut image).unwrap();
            header.extend_from_slice(&image[..HEADER_BYTES]);
        }
        // The process says it failed after a frame.
        let sent = header.clone();
        let failed = stream(1_000, move |mut pipe| {
            pipe.write_all(&sent).unwrap();
            pipe.write_all(&3u32.to_le_bytes()).unwrap();
            pipe.write_all(b"abc").unwrap();
            write_failure(&mut pipe, "out of memory").unwrap();
        });
        let error = failed.err().unwrap();
        assert!(error.contains("out of memory"), "{error}");
        // The pipe closes in the middle of a frame (the process died).
        let sent = header.clone();
        let cut = stream(1_000, move |mut pipe| {
            pipe.write_all(&sent).unwrap();
            pipe.write_all(&100u32.to_le_bytes()).unwrap();
            pipe.write_all(&[7; 40]).unwrap();
        });
        let error = cut.err().unwrap();
        assert!(error.contains("closed its pipe"), "{error}");
        // No end frame: as cut.
        let sent = header.clone();
        let unended = stream(1_000, move |mut pipe| {
            pipe.write_all(&sent).unwrap();
        });
        assert!(unended.is_err());
        // Not a header at all.
        let garbage = stream(1_000, move |mut pipe| {
            pipe.write_all(&[0u8; HEADER_BYTES]).unwrap();
        });
        assert!(garbage.err().unwrap().contains("no header"));
    }

    /// Whether the process `pid` is gone, or at least a zombie no longer
    /// (reaped: its /proc entry went).
    fn reaped(pid: libc::pid_t) -> bool {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn a_process_given_up_is_killed_and_reaped_without_holding_up_the_drop() {
        let (read, writer) = pipe_ends();
        // A process that would wait for ever (a checkpoint's process that
        // is still digesting when the engine stops).
        // SAFETY: the child only calls async-signal-safe functions.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            loop {
                // SAFETY: waits for a signal; SIGKILL ends the process.
                unsafe { libc::pause() };
            }
        }
        let forked = Forked {
            pid,
            pipe: read,
            reaped: false,
        };
        drop(writer);
        drop(forked);
        // Killed, then reaped by the reaping thread: no zombie is left.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !reaped(pid) {
            assert!(
                Instant::now() < deadline,
                "process {pid} is still there 30 s after the drop"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_stop_gives_up_waiting_for_the_process() {
        let (forked, _writer) = pipe();
        let stopping = AtomicBool::new(true);
        let mut buf = [0u8; 4];
        let error = read_exact(&forked.pipe, &mut buf, &stopping)
            .unwrap_err()
            .to_string();
        assert!(error.contains("stopping"), "{error}");
    }
}
