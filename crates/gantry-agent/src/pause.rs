//! The namespace holder of awsvpc tasks: a container that does nothing, forever, whose network
//! namespace the task's containers join (so they share one IP and reach each other on
//! localhost), as the ECS agent's pause container does.
//!
//! No registry is needed: the image is a single static ELF executable of a few dozen bytes,
//! written here and imported into the engine as a one-file image.

/// The image the agent imports and runs as each awsvpc task's namespace holder.
pub const PAUSE_IMAGE: &str = "gantry/pause:1";

/// The container name under which the holder is labelled (not a valid ECS container name, so
/// it never collides with one).
pub const PAUSE_NAME: &str = "~pause";

/// A static executable that sleeps until it is killed, for this machine's architecture.
pub fn pause_executable() -> Option<Vec<u8>> {
    let (machine, code): (u16, Vec<u8>) = match std::env::consts::ARCH {
        // loop: mov eax, 34 (pause); syscall; jmp loop
        "x86_64" => (0x3e, vec![0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7]),
        // loop: x0..x3 = 0; x8 = 73 (ppoll); svc #0; b loop
        "aarch64" => {
            let words: [u32; 7] =
                [0xd2800000, 0xd2800001, 0xd2800002, 0xd2800003, 0xd2800928, 0xd4000001, 0x17fffffa];
            (0xb7, words.iter().flat_map(|w| w.to_le_bytes()).collect())
        }
        _ => return None,
    };
    const BASE: u64 = 0x400000;
    const HEADERS: u64 = 64 + 56;
    let size = HEADERS + code.len() as u64;
    let mut elf = Vec::with_capacity(size as usize);
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&machine.to_le_bytes());
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // program headers
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 0, 0, 0] {
        elf.extend_from_slice(&v.to_le_bytes());
    }
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // R+X
    elf.extend_from_slice(&0u64.to_le_bytes());
    elf.extend_from_slice(&BASE.to_le_bytes());
    elf.extend_from_slice(&BASE.to_le_bytes());
    elf.extend_from_slice(&size.to_le_bytes());
    elf.extend_from_slice(&size.to_le_bytes());
    elf.extend_from_slice(&0x1000u64.to_le_bytes());
    elf.extend_from_slice(&code);
    Some(elf)
}

/// A tar archive holding one executable file, `/pause`: the root filesystem of the image.
pub fn pause_rootfs() -> Option<Vec<u8>> {
    let exe = pause_executable()?;
    let mut header = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, s: &[u8]| h[at..at + s.len()].copy_from_slice(s);
    put(&mut header, 0, b"pause");
    put(&mut header, 100, b"0000755\0");
    put(&mut header, 108, b"0000000\0");
    put(&mut header, 116, b"0000000\0");
    put(&mut header, 124, format!("{:011o}\0", exe.len()).as_bytes());
    put(&mut header, 136, b"00000000000\0");
    put(&mut header, 148, b"        ");
    header[156] = b'0';
    put(&mut header, 257, b"ustar\0");
    put(&mut header, 263, b"00");
    let sum: u32 = header.iter().map(|b| *b as u32).sum();
    put(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(&exe);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.extend_from_slice(&[0u8; 1024]);
    Some(tar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tar_is_well_formed() {
        let tar = pause_rootfs().expect("supported architecture");
        assert_eq!(tar.len() % 512, 0);
        assert_eq!(&tar[257..262], b"ustar");
        let size = usize::from_str_radix(std::str::from_utf8(&tar[124..135]).unwrap(), 8).unwrap();
        assert_eq!(&tar[512..512 + size], &pause_executable().unwrap()[..]);
        let stored: u32 = u32::from_str_radix(std::str::from_utf8(&tar[148..154]).unwrap(), 8).unwrap();
        let mut h = tar[..512].to_vec();
        h[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, h.iter().map(|b| *b as u32).sum::<u32>());
    }

    /// The executable really runs, and sleeps until killed.
    #[test]
    fn the_executable_sleeps_until_killed() {
        let dir = std::env::temp_dir().join(format!("gantry-pause-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pause");
        std::fs::write(&path, pause_executable().unwrap()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = std::process::Command::new(&path).spawn().unwrap();
        // It reaches its sleep (state S in /proc) rather than exiting or crashing.
        let stat = format!("/proc/{}/stat", child.id());
        let mut asleep = false;
        for _ in 0..10_000 {
            assert!(child.try_wait().unwrap().is_none(), "the pause executable exited");
            let s = std::fs::read_to_string(&stat).unwrap_or_default();
            if s.rsplit(") ").next().is_some_and(|rest| rest.starts_with('S')) {
                asleep = true;
                break;
            }
            std::thread::yield_now();
        }
        assert!(asleep, "the pause executable never went to sleep");
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
