//! Updating the agent in place (UpdateContainerAgent): the server announces its own binary's
//! SHA-256 on the agent's poll; the agent downloads that binary into its data directory, checks
//! the digest, makes it executable and re-executes itself with the same arguments. The new
//! process keeps the data directory, so it registers as the same container instance and adopts
//! the running containers exactly as after a restart. Progress is reported as ECS's
//! `agentUpdateStatus`: STAGING, STAGED, UPDATING, and FAILED when it cannot go on (the agent
//! then keeps running as it is).

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hex SHA-256 and the size of a file, read in chunks.
pub fn file_sha256(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

/// The hex SHA-256 of the executable this process runs: what the agent reports as
/// `versionInfo.agentHash`, and what a server announces as its agents' update.
pub fn own_sha256() -> std::io::Result<(String, u64)> {
    file_sha256(&std::env::current_exe()?)
}

/// How the agent replaces itself once the new binary is staged.
pub trait Reexec: Send + Sync + 'static {
    /// Runs `binary` in place of this process; returns only when it could not.
    fn reexec(&self, binary: &Path) -> std::io::Error;
}

/// `execve` of the new binary with this process's arguments and environment: the same process
/// (its ID, its open standard streams) runs the new agent. Descriptors Rust opened (the data
/// directory's lock, the endpoint's listener, Docker's connections) close on exec, and the new
/// agent opens them again as at a start.
pub struct ProcessReexec;

impl Reexec for ProcessReexec {
    fn reexec(&self, binary: &Path) -> std::io::Error {
        use std::os::unix::process::CommandExt;
        let mut last = std::io::Error::other("not tried");
        // A process forked meanwhile may still hold the new file open for writing for a moment
        // (ETXTBSY): try again briefly.
        for _ in 0..50 {
            last = std::process::Command::new(binary).args(std::env::args_os().skip(1)).exec();
            if last.raw_os_error() != Some(26) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        last
    }
}

/// What an agent that can update itself needs: where it stages the new binary, and how it
/// re-executes.
#[derive(Clone)]
pub struct Updater {
    pub data_dir: PathBuf,
    pub reexec: Arc<dyn Reexec>,
}

impl Updater {
    /// The agent of a `gantry agent` process: staged in its data directory, re-executed with
    /// `execve`.
    pub fn process(data_dir: PathBuf) -> Self {
        Updater { data_dir, reexec: Arc::new(ProcessReexec) }
    }

    /// Where a download goes while it is under way.
    pub fn partial(&self) -> PathBuf {
        self.data_dir.join("agent-update.partial")
    }

    /// Where a checked binary is kept and run from.
    pub fn staged(&self) -> PathBuf {
        self.data_dir.join("agent-update")
    }
}

/// Writes a download to a file while hashing it.
pub struct Sink {
    file: std::fs::File,
    hasher: Sha256,
    size: u64,
}

impl Sink {
    /// A new, empty file at `path` (any earlier one is replaced).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let _ = std::fs::remove_file(path);
        Ok(Sink { file: std::fs::File::create(path)?, hasher: Sha256::new(), size: 0 })
    }

    pub fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file.write_all(chunk)
    }

    /// Flushes the file to disk and closes it: its SHA-256 and size.
    pub fn finish(self) -> std::io::Result<(String, u64)> {
        self.file.sync_all()?;
        Ok((hex(&self.hasher.finalize()), self.size))
    }
}

/// Makes a staged binary executable and moves it to `to`.
pub fn install(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(from, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_hashes_as_sha256_and_a_sink_agrees() {
        let dir = std::env::temp_dir().join(format!("gantry-update-hash-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        // SHA-256 of "abc", FIPS 180-2's example.
        std::fs::write(&path, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(file_sha256(&path).unwrap(), (abc.to_string(), 3));
        let mut sink = Sink::create(&dir.join("g")).unwrap();
        sink.write(b"a").unwrap();
        sink.write(b"bc").unwrap();
        assert_eq!(sink.finish().unwrap(), (abc.to_string(), 3));
        install(&dir.join("g"), &dir.join("h")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join("h")).unwrap().permissions().mode() & 0o777, 0o755);
        assert!(!dir.join("g").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
