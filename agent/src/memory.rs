//! Giving freed heap memory back to the operating system.
//!
//! glibc keeps what a burst of work freed (a backlog shipped, 10,000 new
//! files scanned) in its arenas for reuse: an idle agent tailing 10,000
//! files held about 13 MiB more than its live heap. Two remedies:
//! - [`use_one_arena`] at start-up: the agent allocates little per line
//!   and mostly on one thread, so per-thread arenas only spread freed
//!   memory over several heaps (idle10k: 26.9 -> 23.1 MiB RSS);
//! - [`release_free_memory`], which the tailing loop calls once when it
//!   goes quiet after being busy.
//!
//! Most of an idle agent's resident memory is not heap but its own machine
//! code: the kernel maps up to 64 KiB of a file around every page fault
//! ("fault-around"), so start-up (config parsing, regex compilation, TLS
//! set-up) leaves most of the executable's 5 MiB of code mapped. Those
//! pages are clean copies of the file; [`release_code_pages`] drops the
//! mappings when the agent goes quiet and again every so often while it
//! stays quiet (what a rescan or a closing connection ran is dropped too),
//! and what the idle loop runs comes back on its next fault, from the
//! page cache.
//!
//! Why unsafe here, against the workspace's `unsafe_code = "deny"`: these are
//! calls into the C library the process already runs on; `mallopt` and
//! `malloc_trim` take no arguments that could be wrong, and `madvise` is
//! given only ranges read from `/proc/self/smaps` that hold no private data.
#![allow(unsafe_code)]

/// Makes every thread allocate from glibc's main arena (`M_ARENA_MAX` = 1);
/// call before any thread starts. A no-op with other C libraries.
pub fn use_one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers; M_ARENA_MAX only caps how many
    // arenas glibc creates later, it moves no memory.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns free heap pages to the kernel (glibc's `malloc_trim`); a no-op
/// with other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a padding size only and may be called at any
    // time from any thread; it only releases memory no allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Drops this process's mappings of its executable's code and read-only
/// data: the mappings with no write permission and no private copy of a
/// page (so the file holds exactly their content). Accesses afterwards
/// fault the pages back from the page cache. The executable itself, not
/// shared libraries: the kernel refuses writes to a running executable
/// (`ETXTBSY`), so what comes back is what was dropped. A no-op where
/// `/proc/self/smaps` cannot be read.
pub fn release_code_pages() {
    #[cfg(target_os = "linux")]
    {
        // Read each time, not cached: a debugger's breakpoint or a uprobe
        // makes a private copy of a code page later, which must not be
        // dropped. The loop calls this at most every few seconds.
        let (Ok(exe), Ok(smaps)) = (
            std::fs::read_link("/proc/self/exe"),
            std::fs::read_to_string("/proc/self/smaps"),
        ) else {
            return;
        };
        let Some(exe) = exe.to_str() else { return };
        for (start, end) in clean_read_only_mappings(&smaps, exe) {
            // SAFETY: [start, end) is a whole mapping of the executable that
            // is not writable and holds no private copy of a page, so
            // MADV_DONTNEED discards nothing the file does not hold; the
            // range stays mapped and faults back in on access.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }
}

/// The address ranges in `smaps` (the text of `/proc/self/smaps`) of
/// mappings of `path` that are readable, not writable, and have no
/// anonymous page. A private copy of a page (a relocation, a debugger's
/// breakpoint) counts as anonymous; a dirty page is not enough to exclude
/// a mapping, because a file not yet written back (a binary just built) is
/// dirty in the page cache, yet its content is the file's.
fn clean_read_only_mappings(smaps: &str, path: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    // The mapping being read: its range, and whether it still qualifies.
    let mut current: Option<(usize, usize, bool)> = None;
    let mut finish = |current: &mut Option<(usize, usize, bool)>| {
        if let Some((start, end, true)) = current.take() {
            found.push((start, end));
        }
    };
    for line in smaps.lines() {
        if let Some((range, rest)) = line.split_once(' ')
            && let Some((start, end)) = range.split_once('-')
            && let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16))
        {
            // A mapping header: "start-end perms offset dev inode path".
            finish(&mut current);
            let mut fields = rest.split_ascii_whitespace();
            let perms = fields.next().unwrap_or("");
            let name = fields.nth(3).unwrap_or("");
            let readable_only = perms.starts_with('r') && perms.as_bytes().get(1) == Some(&b'-');
            current = Some((start, end, readable_only && name == path && end > start));
            continue;
        }
        let Some((_, _, qualifies)) = current.as_mut() else {
            continue;
        };
        if let Some((field, value)) = line.split_once(':')
            && field == "Anonymous"
        {
            let kib = value.trim().trim_end_matches("kB").trim();
            *qualifies &= kib == "0";
        }
    }
    finish(&mut current);
    found
}

#[cfg(test)]
mod tests {
    use super::clean_read_only_mappings;

    const SMAPS: &str = "\
55e283400000-55e283500000 r--p 00000000 fd:01 123 /usr/bin/logpost-agent
Rss:                1088 kB
Private_Dirty:       132 kB
Anonymous:             0 kB
55e283500000-55e283a00000 r-xp 00100000 fd:01 123 /usr/bin/logpost-agent
Rss:                4032 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
55e283a00000-55e283a80000 r--p 00600000 fd:01 123 /usr/bin/logpost-agent
Private_Dirty:       412 kB
Anonymous:           412 kB
55e283a80000-55e283a90000 rw-p 00680000 fd:01 123 /usr/bin/logpost-agent
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000000000-7f0000100000 r-xp 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
Private_Dirty:         0 kB
Anonymous:             0 kB
7ffce585e000-7ffce5860000 r-xp 00000000 00:00 0 [vdso]
Private_Dirty:         0 kB
";

    #[test]
    fn only_clean_read_only_mappings_of_the_executable_qualify() {
        let found = clean_read_only_mappings(SMAPS, "/usr/bin/logpost-agent");
        // Not the relocated (dirty) read-only segment, not the writable
        // data, not libc, not the vdso.
        assert_eq!(
            found,
            vec![
                (0x55e2_8340_0000, 0x55e2_8350_0000),
                (0x55e2_8350_0000, 0x55e2_83a0_0000)
            ]
        );
    }

    #[test]
    fn a_mapping_that_gained_a_private_page_is_left_alone() {
        let smaps = SMAPS.replacen(
            "Anonymous:             0 kB\n55e283a00000",
            "Anonymous:             4 kB\n55e283a00000",
            1,
        );
        let found = clean_read_only_mappings(&smaps, "/usr/bin/logpost-agent");
        assert_eq!(found, vec![(0x55e2_8340_0000, 0x55e2_8350_0000)]);
        assert!(clean_read_only_mappings("garbage\n-\nzz-yy r-xp\n", "/usr/bin/logpost-agent").is_empty());
    }
}
