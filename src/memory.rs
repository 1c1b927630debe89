//! How the process holds its memory: the routing snapshot's large arrays on transparent huge
//! pages, and the pages a rebuild frees handed back to the system.
//!
//! Both are about the snapshot at platform size. A million routes are ~200 MiB of flat arrays
//! (route entries, the index's hash table, names and patterns), and every call reads a few
//! entries of them at random. On 4 KiB pages nearly each of those reads also misses the TLB,
//! and the page walk that follows costs about as much as the read itself (more in a virtual
//! machine, whose walks go through two levels of tables). 2 MiB pages make the walks short and
//! mostly cached; in alternating runs `resolve` at 1,000,000 routes was ~20 % faster with them
//! (BENCHMARKS.md). Distributions default transparent huge pages to `madvise`, so a process
//! only gets them where it asks.

use std::alloc::{GlobalAlloc, Layout, System};

/// The size of an x86-64 / arm64 transparent huge page.
const HUGE_PAGE: usize = 2 * 1024 * 1024;

/// Blocks from this size on are advised: whatever their alignment, they contain at least one
/// whole huge page. Below it sit the many small allocations, which are left alone.
const ADVISE_FROM: usize = 2 * HUGE_PAGE;

/// The system allocator, asking the kernel for huge pages on the whole 2 MiB pages inside
/// each block of [`ADVISE_FROM`] bytes or more. In practice those blocks are the snapshot's
/// arrays: no request or API call allocates megabytes.
///
/// Installed by the `trunkline` binary and by the benchmarks (`#[global_allocator]`), so the
/// figures are those of the service. glibc usually serves such blocks with a fresh `mmap`, and
/// the advice is given before anything is written to them, so the pages are huge from their
/// first touch (no wait for `khugepaged`). Only the whole huge pages inside a block are advised, so
/// no memory outside it is ever backed on its account.
pub struct LargeBlocksOnHugePages;

// SAFETY: every method hands the request to `System` unchanged and returns its answer; the
// advice only changes how the kernel backs pages of a block `System` just gave us.
unsafe impl GlobalAlloc for LargeBlocksOnHugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `System::alloc`'s.
        let block = unsafe { System.alloc(layout) };
        advise_huge_pages(block, layout.size());
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let block = unsafe { System.alloc_zeroed(layout) };
        advise_huge_pages(block, layout.size());
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: `block` came from `System` through this allocator, with this layout.
        unsafe { System.dealloc(block, layout) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is the caller's, checked by its contract.
        let moved = unsafe { System.realloc(block, layout, new_size) };
        // A growing `Vec` reallocates: the new block (moved or grown in place) is advised again,
        // which costs one system call per doubling.
        advise_huge_pages(moved, new_size);
        moved
    }
}

/// Asks for huge pages on the whole 2 MiB pages inside `[block, block + size)`. Advice only:
/// on a kernel without transparent huge pages the call fails and nothing changes.
fn advise_huge_pages(block: *mut u8, size: usize) {
    if block.is_null() || size < ADVISE_FROM {
        return;
    }
    let start = (block as usize).next_multiple_of(HUGE_PAGE);
    let end = (block as usize + size) / HUGE_PAGE * HUGE_PAGE;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `[start, end)` lies inside the block just allocated, page-aligned, non-empty
    // (size ≥ two huge pages). MADV_HUGEPAGE changes how its pages are backed, never what they
    // hold, and touches no other memory.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (start, end);
}

/// Hands the memory a rebuild freed back to the operating system. glibc keeps freed small
/// blocks in its heap for reuse, and a rebuild frees a whole dataset of them (every route's
/// strings as loaded from the database, then the previous snapshot): at a million routes that
/// is hundreds of MiB the process would keep resident until the next rebuild reused them
/// (BENCHMARKS.md, snapshot memory).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only returns free heap pages to the kernel; it
    // is thread-safe (it takes each arena's lock).
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// The `VmFlags` of the mapping of this process that contains `address`.
    fn vm_flags(address: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((from, to)) = range.split_once('-')
                && let (Ok(from), Ok(to)) = (
                    usize::from_str_radix(from, 16),
                    usize::from_str_radix(to, 16),
                )
            {
                inside = (from..to).contains(&address);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.trim().to_string();
            }
        }
        panic!("no mapping contains {address:#x}");
    }

    fn has_huge_page_advice(address: usize) -> bool {
        vm_flags(address).split(' ').any(|flag| flag == "hg")
    }

    #[test]
    fn a_large_block_is_advised_and_keeps_its_contents_when_it_grows() {
        let allocator = LargeBlocksOnHugePages;
        let layout = Layout::from_size_align(8 * HUGE_PAGE, 8).unwrap();
        // SAFETY: a non-zero layout; the block is written within its size, then freed with the
        // layout it has at that point.
        unsafe {
            let block = allocator.alloc(layout);
            assert!(!block.is_null());
            let first_whole_page = (block as usize).next_multiple_of(HUGE_PAGE);
            assert!(has_huge_page_advice(first_whole_page));
            for i in (0..layout.size()).step_by(4096) {
                *block.add(i) = (i / 4096) as u8;
            }
            let grown = allocator.realloc(block, layout, 16 * HUGE_PAGE);
            assert!(!grown.is_null());
            for i in (0..layout.size()).step_by(4096) {
                assert_eq!(*grown.add(i), (i / 4096) as u8);
            }
            let last_whole_page = (grown as usize + 16 * HUGE_PAGE) / HUGE_PAGE * HUGE_PAGE;
            assert!(has_huge_page_advice(last_whole_page - HUGE_PAGE));
            allocator.dealloc(grown, Layout::from_size_align(16 * HUGE_PAGE, 8).unwrap());
        }
    }

    #[test]
    fn only_blocks_holding_two_huge_pages_are_advised() {
        // A mapping of our own, so no other allocation shares its flags.
        let size = 4 * HUGE_PAGE;
        // SAFETY: an anonymous private mapping, unmapped at the end; nothing else uses it.
        unsafe {
            let mapping = libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(mapping, libc::MAP_FAILED);
            let block = mapping.cast::<u8>();
            let first_whole_page = (block as usize).next_multiple_of(HUGE_PAGE);
            advise_huge_pages(block, ADVISE_FROM - 1);
            assert!(!has_huge_page_advice(first_whole_page));
            advise_huge_pages(block, size);
            assert!(has_huge_page_advice(first_whole_page));
            libc::munmap(mapping, size);
        }
    }
}
