/* SPDX-License-Identifier: MIT */
/* azfilesfs ($AZFILESFS) mounted against a real azfiles-emu, one TCase per behaviour promised in
 * fusefs/SEMANTICS.md:
 *
 *   ops            create/write/read, stat, truncate (shrink and extend), utimens, mkdir, readdir,
 *                  rename (also over a file), unlink, rmdir, statfs, and the errnos of the share
 *                  (ENOENT, EEXIST, ENOTEMPTY, ENOTDIR); each result checked on the share over REST
 *   unsupported    link, symlink, mknod, chown to another user, RENAME_EXCHANGE: EPERM / EINVAL
 *   names          spaces and non-ASCII names, exactly as written, on the mount and the share
 *   refused_names  names the share refuses (: * ? " < > | \\, control characters, DOS device
 *                  names, bytes that are not UTF-8) and names it would rewrite (a trailing dot:
 *                  "foo." is "foo" there) fail with EINVAL at once, in a directory whose names
 *                  are known (made here) as in one that is not, for create, mkdir and rename:
 *                  nothing stays dirty, "foo" keeps its bytes; a size past the share's 4 TiB is
 *                  EFBIG at ftruncate() and write(), not at close()
 *   case           case-insensitive, case-preserving: another case opens the same file, O_EXCL
 *                  with another case is EEXIST, the listing keeps the first spelling
 *   remount        data, directories and chmod +x survive an unmount and a new mount; setuid
 *                  and setgid are dropped at creat and chmod and not shown from the share; a
 *                  time before 1970 with a fraction shows with a tv_nsec that is not negative;
 *                  chmod keeps the metadata other tools set
 *   many_metadata  a file and a directory with 300 metadata pairs another tool set: stat and
 *                  chmod through the mount work, and the chmod keeps every pair
 *   close_to_open  two mounts of one share (two VMs): a change closed on A is seen at the next
 *                  open on B, after B had the old content cached
 *   kind_conflict  a file A holds open, not on the share yet, and a directory of that name
 *                  made on B: A's listing keeps A's file, its close() fails and keeps the data,
 *                  which reaches the share once B removed the directory
 *   shrunk_elsewhere  a file cut short on A while B has it open: B's read of a range gone from
 *                  the share fails with EIO (it returned zeros), and B's next open sees the
 *                  new size and the bytes that are left
 *   attr_cache     the kernel keeps files' attributes (attr_timeout): B's open after A made the
 *                  file longer still reads all of it (the open drops the kernel's size); a file
 *                  renamed into Users/<name> shows its private mode at once; a size changed on A
 *                  is seen by stat() on B within B's attr_timeout
 *   flush          the flush xattrs (dirty_bytes, stats JSON, listxattr, flush), write-back mode
 *   failures       share failing: close() reports the error and keeps the data dirty; the flush
 *                  xattr times out (ETIMEDOUT) within its bound; once the share is back, flush
 *                  uploads everything; a listing whose NextMarker repeats fails with EIO
 *   caps           max_dirty makes writers wait (an error when uploads fail), cache_size evicts
 *   deleted_over_cap  a file deleted while open, written past max_dirty through its descriptor:
 *                  the writes end (the writer waited for an upload that never came)
 *   deleted_async  writeback=async: a file deleted while open, written and closed: its cache
 *                  file goes at the next tick (the file stayed, its cache file open, for good)
 *   small_files    small files count their size against cache_size and max_dirty (plus 64 KiB
 *                  each there), not a 4 MiB piece: 40 of 1 KiB stay dirty without an upload
 *                  and stay cached after it; 200 more still make writers wait
 *   cache_files    with a limit of 600 open files the cache keeps at most 300 files (each holds
 *                  its cache file open), writers wait for uploads beyond 300 with unsynced
 *                  data; 700 written in writeback=async, flushed and read back
 *   reclaim        the reclaim xattr drops clean cache files (LRU first, by the amount asked),
 *                  never dirty data or open files; data reads back from the share; racing reads
 *   readahead      cold reads from the share: the first read fetches its piece and 4 ahead, a
 *                  whole read each piece once (bytes and SHA-256 the share's), a random read
 *                  only its piece, failed and cut-short Get Files retried
 *   offline        share gone: cached reads work, the rest fails within the bound, nothing hangs
 *   crash          kill -9 with unsynced data, a new mount uploads it
 *   requests       ls -l of 200 entries on a fresh mount: one List and no request per entry
 *                  (modes right); a small file's cost
 *   auth           the same share through a SAS token and a managed identity (IMDS token);
 *                  IMDS not answering: the mount comes up and an operation fails within
 *                  retry_budget (both waited for the token's own 60 s)
 *   cli            refused credentials files (mode, missing), unknown options, --help, --version
 *   create_in_flight  rename, chmod, unlink of a new file (and rename of its directory) while
 *                  its first upload's Create File is in flight: all succeed, the share is right
 *   queued_unlink  a close() waiting for its file's turn to upload (64 files uploading, so it
 *                  queues), then the file is deleted: the close() is answered (0) when the queue
 *                  gets to it (it was never answered, and its caller hung)
 *   rename_over_upload  rename of a file over one (and unlink of one) whose upload's Put Range
 *                  is in flight: the late Put Range does not write into the renamed file
 *   rename_upload_starts  an upload of the destination, or of the source, asked for while the
 *                  Rename File is in flight (done by the share, not answered yet): the share
 *                  holds exactly the new bytes under the new name, nothing under the old
 *   unlink_upload_starts  an upload of a file asked for while its Delete File is in flight
 *                  (done by the share, not answered yet): the file does not come back
 *   replaced_open_attrs  fchmod and futimens of an open file replaced by a rename, or deleted:
 *                  the file that has the name on the share keeps its mode and time; a read of
 *                  a range not cached of a replaced file is EIO, not the new file's bytes
 *   busy_writer    a file a writer keeps dirty, uploads slowed: a reader's close() ends
 *                  within 30 s (it waited for the file to be clean), so does a rename, and
 *                  every byte written reaches the share under the new name
 *   utimens_create_in_flight  utimensat of a new file while its Create File is in flight: the
 *                  time reaches the share
 *   truncate_mtime a change of size alone sets the share's last-write time: truncate(2), O_TRUNC
 *                  (now), ftruncate() then futimens() (the time set); each kept the old time
 *   wt_at_limit    a sequential writer ending at 4 TiB: no upload fails (write-through grew
 *                  the share's file past the limit, and each round failed with EFBIG)
 *   stale_after_upload  another VM's change to a piece cached here, then an upload here of another
 *                  piece: the next open reads the change, a write into that piece keeps it; a
 *                  file written here whole keeps its cache at the next open (no Get File)
 *   flush_pipeline a flush of 66 dirty pieces: one Get File Properties (ETag), exact bytes
 *   write_through  default mode: pieces a writer moved past reach the share before close(); one
 *                  written again after that is uploaded again; close() leaves nothing dirty
 *   fd_limit       started with a soft limit of 128 open files: 400 small files in
 *                  writeback=async written, flushed and on the share (azfilesfs raises the limit)
 *   write_only     a file opened write-only skips the kernel's page cache (direct I/O): what it
 *                  writes is seen at once through another descriptor that had read the old
 *                  bytes, and through that one's shared mapping; O_RDWR still maps shared
 *   write_only_race  a read of the range while such a write waits (over max_dirty) brings the old
 *                  bytes back into the page cache; no read after the write sees them
 *   inval_deadlock  a write-only descriptor's write waiting for the fetch of its piece, and a
 *                  read of the same page waiting for it after: both end (the daemon's I/O thread
 *                  waited for the read's locked pages for ever), the new bytes read and on the
 *                  share
 *   read_gone      a file deleted (or replaced by a rename here) while open, read and closed
 *                  at once, 3,500 times: the daemon stays up (it looked the file up after the
 *                  read's reply, when the kernel may have forgotten it, and aborted)
 *   replaced_fetch_in_flight  a Get Range on its way when another file is renamed over the
 *                  open one: the read does not return the new file's bytes
 *   covered_cap_fail  a write covering a short last piece whole waits, then fails under
 *                  max_dirty: a later write into that piece does not upload zeros over the share
 *   concurrent_writers  four writers into one file at once (interleaved stripes, unaligned
 *                  writes, direct and buffered descriptors, fsync() now and then, Put Ranges
 *                  slowed), in the default mode and in writeback=async: the share holds every
 *                  byte each wrote
 *   reset_race     reads through a descriptor kept open while B writes new versions and A opens
 *                  the file again after each (its cache reset): every read whole, never zeros
 *   shrink_after_failed_round  an upload that failed at its end, its Create File and Put Ranges
 *                  done: the file cut to 0 and made as long again here, then fsync(): the share
 *                  holds zeros, not the old bytes (the failed round had left the share's size
 *                  as it was before it, so the cut was no shrink)
 *   truncate_open_race  truncate(2) of a closed file while another process opens it (the open
 *                  answered before the Set File Properties): the open file has the new size and
 *                  reads the bytes left, a write at the old end does not bring the cut bytes
 *                  back to the share
 *   dir_became_file  a directory A knows made a file on B: A finds the file once its kernel
 *                  asks again, never ENOENT (it asked for a directory only, and its name set
 *                  repeated the ENOENT for dir_timeout)
 *   stale_dirhandle  a directory opened, renamed here, then listed: the listing is of where it
 *                  is now (it listed the old path and took that for its names)
 *   truncate_fetch_fail, truncate_fetch_fail_mid  a Get Range of the second 4 MiB piece on its
 *                  way (slowed), the file cut to 0 (or into that piece) meanwhile, then the
 *                  fetch failing after part of its body landed in the cache file (bodies cut
 *                  short, retries run out); the file made 8 MiB long again, a byte written: it
 *                  reads zeros past the cut, and so does the share after fsync() (the failed
 *                  fetch's bytes stayed, were read back and uploaded)
 *   busy_sequential_writer  a file written sequentially faster than write-through uploads it:
 *                  a reader's close() ends within 20 s, what was written before it on the
 *                  share (it waited until the writer stopped)
 *   flush_all_dropped  the flush xattr waiting only for a file whose data is then dropped (it
 *                  is deleted before its upload): it returns 0 at once, not ETIMEDOUT at the
 *                  end of its time
 *
 * Runs in a private mount namespace; root and /dev/fuse needed (else 77); fails without
 * $AZFILESFS. Every mount is unmounted and its daemon waited for, also on failure (fixture). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "base64-util.h"
#include "fs-harness.h"
#include "macro.h"
#include "sas.h"

#define SHARE "basic"

static EmuInstance *emu;
/* Paths handed out by P() live until the test's teardown. */
static char *paths[512];
static size_t n_paths;
static FsMount *mnt, *mnt_b;

static void setup(void) {
        umask(022);
        ck_assert_int_eq(fs_harness_enter_namespace(), 0);
        ck_assert_int_eq(emu_instance_start(NULL, NULL, &emu), 0);
        ck_assert_int_eq(fs_share_create(emu, SHARE), 0);
}

static void teardown(void) {
        while (n_paths > 0)
                free(paths[--n_paths]);
        mnt = fs_mount_free(mnt);
        mnt_b = fs_mount_free(mnt_b);
        emu = emu_instance_free(emu);
}

static void dump_log(FsMount *m) {
        _cleanup_free_ char *tail = m ? fs_mount_log_tail(m, 4000) : NULL;
        if (tail)
                fprintf(stderr, "--- azfilesfs log (tail) ---\n%s\n", tail);
}

static FsMount *mount_with(const char *cache_dir, const char *options) {
        FsMount *m = NULL;
        int r = fs_mount_new(emu, SHARE, cache_dir, options, &m);
        ck_assert_msg(r == 0, "mount: %s", strerror(-r));
        return m;
}

static void remount(FsMount *m) {
        int r = fs_mount_stop(m);
        if (r != 0)
                dump_log(m);
        ck_assert_msg(r == 0, "unmount: %d", r);
        r = fs_mount_start(m);
        if (r != 0)
                dump_log(m);
        ck_assert_msg(r == 0, "remount: %s", strerror(-r));
}

static const char *P(FsMount *m, const char *rel) {
        char *p = fs_mount_path(m, rel);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_lt(n_paths, ELEMENTSOF(paths));
        paths[n_paths++] = p;
        return p;
}

static void write_file(const char *path, const char *data) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ck_assert_msg(fd >= 0, "open %s: %m", path);
        ck_assert_int_eq(write(fd, data, strlen(data)), (ssize_t)strlen(data));
        ck_assert_msg(close(fd) == 0, "close %s: %m", path);
}

static char *read_file(const char *path) {
        static char buf[65536];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        ck_assert_msg(fd >= 0, "open %s: %m", path);
        n = read(fd, buf, sizeof(buf) - 1);
        ck_assert_msg(n >= 0, "read %s: %m", path);
        buf[n] = '\0';
        (void)close(fd);
        return buf;
}

static void check_share(const char *rel, const char *want) {
        _cleanup_free_ char *data = NULL;
        size_t size = 0;
        int r = fs_share_read(emu, SHARE, rel, &data, &size);
        ck_assert_msg(r == 0, "share read %s: %s", rel, strerror(-r));
        ck_assert_msg(
                size == strlen(want) && memcmp(data, want, size) == 0, "share %s differs", rel);
}

/* The share holds exactly size bytes of want (which may hold NULs). */
static void check_share_bytes(const char *rel, const char *want, size_t want_size) {
        _cleanup_free_ char *data = NULL;
        size_t size = 0;
        int r = fs_share_read(emu, SHARE, rel, &data, &size);
        ck_assert_msg(r == 0, "share read %s: %s", rel, strerror(-r));
        ck_assert_msg(size == want_size && memcmp(data, want, size) == 0, "share %s differs", rel);
}

/* On an open file whose content is on the share: shrink to 0, grow to 16, close. Nothing was
 * written, so no piece is dirty: the share must hold 16 zeros, not the old bytes. */
static void shrink_grow(const char *path) {
        int fd = open(path, O_RDWR | O_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, 0), 0);
        ck_assert_int_eq(ftruncate(fd, 16), 0);
        ck_assert_int_eq(close(fd), 0);
}

static const char shrunk_grown[16];

static void check_share_absent(const char *rel) {
        _cleanup_free_ char *data = NULL;
        size_t size = 0;
        ck_assert_int_eq(fs_share_read(emu, SHARE, rel, &data, &size), -ENOENT);
}

static int errno_of(int r) {
        return r < 0 ? errno : 0;
}

static bool dir_has(const char *dir, const char *name) {
        DIR *d = opendir(dir);
        struct dirent *de;
        bool found = false;

        ck_assert_msg(d, "opendir %s: %m", dir);
        while ((de = readdir(d)))
                if (streq(de->d_name, name))
                        found = true;
        closedir(d);
        return found;
}

static unsigned dir_count(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        unsigned n = 0;

        ck_assert_msg(d, "opendir %s: %m", dir);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

START_TEST(test_ops) {
        const char *f, *g, *d, *dd, *df, *root;
        struct timespec times[2] = {
                {.tv_sec = 1000000000, .tv_nsec = 0}, {.tv_sec = 1500000000, .tv_nsec = 0}};
        struct statvfs sv;
        struct stat st;

        mnt = mount_with(NULL, NULL);
        root = P(mnt, "");
        f = P(mnt, "f.txt");
        g = P(mnt, "g.txt");
        d = P(mnt, "dir");
        dd = P(mnt, "dir/sub");
        df = P(mnt, "dir/inner.txt");

        write_file(f, "hello world");
        ck_assert_str_eq(read_file(f), "hello world");
        check_share("f.txt", "hello world");
        ck_assert_int_eq(stat(f, &st), 0);
        ck_assert(S_ISREG(st.st_mode));
        ck_assert_int_eq(st.st_size, 11);

        /* shrunk and grown again while open: the old bytes must not come back on the share */
        write_file(g, "old content of g, longer than 16");
        check_share("g.txt", "old content of g, longer than 16");
        shrink_grow(g);
        check_share_bytes("g.txt", shrunk_grown, sizeof(shrunk_grown));
        ck_assert_int_eq(unlink(g), 0);

        /* truncate: shrink, extend (zeros) */
        ck_assert_int_eq(truncate(f, 5), 0);
        check_share("f.txt", "hello");
        ck_assert_int_eq(truncate(f, 8), 0);
        ck_assert_int_eq(stat(f, &st), 0);
        ck_assert_int_eq(st.st_size, 8);
        ck_assert(memcmp(read_file(f), "hello\0\0\0", 8) == 0);

        /* utimens: mtime kept on the share */
        ck_assert_int_eq(utimensat(AT_FDCWD, f, times, 0), 0);
        ck_assert_int_eq(stat(f, &st), 0);
        ck_assert_int_eq(st.st_mtim.tv_sec, 1500000000);

        /* mkdir, EEXIST, readdir */
        ck_assert_int_eq(mkdir(d, 0755), 0);
        ck_assert_int_eq(errno_of(mkdir(d, 0755)), EEXIST);
        ck_assert_int_eq(mkdir(dd, 0755), 0);
        write_file(df, "inner");
        ck_assert(dir_has(root, "f.txt"));
        ck_assert(dir_has(root, "dir"));
        ck_assert(dir_has(d, "sub"));
        ck_assert(dir_has(d, "inner.txt"));
        ck_assert_int_eq(dir_count(d), 2);
        ck_assert_int_eq(stat(d, &st), 0);
        ck_assert(S_ISDIR(st.st_mode));

        /* rmdir of a non-empty directory, unlink of a directory, rmdir of a file */
        ck_assert_int_eq(errno_of(rmdir(d)), ENOTEMPTY);
        ck_assert_int_eq(errno_of(unlink(d)), EISDIR);
        ck_assert_int_eq(errno_of(rmdir(f)), ENOTDIR);

        /* rename: plain, over an existing file (replaced atomically), directory */
        write_file(g, "gee");
        ck_assert_int_eq(rename(g, P(mnt, "g2.txt")), 0);
        check_share_absent("g.txt");
        check_share("g2.txt", "gee");
        ck_assert_int_eq(rename(P(mnt, "g2.txt"), f), 0);
        ck_assert_str_eq(read_file(f), "gee");
        check_share("f.txt", "gee");
        check_share_absent("g2.txt");
        ck_assert_int_eq(rename(d, P(mnt, "dir2")), 0);
        ck_assert_str_eq(read_file(P(mnt, "dir2/inner.txt")), "inner");
        check_share("dir2/inner.txt", "inner");
        ck_assert_int_eq(errno_of(stat(d, &st)), ENOENT);

        /* unlink, ENOENT */
        ck_assert_int_eq(unlink(P(mnt, "dir2/inner.txt")), 0);
        check_share_absent("dir2/inner.txt");
        ck_assert_int_eq(errno_of(unlink(P(mnt, "dir2/inner.txt"))), ENOENT);
        ck_assert_int_eq(errno_of(open(P(mnt, "nope"), O_RDONLY | O_CLOEXEC)), ENOENT);
        ck_assert_int_eq(rmdir(P(mnt, "dir2/sub")), 0);
        ck_assert_int_eq(rmdir(P(mnt, "dir2")), 0);
        ck_assert_int_eq(errno_of(stat(P(mnt, "dir2"), &st)), ENOENT);

        /* writes through a descriptor of a deleted file never reach a new file of that name */
        {
                const char *u = P(mnt, "unlinked.txt");
                int fd;
                write_file(u, "old");
                fd = open(u, O_WRONLY | O_CLOEXEC);
                ck_assert_int_ge(fd, 0);
                ck_assert_int_eq(unlink(u), 0);
                write_file(u, "new file");
                ck_assert_int_eq(pwrite(fd, "XXXXXXXX", 8, 0), 8);
                ck_assert_int_eq(close(fd), 0);
                check_share("unlinked.txt", "new file");
                ck_assert_str_eq(read_file(u), "new file");
        }

        /* statfs: the share's quota */
        ck_assert_int_eq(statvfs(root, &sv), 0);
        ck_assert_uint_gt(sv.f_blocks, 0);
        ck_assert_uint_le(sv.f_bfree, sv.f_blocks);

        /* a file bigger than one 4 MiB piece, written and read in odd sizes */
        {
                const char *big = P(mnt, "big.bin");
                ck_assert_int_eq(fs_write_pattern(big, 7, 9 * 1024 * 1024 + 123, 100000), 0);
                ck_assert_int_eq(fs_check_pattern(big, 7, 9 * 1024 * 1024 + 123), 0);
                remount(mnt);
                ck_assert_int_eq(fs_check_pattern(big, 7, 9 * 1024 * 1024 + 123), 0);
        }
}
END_TEST

static uint64_t counter(const char *op) {
        uint64_t v = 0;
        ck_assert_int_eq(fs_emu_counter(emu, op, false, &v), 0);
        return v;
}

/* Request counts the issue sets: one List per 5,000 entries for ls -l (no request per entry),
 * and a small file written and closed in the default mode costs at most 2 requests. */
START_TEST(test_requests) {
        const char *d;
        uint64_t total;
        struct stat st;
        char name[64];

        /* long local timeouts: the counts must not depend on how fast this machine is */
        mnt = mount_with(NULL, "attr_timeout=600,entry_timeout=600,dir_timeout=600");
        d = P(mnt, "many");
        ck_assert_int_eq(mkdir(d, 0755), 0);
        for (unsigned k = 0; k < 200; k++) {
                (void)snprintf(name, sizeof(name), "many/f%03u", k);
                write_file(P(mnt, name), "x");
        }
        ck_assert_int_eq(chmod(P(mnt, "many/f000"), 0755), 0);
        /* a fresh mount: the listing alone gives every entry (the one with a mode of its own
         * asks for it) */
        remount(mnt);
        ck_assert_int_eq(stat(d, &st), 0);
        ck_assert_int_eq(fs_emu_counter(emu, NULL, true, &total), 0);
        /* ls -l: readdir and a stat of every entry */
        {
                DIR *dir = opendir(d);
                struct dirent *de;
                unsigned n = 0;
                ck_assert_ptr_nonnull(dir);
                while ((de = readdir(dir))) {
                        if (de->d_name[0] == '.')
                                continue;
                        ck_assert_int_eq(
                                fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW), 0);
                        n++;
                }
                closedir(dir);
                ck_assert_uint_eq(n, 200);
        }
        ck_assert_uint_eq(counter("ListDirectoriesAndFiles"), 1);
        ck_assert_uint_le(counter("GetFileProperties"), 1);
        ck_assert_int_eq(fs_emu_counter(emu, NULL, true, &total), 0);
        ck_assert_uint_le(total, 3);
        ck_assert_int_eq(stat(P(mnt, "many/f000"), &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0755);
        ck_assert_int_eq(stat(P(mnt, "many/f001"), &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0644);
        /* a new small file as tar makes it, in a directory listed here within dir_timeout:
         * no request for the lookup; the mode and time set before close go with its Create
         * File, then one Put Range (SEMANTICS.md: creat, lookup) */
        ck_assert_int_eq(fs_emu_counter(emu, NULL, true, &total), 0);
        {
                struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = 1700000000}};
                int fd = open(P(mnt, "many/new"), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                ck_assert_int_ge(fd, 0);
                ck_assert_int_eq(write(fd, "small file", 10), 10);
                ck_assert_int_eq(futimens(fd, ts), 0);
                ck_assert_int_eq(fchmod(fd, 0755), 0);
                ck_assert_int_eq(close(fd), 0);
        }
        ck_assert_uint_eq(counter("CreateFile"), 1);
        ck_assert_uint_eq(counter("PutRange"), 1);
        ck_assert_int_eq(fs_emu_counter(emu, NULL, true, &total), 0);
        ck_assert_uint_eq(total, 2);
        remount(mnt);
        ck_assert_int_eq(stat(P(mnt, "many/new"), &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0755);
        ck_assert_int_eq(st.st_mtim.tv_sec, 1700000000);
        ck_assert_str_eq(read_file(P(mnt, "many/new")), "small file");
}
END_TEST

START_TEST(test_unsupported) {
        const char *f, *g;
        struct stat st;

        mnt = mount_with(NULL, NULL);
        f = P(mnt, "f");
        g = P(mnt, "g");
        write_file(f, "x");
        write_file(g, "y");
        ck_assert_int_eq(errno_of(link(f, P(mnt, "hard"))), EPERM);
        ck_assert_int_eq(errno_of(symlink("f", P(mnt, "sym"))), EPERM);
        ck_assert_int_eq(errno_of(mkfifo(P(mnt, "fifo"), 0644)), EPERM);
        ck_assert_int_eq(errno_of(mknod(P(mnt, "dev"), S_IFCHR | 0644, makedev(1, 3))), EPERM);
        ck_assert_int_eq(errno_of(chown(f, 12345, 12345)), EPERM);
        ck_assert_int_eq(stat(f, &st), 0);
        ck_assert_int_eq(chown(f, st.st_uid, st.st_gid), 0); /* no change: fine */
        ck_assert_int_eq(
                errno_of((int)syscall(SYS_renameat2, AT_FDCWD, f, AT_FDCWD, g, RENAME_EXCHANGE)),
                EINVAL);
        ck_assert_int_eq(errno_of(setxattr(f, "user.x", "1", 1, 0)), ENOTSUP);
        ck_assert_str_eq(read_file(f), "x");
        ck_assert_str_eq(read_file(g), "y");
}
END_TEST

START_TEST(test_names) {
        static const char *const names[] = {"with space.txt",  " leading",   "trailing ",
                                            "Ünïcødé-名前.md", "emoji-😀.py", "ß-straße",
                                            "a.b.c",           "x%41y",      "semi;colon&amp"};
        const char *root;

        mnt = mount_with(NULL, NULL);
        root = P(mnt, "");
        for (size_t k = 0; k < ELEMENTSOF(names); k++) {
                const char *p = P(mnt, names[k]);
                write_file(p, names[k]);
        }
        ck_assert_int_eq(mkdir(P(mnt, "dir with spaces é"), 0755), 0);
        write_file(P(mnt, "dir with spaces é/日本語 file"), "jp");
        remount(mnt);
        for (size_t k = 0; k < ELEMENTSOF(names); k++) {
                const char *p = P(mnt, names[k]);
                ck_assert_msg(dir_has(root, names[k]), "%s not listed", names[k]);
                ck_assert_str_eq(read_file(p), names[k]);
                check_share(names[k], names[k]);
        }
        ck_assert_str_eq(read_file(P(mnt, "dir with spaces é/日本語 file")), "jp");
        check_share("dir with spaces é/日本語 file", "jp");
        ck_assert_int_eq(dir_count(root), ELEMENTSOF(names) + 1);
}
END_TEST

START_TEST(test_case) {
        const char *root;
        struct stat a, b;

        mnt = mount_with(NULL, NULL);
        root = P(mnt, "");
        write_file(P(mnt, "Notebook.ipynb"), "v1");
        /* Another case reaches the same file. */
        ck_assert_str_eq(read_file(P(mnt, "notebook.IPYNB")), "v1");
        ck_assert_int_eq(stat(P(mnt, "Notebook.ipynb"), &a), 0);
        ck_assert_int_eq(stat(P(mnt, "NOTEBOOK.ipynb"), &b), 0);
        ck_assert_int_eq(a.st_ino, b.st_ino);
        /* O_EXCL under another case: it exists. */
        ck_assert_int_eq(
                errno_of(open(
                        P(mnt, "NOTEBOOK.IPYNB"), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)),
                EEXIST);
        /* Writing through another case changes the one file; the first spelling stays. */
        write_file(P(mnt, "NOTEBOOK.IPYNB"), "v2");
        ck_assert_str_eq(read_file(P(mnt, "Notebook.ipynb")), "v2");
        ck_assert_int_eq(dir_count(root), 1);
        remount(mnt);
        ck_assert(dir_has(root, "Notebook.ipynb"));
        ck_assert_int_eq(dir_count(root), 1);
        check_share("Notebook.ipynb", "v2");
        /* mkdir of a case variant of an existing directory */
        ck_assert_int_eq(mkdir(P(mnt, "Data"), 0755), 0);
        ck_assert_int_eq(errno_of(mkdir(P(mnt, "DATA"), 0755)), EEXIST);
}
END_TEST

/* Names that differ only in the case of non-ASCII letters are one name on the share, as ASCII
 * ones are: in writeback=async, a file created here and not yet on the share is found under
 * another spelling (the share cannot be asked: it does not know the file yet), O_EXCL of it is
 * EEXIST, and writes through either spelling go to the one file. */
START_TEST(test_case_unicode) {
        struct stat a, b;

        mnt = mount_with(NULL, "writeback=async,async_delay=3600");
        write_file(P(mnt, "Über.txt"), "first");
        ck_assert_int_eq(
                errno_of(open(P(mnt, "über.txt"), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)),
                EEXIST);
        ck_assert_int_eq(stat(P(mnt, "Über.txt"), &a), 0);
        ck_assert_int_eq(stat(P(mnt, "über.TXT"), &b), 0);
        ck_assert_int_eq(a.st_ino, b.st_ino);
        ck_assert_str_eq(read_file(P(mnt, "üBER.txt")), "first");
        write_file(P(mnt, "ÜBER.txt"), "second");
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_int_eq(dir_count(P(mnt, "")), 1);
        check_share("Über.txt", "second");
        /* Greek (a final sigma's upper case is Σ), Cyrillic */
        ck_assert_int_eq(mkdir(P(mnt, "Σχέδια"), 0755), 0);
        ck_assert_int_eq(errno_of(mkdir(P(mnt, "σχέδια"), 0755)), EEXIST);
        write_file(P(mnt, "ΈΡΓΟΣ"), "work");
        ck_assert_str_eq(read_file(P(mnt, "έργος")), "work");
        write_file(P(mnt, "Σχέδια/Отчёт"), "report");
        ck_assert_str_eq(read_file(P(mnt, "ΣΧΈΔΙΑ/отчёт")), "report");
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        check_share("Σχέδια/Отчёт", "report");
}
END_TEST

/* Another VM changes a piece this mount has cached, then this mount uploads a change to another
 * piece: the next open here reads the other VM's bytes, and a write into that piece keeps them.
 * The upload learnt the ETag of the share's whole file (the other VM's change in it) and took
 * it for the cache's: the stale piece was served at the next open, and a write into it
 * uploaded it over the other VM's bytes. */
START_TEST(test_stale_after_upload) {
        const size_t mib = 1024 * 1024, size = 12 * mib;
        static char buf[4 * 1024 * 1024];
        _cleanup_free_ char *share = NULL;
        size_t got = 0;
        int fd;

        mnt = mount_with(NULL, NULL);
        mnt_b = mount_with(NULL, NULL);
        memset(buf, '1', sizeof(buf));
        fd = open(P(mnt_b, "f"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        for (size_t off = 0; off < size; off += sizeof(buf))
                ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), (off_t)off), (ssize_t)sizeof(buf));
        ck_assert_int_eq(close(fd), 0);
        /* Here: every piece cached, the file open. */
        fd = open(P(mnt, "f"), O_RDWR | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        for (size_t off = 0; off < size; off += sizeof(buf))
                ck_assert_int_eq(pread(fd, buf, sizeof(buf), (off_t)off), (ssize_t)sizeof(buf));
        /* The other VM rewrites the third piece, and closes. */
        {
                int fd2 = open(P(mnt_b, "f"), O_WRONLY | O_CLOEXEC);
                ck_assert_int_ge(fd2, 0);
                memset(buf, '2', sizeof(buf));
                ck_assert_int_eq(pwrite(fd2, buf, sizeof(buf), 8 * mib), (ssize_t)sizeof(buf));
                ck_assert_int_eq(close(fd2), 0);
        }
        /* Here: a change to the first piece, uploaded at close. */
        ck_assert_int_eq(pwrite(fd, "x", 1, 0), 1);
        ck_assert_int_eq(close(fd), 0);
        fd = open(P(mnt, "f"), O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pread(fd, buf, 4, 8 * mib), 4);
        ck_assert_msg(memcmp(buf, "2222", 4) == 0, "the other VM's piece reads \"%.4s\"", buf);
        ck_assert_int_eq(close(fd), 0);
        fd = open(P(mnt, "f"), O_WRONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pwrite(fd, "y", 1, 8 * mib + 100), 1);
        ck_assert_int_eq(close(fd), 0);
        ck_assert_int_eq(fs_share_read(emu, SHARE, "f", &share, &got), 0);
        ck_assert_uint_eq(got, size);
        ck_assert_int_eq(share[0], 'x');
        ck_assert_int_eq(share[4 * mib], '1');
        ck_assert_int_eq(share[8 * mib + 100], 'y');
        ck_assert_msg(
                share[8 * mib + 101] == '2' && share[12 * mib - 1] == '2',
                "the other VM's bytes are gone from the share");
        /* A file written here whole (write-through, then close) and read back: the cache is
         * kept (no Get File), as its pieces are this mount's own. */
        fd = open(P(mnt, "own"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        memset(buf, 'o', sizeof(buf));
        for (size_t off = 0; off < size; off += sizeof(buf))
                ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), (off_t)off), (ssize_t)sizeof(buf));
        ck_assert_int_eq(close(fd), 0);
        {
                uint64_t gets = counter("GetFile");
                fd = open(P(mnt, "own"), O_RDONLY | O_CLOEXEC);
                ck_assert_int_ge(fd, 0);
                for (size_t off = 0; off < size; off += sizeof(buf)) {
                        ck_assert_int_eq(
                                pread(fd, buf, sizeof(buf), (off_t)off), (ssize_t)sizeof(buf));
                        ck_assert_int_eq(buf[sizeof(buf) - 1], 'o');
                }
                ck_assert_int_eq(close(fd), 0);
                ck_assert_uint_eq(counter("GetFile"), gets);
        }
}
END_TEST

/* Names the share keeps apart stay apart here: the KELVIN SIGN's upper case is itself, "k"'s is
 * "K". Two files on the share; each reads as itself, and deleting one leaves the other's
 * unsynced data alone. */
START_TEST(test_case_apart) {
        mnt_b = mount_with(NULL, NULL);
        write_file(P(mnt_b, "k.txt"), "k");
        write_file(P(mnt_b, "\xe2\x84\xaa.txt"), "kelvin");
        check_share("k.txt", "k");
        check_share("\xe2\x84\xaa.txt", "kelvin");
        mnt = mount_with(NULL, "writeback=async,async_delay=3600");
        ck_assert_int_eq(dir_count(P(mnt, "")), 2);
        ck_assert_str_eq(read_file(P(mnt, "\xe2\x84\xaa.txt")), "kelvin");
        ck_assert_str_eq(read_file(P(mnt, "K.TXT")), "k");
        write_file(P(mnt, "\xe2\x84\xaa.txt"), "kelvin v2"); /* dirty here */
        ck_assert_int_eq(unlink(P(mnt, "k.txt")), 0);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        check_share_absent("k.txt");
        check_share("\xe2\x84\xaa.txt", "kelvin v2");
}
END_TEST

/* Name sets and the listing's merge keep hashes of folded names only: a name that is not ASCII
 * must never hash as an ASCII one (U+306E once hashed as the bytes "0n"). A file created here,
 * not yet on the share, is listed beside a name on the share; deleting that name leaves the
 * other found. */
START_TEST(test_name_hashes) {
        struct stat st;

        mnt = mount_with(NULL, "writeback=async,async_delay=3600,dir_timeout=60");
        mnt_b = mount_with(NULL, NULL);
        write_file(P(mnt, "0n"), "pending here");
        write_file(P(mnt_b, "\xe3\x81\xae"), "on the share");
        ck_assert(dir_has(P(mnt, ""), "\xe3\x81\xae"));
        ck_assert(dir_has(P(mnt, ""), "0n"));
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_int_eq(mkdir(P(mnt, "d"), 0755), 0);
        write_file(P(mnt_b, "d/0n"), "ascii");
        write_file(P(mnt_b, "d/\xe3\x81\xae"), "kana");
        ck_assert_int_eq(dir_count(P(mnt, "d")), 2); /* the set of d's names, complete */
        ck_assert_int_eq(unlink(P(mnt, "d/\xe3\x81\xae")), 0);
        ck_assert_int_eq(stat(P(mnt, "d/0n"), &st), 0);
        ck_assert_str_eq(read_file(P(mnt, "d/0n")), "ascii");
}
END_TEST

/* A request on a share file (query "" or "?comp=..."), answered 200; the caller clears *r. */
static void share_request(
        const char *method,
        const char *rel,
        const char *query,
        const char *const *headers,
        EmuHttpResult *r) {
        _cleanup_free_ char *url = NULL;

        ck_assert_int_ge(asprintf(&url, "/" SHARE "/%s%s", rel, query), 0);
        ck_assert_int_eq(
                emu_http(emu, method, url, headers, NULL, 0, EMU_AUTH_MODE_SHARED_KEY, r), 0);
        ck_assert_msg(r->status == 200, "%s %s: %ld %s", method, url, r->status, r->body);
}

/* A header of a share file's properties, as the share has it ("" when absent); valid until the
 * next call. */
static const char *share_header(const char *rel, const char *name) {
        static char value[256];
        EmuHttpResult r = {};

        share_request("HEAD", rel, "", NULL, &r);
        const char *v = emu_http_header(&r, name);
        (void)snprintf(value, sizeof(value), "%s", v ? v : "");
        emu_http_result_clear(&r);
        return value;
}

/* The mode stored in a share entry's metadata (x-ms-meta-mode). */
static const char *share_mode(const char *rel) {
        return share_header(rel, "x-ms-meta-mode");
}

/* Another writer sets a file's metadata on the share (Set Metadata: the whole of it), to the
 * "x-ms-meta-NAME: VALUE" headers given (NULL-terminated). */
static void share_set_metadata(const char *rel, const char *const *headers) {
        EmuHttpResult r = {};

        share_request("PUT", rel, "?comp=metadata", headers, &r);
        emu_http_result_clear(&r);
}

/* Another writer sets the file's mode on the share. */
static void share_set_mode(const char *rel, const char *mode) {
        _cleanup_free_ char *meta = NULL;

        ck_assert_int_ge(asprintf(&meta, "x-ms-meta-mode: %s", mode), 0);
        share_set_metadata(rel, (const char *const[]){meta, NULL});
}

START_TEST(test_remount) {
        const char *s;
        struct stat st;
        int fd;

        mnt = mount_with(NULL, NULL);
        s = P(mnt, "run.sh");
        ck_assert_int_eq(mkdir(P(mnt, "Users"), 0755), 0);
        ck_assert_int_eq(mkdir(P(mnt, "proj"), 0755), 0);
        write_file(s, "#!/bin/sh\necho ok\n");
        ck_assert_int_eq(chmod(s, 0755), 0);
        write_file(P(mnt, "proj/data.csv"), "a,b\n1,2\n");
        ck_assert_int_eq(chmod(P(mnt, "proj"), 0750), 0);
        /* setuid and setgid are never kept: not from creat, chmod or another writer's metadata */
        fd = open(P(mnt, "suid.sh"), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 04755);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(fstat(fd, &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0755);
        ck_assert_int_eq(close(fd), 0);
        ck_assert_int_eq(chmod(P(mnt, "suid.sh"), 06711), 0);
        ck_assert_int_eq(stat(P(mnt, "suid.sh"), &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0711);
        ck_assert_str_eq(share_mode("suid.sh"), "0711");
        write_file(P(mnt, "foreign.sh"), "#!/bin/sh\n");
        share_set_mode("foreign.sh", "6755");
        {
                /* and a time before 1970 with a fraction: tv_nsec is not negative */
                EmuHttpResult r = {};
                const char *h[] = {"x-ms-file-last-write-time: 1969-12-31T23:59:59.5000000Z", NULL};
                share_request("PUT", "foreign.sh", "?comp=properties", h, &r);
                emu_http_result_clear(&r);
        }
        remount(mnt);
        ck_assert_int_eq(stat(P(mnt, "foreign.sh"), &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0755);
        ck_assert_int_eq(st.st_mtim.tv_sec, -1);
        ck_assert_int_eq(st.st_mtim.tv_nsec, 500000000);
        /* chmod keeps what other tools put in the metadata (Set Metadata replaces all of it) */
        share_set_metadata(
                "proj/data.csv",
                (const char *const[]){"x-ms-meta-owner: alice", "x-ms-meta-Project: p1", NULL});
        ck_assert_int_eq(chmod(P(mnt, "proj/data.csv"), 0600), 0);
        ck_assert_str_eq(share_mode("proj/data.csv"), "0600");
        ck_assert_str_eq(share_header("proj/data.csv", "x-ms-meta-owner"), "alice");
        ck_assert_str_eq(share_header("proj/data.csv", "x-ms-meta-Project"), "p1");
        /* a listing first (readdirplus) must not stand in for the stored mode */
        ck_assert(dir_has(P(mnt, ""), "run.sh"));
        ck_assert(dir_has(P(mnt, ""), "proj"));
        ck_assert_int_eq(stat(s, &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0755);
        ck_assert_int_eq(access(s, X_OK), 0);
        ck_assert_int_eq(stat(P(mnt, "proj"), &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0750);
        ck_assert_str_eq(read_file(P(mnt, "proj/data.csv")), "a,b\n1,2\n");
        ck_assert_str_eq(read_file(s), "#!/bin/sh\necho ok\n");
        /* Users/<name>: owned by that local user (root exists everywhere), private */
        ck_assert_int_eq(mkdir(P(mnt, "Users/root"), 0755), 0);
        write_file(P(mnt, "Users/root/nb.ipynb"), "{}");
        ck_assert_int_eq(stat(P(mnt, "Users/root/nb.ipynb"), &st), 0);
        ck_assert_int_eq(st.st_uid, 0);
        ck_assert_int_eq(st.st_mode & 0077, 0);
        ck_assert_int_eq(stat(P(mnt, "Users/root"), &st), 0);
        ck_assert_int_eq(st.st_mode & 0077, 0);
}
END_TEST

/* Pairs share_set_many_metadata() sets: the emulator keeps an entry's metadata in an xattr, which
 * ext4 holds to about 4 KiB, so they are short ("T000: 0"); mixed case, as the share keeps it. */
#define MANY_METADATA 300

/* Another tool sets MANY_METADATA pairs on a share entry (query: "?comp=metadata" for a file). */
static void share_set_many_metadata(const char *rel, const char *query) {
        static char lines[MANY_METADATA][32];
        const char *h[MANY_METADATA + 1];
        EmuHttpResult r = {};

        for (size_t i = 0; i < MANY_METADATA; i++) {
                (void)snprintf(lines[i], sizeof(lines[i]), "x-ms-meta-T%03zu: %zu", i, i);
                h[i] = lines[i];
        }
        h[MANY_METADATA] = NULL;
        share_request("PUT", rel, query, h, &r);
        emu_http_result_clear(&r);
}

/* The share entry (query: "" for a file) has every pair share_set_many_metadata() set, exactly,
 * and mode: no other metadata. */
static void check_share_many_metadata(const char *rel, const char *query, const char *mode) {
        EmuHttpResult r = {};
        char want[64];
        size_t n = 0;

        share_request("HEAD", rel, query, NULL, &r);
        for (const char *p = r.headers; (p = strstr(p, "\nx-ms-meta-")); p++)
                n++;
        ck_assert_msg(n == MANY_METADATA + 1, "%s: %zu metadata pairs", rel, n);
        for (size_t i = 0; i < MANY_METADATA; i++) {
                (void)snprintf(want, sizeof(want), "\nx-ms-meta-T%03zu: %zu\r\n", i, i);
                ck_assert_msg(strstr(r.headers, want), "%s: no T%03zu", rel, i);
        }
        (void)snprintf(want, sizeof(want), "\nx-ms-meta-mode: %s\r\n", mode);
        ck_assert_msg(strstr(r.headers, want), "%s: mode is not %s", rel, mode);
        emu_http_result_clear(&r);
}

START_TEST(test_many_metadata) {
        struct stat st;

        mnt = mount_with(NULL, NULL);
        write_file(P(mnt, "tagged.csv"), "a,b\n");
        ck_assert_int_eq(mkdir(P(mnt, "tagged"), 0755), 0);
        share_set_many_metadata("tagged.csv", "?comp=metadata");
        share_set_many_metadata("tagged", "?restype=directory&comp=metadata");
        remount(mnt); /* nothing known: stat asks the share, whose reply has 300 pairs */
        ck_assert_msg(stat(P(mnt, "tagged.csv"), &st) == 0, "stat: %m");
        ck_assert(S_ISREG(st.st_mode));
        ck_assert_msg(stat(P(mnt, "tagged"), &st) == 0, "stat: %m");
        ck_assert(S_ISDIR(st.st_mode));
        /* Set Metadata replaces all of it: chmod sends every pair back with the mode */
        ck_assert_msg(chmod(P(mnt, "tagged.csv"), 0640) == 0, "chmod: %m");
        ck_assert_msg(chmod(P(mnt, "tagged"), 0750) == 0, "chmod: %m");
        check_share_many_metadata("tagged.csv", "", "0640");
        check_share_many_metadata("tagged", "?restype=directory", "0750");
        remount(mnt);
        ck_assert_int_eq(stat(P(mnt, "tagged.csv"), &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0640);
        ck_assert_int_eq(stat(P(mnt, "tagged"), &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0750);
        ck_assert_str_eq(read_file(P(mnt, "tagged.csv")), "a,b\n");
}
END_TEST

START_TEST(test_close_to_open) {
        const char *fa, *fb;
        int fd;

        mnt = mount_with(NULL, NULL);
        mnt_b = mount_with(NULL, NULL);
        fa = P(mnt, "shared.txt");
        fb = P(mnt_b, "shared.txt");
        write_file(fa, "version one");
        ck_assert_str_eq(read_file(fb), "version one");
        /* B keeps it open while A changes it: B sees the new content only at its next open. */
        fd = open(fb, O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        write_file(fa, "version two, longer");
        ck_assert_str_eq(read_file(fb), "version two, longer");
        (void)close(fd);
        /* The other way round, and a file created on B found on A. */
        write_file(fb, "from b");
        ck_assert_str_eq(read_file(fa), "from b");
        write_file(P(mnt_b, "new-on-b"), "nb");
        ck_assert_str_eq(read_file(P(mnt, "new-on-b")), "nb");
        /* Deleted on A: B's next open fails. */
        ck_assert_int_eq(unlink(fa), 0);
        ck_assert_int_eq(errno_of(open(fb, O_RDONLY | O_CLOEXEC)), ENOENT);
}
END_TEST

static void flush_all(FsMount *m) {
        ck_assert_int_eq(setxattr(P(m, ""), "user.azfilesfs.flush", "60", 2, 0), 0);
}

START_TEST(test_shrunk_elsewhere) {
        const uint64_t size = 24 * 1024 * 1024, left = 1024 * 1024;
        char buf[4096];
        struct stat st;
        int fd;

        mnt = mount_with(NULL, NULL);
        mnt_b = mount_with(NULL, NULL);
        ck_assert_int_eq(fs_write_pattern(P(mnt, "big.bin"), 61, size, 1024 * 1024), 0);
        fd = open(P(mnt_b, "big.bin"), O_RDONLY | O_CLOEXEC); /* nothing of it cached on B */
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(truncate(P(mnt, "big.bin"), (off_t)left), 0); /* on the share at once */
        errno = 0;
        ck_assert_msg(
                pread(fd, buf, sizeof(buf), 12 * 1024 * 1024) < 0 && errno == EIO,
                "a read of a range gone from the share: %m, want EIO (not zeros)");
        ck_assert_int_eq(close(fd), 0);
        fd = open(P(mnt_b, "big.bin"), O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(fstat(fd, &st), 0);
        ck_assert_int_eq(st.st_size, (off_t)left);
        ck_assert_int_eq(pread(fd, buf, sizeof(buf), 12 * 1024 * 1024), 0);
        ck_assert_int_eq(close(fd), 0);
        ck_assert_int_eq(fs_check_pattern(P(mnt_b, "big.bin"), 61, left), 0);
}
END_TEST

START_TEST(test_attr_cache) {
        const char *fa, *fb;
        struct stat st;

        mnt = mount_with(NULL, "writeback=async,attr_timeout=600");
        mnt_b = mount_with(NULL, "attr_timeout=600");
        fa = P(mnt, "grow.txt");
        fb = P(mnt_b, "grow.txt");
        write_file(fa, "short");
        flush_all(mnt);
        ck_assert_str_eq(read_file(fb), "short");
        ck_assert_int_eq(stat(fb, &st), 0);
        ck_assert_int_eq(st.st_size, 5);
        /* B's kernel holds size 5 for up to 600 s; its next open asks the share and must drop it,
         * or the read would stop at byte 5. */
        write_file(fa, "much longer than before");
        flush_all(mnt);
        ck_assert_str_eq(read_file(fb), "much longer than before");
        ck_assert_int_eq(stat(fb, &st), 0);
        ck_assert_int_eq(st.st_size, 23);
        /* Dirty here (write-back): the kernel keeps its attributes; a rename into Users/root
         * changes its owner and mode mask (users_mode 0700) at once. */
        write_file(P(mnt, "mine.txt"), "x");
        ck_assert_int_eq(stat(P(mnt, "mine.txt"), &st), 0);
        ck_assert_int_eq(st.st_mode & 0077, 0044);
        ck_assert_int_eq(mkdir(P(mnt, "Users"), 0755), 0);
        ck_assert_int_eq(mkdir(P(mnt, "Users/root"), 0755), 0);
        ck_assert_int_eq(rename(P(mnt, "mine.txt"), P(mnt, "Users/root/mine.txt")), 0);
        ck_assert_int_eq(stat(P(mnt, "Users/root/mine.txt"), &st), 0);
        ck_assert_int_eq(st.st_mode & 0077, 0);
        ck_assert_str_eq(read_file(P(mnt, "Users/root/mine.txt")), "x");
        /* A stat() on a mount with attr_timeout=1 sees a size changed on A within that time: polled
         * (bounded), never timed. */
        mnt_b = fs_mount_free(mnt_b);
        mnt_b = mount_with(NULL, "attr_timeout=1");
        fb = P(mnt_b, "grow.txt");
        ck_assert_int_eq(stat(fb, &st), 0);
        ck_assert_int_eq(st.st_size, 23);
        write_file(fa, "v3");
        flush_all(mnt);
        for (int k = 0; k < 300 && stat(fb, &st) == 0 && st.st_size != 2; k++)
                (void)usleep(50 * 1000);
        ck_assert_int_eq(st.st_size, 2);
}
END_TEST

static uint64_t dirty(FsMount *m) {
        uint64_t v = UINT64_MAX;
        int r = fs_dirty_bytes(m, &v);
        ck_assert_msg(r == 0, "dirty_bytes: %s", strerror(-r));
        return v;
}

/* A file A created and holds open, not on the share yet, and a directory of the same name made
 * on B meanwhile: A's listing used to replace A's file by the directory, and the file's close()
 * then dropped its data and returned 0. Now A's file stands: its upload fails (close() says so),
 * the data stays, and reaches the share once the name is free again. */
START_TEST(test_kind_conflict) {
        int fd;

        mnt = mount_with(NULL, NULL);
        mnt_b = mount_with(NULL, NULL);
        fd = open(P(mnt, "x"), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, "A's data", 8), 8);
        ck_assert_int_eq(mkdir(P(mnt_b, "x"), 0755), 0);
        ck_assert(dir_has(P(mnt, ""), "x"));
        ck_assert_int_lt(close(fd), 0);
        ck_assert_uint_eq(dirty(mnt), 8);
        ck_assert_int_eq(rmdir(P(mnt_b, "x")), 0);
        flush_all(mnt);
        ck_assert_uint_eq(dirty(mnt), 0);
        check_share("x", "A's data");
}
END_TEST

START_TEST(test_flush) {
        _cleanup_free_ char *json = NULL;
        const char *root;
        char names[512];
        ssize_t n;

        mnt = mount_with(NULL, "writeback=async,async_delay=3600");
        root = P(mnt, "");
        ck_assert_uint_eq(dirty(mnt), 0);
        write_file(P(mnt, "a.txt"), "aaaa");
        write_file(P(mnt, "b.txt"), "bbbbbbbb");
        /* async: close returned, nothing uploaded yet; a file created here reaches the share
         * with its first upload (SEMANTICS.md: creat) */
        ck_assert_uint_eq(dirty(mnt), 12);
        check_share_absent("a.txt");
        ck_assert_int_eq(fs_stats(mnt, &json), 0);
        for (const char *k =
                     "dirty_bytes\0dirty_files\0cache_bytes\0requests_total\0requests_failed\0"
                     "uploads_in_flight\0last_error\0last_error_path\0last_request_id\0";
             *k; k += strlen(k) + 1)
                ck_assert_msg(strstr(json, k), "stats lacks %s: %s", k, json);
        ck_assert_msg(strstr(json, "\"dirty_bytes\":12"), "%s", json);
        ck_assert_msg(strstr(json, "\"dirty_files\":2"), "%s", json);
        n = listxattr(root, names, sizeof(names));
        ck_assert_int_gt(n, 0);
        ck_assert(memmem(names, (size_t)n, "user.azfilesfs.dirty_bytes", 27));
        ck_assert(memmem(names, (size_t)n, "user.azfilesfs.stats", 21));
        ck_assert(memmem(names, (size_t)n, "user.azfilesfs.flush", 21));
        /* more dirty files than uploads run at once: the rest queue */
        ck_assert_int_eq(mkdir(P(mnt, "many"), 0755), 0);
        for (unsigned k = 0; k < 150; k++) {
                char name[64];
                (void)snprintf(name, sizeof(name), "many/%u", k);
                write_file(P(mnt, name), name);
        }
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        check_share("a.txt", "aaaa");
        check_share("b.txt", "bbbbbbbb");
        check_share("many/0", "many/0");
        check_share("many/149", "many/149");
        /* fsync is a durability point in async mode too */
        {
                int fd = open(P(mnt, "c.txt"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                ck_assert_int_ge(fd, 0);
                ck_assert_int_eq(write(fd, "cc", 2), 2);
                ck_assert_int_eq(fsync(fd), 0);
                check_share("c.txt", "cc");
                ck_assert_int_eq(close(fd), 0);
        }
        /* bad values */
        ck_assert_int_eq(errno_of(setxattr(root, "user.azfilesfs.flush", "soon", 4, 0)), EINVAL);
        ck_assert_int_eq(errno_of(setxattr(root, "user.azfilesfs.stats", "1", 1, 0)), EPERM);
        ck_assert_int_eq(fs_flush(mnt, 0), 0); /* nothing dirty: at once */
}
END_TEST

START_TEST(test_refused_names) {
        /* "\xe9t\xe9": ISO 8859-1, not UTF-8 */
        static const char *const refused[] = {
                "a:b",   "a*b", "a?b",  "a\"b", "a<b", "a>b", "a|b",       "a\\b",
                "tab\t", "CON", "lpt1", "foo.", "x..", "nul", "\xe9t\xe9", "\x01",
        };
        const char *const dirs[] = {"known", ""}; /* made here: names known; the root: not */
        int fd;

        mnt = mount_with(NULL, NULL);
        ck_assert_int_eq(mkdir(P(mnt, "known"), 0755), 0);
        write_file(P(mnt, "known/foo"), "A");
        write_file(P(mnt, "foo"), "A");
        write_file(P(mnt, "known/src"), "S");
        remount(mnt); /* the root's names not known now; "known" is listed below first */
        ck_assert(dir_has(P(mnt, "known"), "foo"));
        for (size_t d = 0; d < ELEMENTSOF(dirs); d++)
                for (size_t k = 0; k < ELEMENTSOF(refused); k++) {
                        _cleanup_free_ char *rel = NULL;
                        ck_assert_int_ge(
                                asprintf(&rel, "%s%s%s", dirs[d], *dirs[d] ? "/" : "", refused[k]),
                                0);
                        fd = open(P(mnt, rel), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                        ck_assert_msg(
                                fd < 0 && errno == EINVAL, "creat %s: %d (%m), want EINVAL", rel,
                                fd);
                        ck_assert_msg(
                                errno_of(mkdir(P(mnt, rel), 0755)) == EINVAL,
                                "mkdir %s: want EINVAL", rel);
                        ck_assert_msg(
                                errno_of(rename(P(mnt, "known/src"), P(mnt, rel))) == EINVAL,
                                "rename to %s: want EINVAL", rel);
                }
        ck_assert_uint_eq(dirty(mnt), 0);
        check_share("known/foo", "A");
        check_share("foo", "A");
        check_share("known/src", "S");
        ck_assert_str_eq(read_file(P(mnt, "known/foo")), "A");

        /* The share's size limit, 4 TiB. */
        fd = open(P(mnt, "big"), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(errno_of(ftruncate(fd, (off_t)(UINT64_C(5) << 40))), EFBIG);
        ck_assert_int_eq(errno_of((int)pwrite(fd, "x", 1, (off_t)(UINT64_C(4) << 40))), EFBIG);
        ck_assert_int_eq(write(fd, "small", 5), 5);
        ck_assert_int_eq(close(fd), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        check_share("big", "small");
}
END_TEST

/* A sequential writer ending at the share's 4 TiB limit (every offset allowed): no upload fails.
 * Write-through grew the share's file 32 MiB ahead of the writer, past the limit, and each of
 * its rounds failed (EFBIG, an error in the journal) until close(). */
START_TEST(test_wt_at_limit) {
        const uint64_t mib = 1024 * 1024, end = UINT64_C(4) << 40;
        static char buf[1024 * 1024];
        _cleanup_free_ char *log = NULL;
        struct stat st;
        int fd;

        mnt = mount_with(NULL, NULL);
        fd = open(P(mnt, "edge"), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        memset(buf, 'e', sizeof(buf));
        for (uint64_t off = end - 64 * mib; off < end; off += mib)
                ck_assert_int_eq(pwrite(fd, buf, mib, (off_t)off), (ssize_t)mib);
        ck_assert_msg(close(fd) == 0, "close: %m");
        ck_assert_uint_eq(dirty(mnt), 0);
        log = fs_mount_log_tail(mnt, 100000);
        ck_assert_ptr_nonnull(log);
        ck_assert_msg(!strstr(log, "failed"), "an upload failed: %s", log);
        remount(mnt); /* what the share has */
        ck_assert_int_eq(stat(P(mnt, "edge"), &st), 0);
        ck_assert_uint_eq((uint64_t)st.st_size, end);
        fd = open(P(mnt, "edge"), O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pread(fd, buf, 2, (off_t)(end - 2)), 2);
        ck_assert_int_eq(buf[0], 'e');
        ck_assert_int_eq(buf[1], 'e');
        ck_assert_int_eq(close(fd), 0);
}
END_TEST

typedef struct ListArgs {
        const char *dir;
        int result;
} ListArgs;

/* Reads a whole directory: 0 or -errno. */
static void *list_thread(void *p) {
        ListArgs *a = p;
        DIR *d = opendir(a->dir);

        if (!d) {
                a->result = -errno;
                return NULL;
        }
        errno = 0;
        while (readdir(d))
                ;
        a->result = errno ? -errno : 0;
        (void)closedir(d);
        return NULL;
}

START_TEST(test_failures) {
        _cleanup_free_ char *json = NULL;
        struct timespec until;
        uint64_t lists;
        const char *f;
        pthread_t t;
        int fd;

        mnt = mount_with(NULL, "retry_budget=3");
        f = P(mnt, "f.txt");
        write_file(f, "before");
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=write:503"), 0);
        /* sync mode: close() reports that the data is not on the share, and keeps it */
        fd = open(f, O_WRONLY | O_TRUNC | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, "after!", 6), 6);
        ck_assert_int_eq(errno_of(close(fd)), EIO);
        ck_assert_uint_eq(dirty(mnt), 6);
        ck_assert_str_eq(read_file(f), "after!"); /* still served from the cache */
        ck_assert_int_eq(fs_stats(mnt, &json), 0);
        ck_assert_msg(strstr(json, "\"last_error\":\""), "%s", json);
        ck_assert_msg(strstr(json, "\"last_error_path\":\"f.txt\""), "%s", json);
        /* the flush gives up within its bound */
        ck_assert_int_lt(fs_flush(mnt, 1), 0);
        ck_assert_uint_eq(dirty(mnt), 6);
        check_share("f.txt", "before");
        /* share back: flush uploads it */
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        check_share("f.txt", "after!");

        /* A server whose listing never ends (the same NextMarker again and again): readdir
         * fails with EIO after a bounded number of pages, and does not hang. */
        ck_assert_int_eq(mkdir(P(mnt, "listed"), 0755), 0);
        write_file(P(mnt, "listed/a"), "a");
        lists = counter("ListDirectoriesAndFiles");
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=ListDirectoriesAndFiles:stale-marker"), 0);
        ListArgs la = {.dir = P(mnt, "listed"), .result = 1};
        ck_assert_int_eq(pthread_create(&t, NULL, list_thread, &la), 0);
        ck_assert_int_eq(clock_gettime(CLOCK_REALTIME, &until), 0);
        until.tv_sec += 60;
        ck_assert_msg(
                pthread_timedjoin_np(t, NULL, &until) == 0,
                "the listing of a directory whose NextMarker repeats did not end within 60 s");
        ck_assert_int_eq(la.result, -EIO);
        ck_assert_uint_le(counter("ListDirectoriesAndFiles") - lists, 4);
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        ck_assert(dir_has(P(mnt, "listed"), "a"));
}
END_TEST

static uint64_t stats_number(FsMount *m, const char *key) {
        _cleanup_free_ char *json = NULL, *pat = NULL;
        const char *p;
        ck_assert_int_eq(fs_stats(m, &json), 0);
        ck_assert_int_ge(asprintf(&pat, "\"%s\":", key), 0);
        p = strstr(json, pat);
        ck_assert_msg(p, "%s not in %s", key, json);
        return strtoull(p + strlen(pat), NULL, 10);
}

/* The caps: writers wait for uploads beyond max_dirty (and fail, not hang, when uploads fail);
 * clean data beyond cache_size is evicted, least recently used first. */
START_TEST(test_caps) {
        const uint64_t mib = 1024 * 1024;

        mnt = mount_with(
                NULL, "writeback=async,async_delay=3600,max_dirty=4M,cache_size=8M,retry_budget=3");
        ck_assert_int_eq(fs_write_pattern(P(mnt, "w1"), 1, 20 * mib, 1 * mib), 0);
        ck_assert_uint_le(dirty(mnt), 8 * mib);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_int_eq(fs_check_pattern(P(mnt, "w1"), 1, 20 * mib), 0);
        /* eviction: after reading 20 MiB the clean cache is back under 8 MiB once closed; the
         * kernel sends the release (which evicts) after close() returned, so wait for it */
        for (unsigned k = 0; k < 10000 && stats_number(mnt, "cache_bytes") > 8 * mib; k++)
                (void)usleep(1000); /* polling interval; the condition is the cache size */
        ck_assert_uint_le(stats_number(mnt, "cache_bytes"), 8 * mib);
        /* uploads failing: a writer over the cap gets an error within the bound */
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=PutRange:503,retry-after=0"), 0);
        ck_assert_int_lt(fs_write_pattern(P(mnt, "w2"), 2, 20 * mib, 1 * mib), 0);
        /* uploads work again: a writer over the cap waits for them, and is not failed with the
         * error of the rounds that failed before (it was, at the new round's first answer) */
        for (unsigned k = 0; k < 3000 && stats_number(mnt, "uploads_in_flight") > 0; k++)
                (void)usleep(10000); /* polling interval; the condition is the rounds' end */
        ck_assert_uint_eq(stats_number(mnt, "uploads_in_flight"), 0);
        ck_assert_uint_gt(dirty(mnt), 0);
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        {
                static char more[1024 * 1024];
                int fd = open(P(mnt, "w2"), O_WRONLY | O_APPEND | O_CLOEXEC);
                ck_assert_int_ge(fd, 0);
                memset(more, 'm', sizeof(more));
                ck_assert_msg(
                        write(fd, more, sizeof(more)) == (ssize_t)sizeof(more),
                        "a write over the cap, uploads working again: %m");
                ck_assert_int_eq(close(fd), 0);
        }
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
}
END_TEST

typedef struct BulkWrite {
        int fd;
        size_t total;
        int result; /* 0 or -errno */
} BulkWrite;

/* Writes total bytes through fd, 1 MiB at a time. */
static void *bulk_write_thread(void *p) {
        static char chunk[1024 * 1024];
        BulkWrite *b = p;

        memset(chunk, 'd', sizeof(chunk));
        b->result = 0;
        for (size_t done = 0; done < b->total; done += sizeof(chunk))
                if (write(b->fd, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk)) {
                        b->result = -errno;
                        break;
                }
        return NULL;
}

/* A file deleted while open, written through its descriptor past max_dirty: its data is never
 * uploaded (it has no name), so the writer over the cap waits until the data is dropped; it
 * waited for an upload's end that never came, in uninterruptible sleep. */
START_TEST(test_deleted_over_cap) {
        BulkWrite b = {.total = 24 * 1024 * 1024, .result = 1};
        struct timespec until;
        pthread_t t;

        mnt = mount_with(NULL, "max_dirty=4M");
        b.fd = open(P(mnt, "gone"), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_int_ge(b.fd, 0);
        ck_assert_int_eq(unlink(P(mnt, "gone")), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, bulk_write_thread, &b), 0);
        ck_assert_int_eq(clock_gettime(CLOCK_REALTIME, &until), 0);
        until.tv_sec += 30;
        ck_assert_msg(
                pthread_timedjoin_np(t, NULL, &until) == 0,
                "writes to a deleted file past max_dirty did not end within 30 s");
        ck_assert_int_eq(b.result, 0);
        ck_assert_int_eq(close(b.fd), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        check_share_absent("gone");
}
END_TEST

/* writeback=async: a file deleted while open, written, then closed: its data is dropped at the
 * next tick and the file forgotten, its cache file with it (the file stayed for good, its cache
 * file open and counted). */
START_TEST(test_deleted_async) {
        uint64_t files;
        unsigned k;
        int fd;

        mnt = mount_with(NULL, "writeback=async,async_delay=1");
        files = stats_number(mnt, "cache_files");
        fd = open(P(mnt, "gone"), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(unlink(P(mnt, "gone")), 0);
        ck_assert_int_eq(write(fd, "lost on purpose", 15), 15);
        ck_assert_int_eq(close(fd), 0);
        for (k = 0; k < 20000 && stats_number(mnt, "cache_files") > files; k++)
                (void)usleep(1000); /* polling interval; the condition is the figure */
        ck_assert_msg(
                k < 20000, "the deleted file's cache stayed: cache_files %" PRIu64 ", was %" PRIu64,
                stats_number(mnt, "cache_files"), files);
        ck_assert_uint_eq(dirty(mnt), 0);
        check_share_absent("gone");
}
END_TEST

/* File k of a numbered set: dir/fNNN, holding size bytes ("file k" when size is 0). */
static void numbered(const char *dir, unsigned k, size_t size, char name[static 64], char *want) {
        (void)snprintf(name, 64, "%s/f%03u", dir, k);
        if (size > 0)
                (void)snprintf(want, size + 1, "%0*u\n", (int)size - 1, k);
        else
                (void)snprintf(want, 64, "file %u\n", k);
}

/* Writes files [from, to) of the set in dir through m. */
static void write_numbered(FsMount *m, const char *dir, unsigned from, unsigned to, size_t size) {
        char name[64], want[2048];

        ck_assert_uint_lt(size, sizeof(want));
        for (unsigned k = from; k < to; k++) {
                numbered(dir, k, size, name, want);
                _cleanup_free_ char *path = fs_mount_path(m, name);
                ck_assert_ptr_nonnull(path);
                write_file(path, want);
        }
}

/* Files [from, to) of the set in dir read back through m (when m) and from the share. */
static void check_numbered(FsMount *m, const char *dir, unsigned from, unsigned to, size_t size) {
        char name[64], want[2048];

        ck_assert_uint_lt(size, sizeof(want));
        for (unsigned k = from; k < to; k++) {
                numbered(dir, k, size, name, want);
                if (m) {
                        _cleanup_free_ char *path = fs_mount_path(m, name);
                        ck_assert_ptr_nonnull(path);
                        ck_assert_str_eq(read_file(path), want);
                }
                check_share(name, want);
        }
}

/* Small files count their size against cache_size and max_dirty (and 64 KiB each against
 * max_dirty for their requests), not a whole 4 MiB piece each: counted in pieces, 2 such files
 * filled this max_dirty (writers waited for uploads) and 2 this cache_size (the rest evicted). */
START_TEST(test_small_files) {
        uint64_t creates;

        mnt = mount_with(NULL, "writeback=async,async_delay=3600,max_dirty=4M,cache_size=8M");
        ck_assert_int_eq(mkdir(P(mnt, "s"), 0755), 0);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        creates = counter("CreateFile");
        write_numbered(mnt, "s", 0, 40, 1024);
        /* 40 x (1 KiB + 64 KiB) < 4 MiB: no writer waited for an upload */
        ck_assert_uint_eq(counter("CreateFile"), creates);
        ck_assert_uint_eq(dirty(mnt), 40 * 1024);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        /* 40 KiB < 8 MiB: every file still cached */
        ck_assert_uint_eq(stats_number(mnt, "cache_files"), 40);
        ck_assert_uint_eq(stats_number(mnt, "cache_bytes"), 40 * 1024);
        check_numbered(mnt, "s", 0, 40, 1024);
        /* 200 more are over max_dirty: their writers waited for uploads */
        creates = counter("CreateFile");
        write_numbered(mnt, "s", 40, 240, 1024);
        ck_assert_uint_gt(counter("CreateFile"), creates);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        check_numbered(NULL, "s", 40, 240, 1024);
}
END_TEST

/* Each cached file keeps its cache file open: with a limit of 600 open files (soft and hard) the
 * cache keeps at most 300 files (fs-data.c: half a limit under 1024), whatever cache_size allows:
 * clean ones beyond are evicted, least recently used first, and read back from the share; and
 * with 300 files holding unsynced data (never evicted), writers wait for uploads, even with
 * async_delay=3600 and max_dirty far off. Without the bound, 700 small files written in
 * writeback=async held 700 cache files open, and writes failed with EMFILE. */
START_TEST(test_cache_files) {
        struct rlimit low = {.rlim_cur = 600, .rlim_max = 600};

        /* The hard limit cannot be raised again without CAP_SYS_RESOURCE: it stays low in this
         * test's process (check runs each test in a child of its own; last in the list). */
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
        mnt = mount_with(NULL, "writeback=async,async_delay=3600");
        ck_assert_uint_eq(stats_number(mnt, "cache_files_max"), 300);
        ck_assert_int_eq(mkdir(P(mnt, "many"), 0755), 0);
        write_numbered(mnt, "many", 0, 700, 0);
        ck_assert_uint_le(stats_number(mnt, "cache_files"), 301);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        check_numbered(mnt, "many", 0, 700, 0);
        ck_assert_uint_le(stats_number(mnt, "cache_files"), 300);
}
END_TEST

/* Blocks until the emulator has received more than above requests of op (bounded). */
static uint64_t stat_figure(const char *key) {
        return stats_number(mnt, key);
}

/* Waits (20 s at most) until figure(name) (an emulator counter, or a figure of the mount's
 * stats) is at least want. */
static void wait_figure(uint64_t (*figure)(const char *name), const char *name, uint64_t want) {
        uint64_t v = 0;

        for (unsigned k = 0; k < 20000; k++) {
                if ((v = figure(name)) >= want)
                        return;
                (void)usleep(1000); /* polling interval; the condition is the figure */
        }
        ck_abort_msg("%s did not reach %" PRIu64 " within 20 s (%" PRIu64 ")", name, want, v);
}

static void wait_counter_above(const char *op, uint64_t above) {
        wait_figure(counter, op, above + 1);
}

/* Closes a new file in write-back mode and waits until its upload's Create File (made slow) has
 * reached the share and is still being answered. */
static void create_in_flight(const char *rel, const char *data) {
        uint64_t before = counter("CreateFile");

        write_file(P(mnt, rel), data);
        wait_counter_above("CreateFile", before);
}

typedef struct CloseArgs {
        int fd, result;
} CloseArgs;

static void *close_thread(void *p) {
        CloseArgs *a = p;
        a->result = close(a->fd) < 0 ? -errno : 0;
        return NULL;
}

/* A new file written, to be closed by close_thread(). */
static CloseArgs written(const char *rel) {
        CloseArgs a = {.fd = open(P(mnt, rel), O_WRONLY | O_CREAT | O_CLOEXEC, 0644), .result = 1};

        ck_assert_int_ge(a.fd, 0);
        ck_assert_int_eq(write(a.fd, "data", 4), 4);
        return a;
}

START_TEST(test_queued_unlink) {
        CloseArgs slots[64], queued;
        pthread_t slot_threads[64], t;
        struct timespec until;

        /* 64 files upload at a time: 64 close()s hold every slot while their Create File waits;
         * a 65th close() waits in the queue. (A close(), not an fsync(): an fsync() holds the
         * file's inode lock, which the unlink below would wait for.) The files are made before
         * the Create Files are slowed: a slow request holds one of the emulator's threads. */
        mnt = mount_with(NULL, NULL);
        for (unsigned k = 0; k < ELEMENTSOF(slots); k++) {
                char rel[32];
                (void)snprintf(rel, sizeof(rel), "slot%02u", k);
                slots[k] = written(rel);
        }
        queued = written("queued");
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=CreateFile:latency=1s"), 0);
        for (unsigned k = 0; k < ELEMENTSOF(slots); k++)
                ck_assert_int_eq(
                        pthread_create(&slot_threads[k], NULL, close_thread, &slots[k]), 0);
        wait_figure(stat_figure, "uploads_in_flight", ELEMENTSOF(slots));
        ck_assert_int_eq(pthread_create(&t, NULL, close_thread, &queued), 0);
        wait_figure(stat_figure, "flushes_waiting", ELEMENTSOF(slots) + 1);
        ck_assert_int_eq(unlink(P(mnt, "queued")), 0);
        ck_assert_int_eq(clock_gettime(CLOCK_REALTIME, &until), 0);
        until.tv_sec += 60;
        ck_assert_msg(
                pthread_timedjoin_np(t, NULL, &until) == 0,
                "the close() of the deleted file was not answered within 60 s");
        ck_assert_int_eq(queued.result, 0);
        for (unsigned k = 0; k < ELEMENTSOF(slots); k++) {
                ck_assert_int_eq(pthread_join(slot_threads[k], NULL), 0);
                ck_assert_int_eq(slots[k].result, 0);
        }
        ck_assert_uint_eq(stats_number(mnt, "flushes_waiting"), 0);
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        check_share_absent("queued");
        check_share("slot63", "data");
}
END_TEST

/* rename, chmod, unlink and a rename of the parent directory of a new file while its first
 * upload's Create File is in flight (an editor's save: write a temporary file, rename it over the
 * old one): each succeeds, and after a flush the share holds exactly the right names, bytes and
 * modes, no leftover under the old name. */
START_TEST(test_create_in_flight) {
        struct stat st;

        mnt = mount_with(NULL, "writeback=async,async_delay=0.05");
        ck_assert_int_eq(mkdir(P(mnt, "d"), 0755), 0);
        write_file(P(mnt, "saved.txt"), "old");
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=CreateFile:latency=1500ms"), 0);

        create_in_flight(".saved.txt.tmp", "new content");
        ck_assert_msg(rename(P(mnt, ".saved.txt.tmp"), P(mnt, "saved.txt")) == 0, "rename: %m");
        create_in_flight("fresh.tmp", "fresh");
        ck_assert_msg(rename(P(mnt, "fresh.tmp"), P(mnt, "fresh.txt")) == 0, "rename: %m");
        create_in_flight("mode.txt", "mode");
        ck_assert_msg(chmod(P(mnt, "mode.txt"), 0600) == 0, "chmod: %m");
        create_in_flight("gone.txt", "gone");
        ck_assert_msg(unlink(P(mnt, "gone.txt")) == 0, "unlink: %m");
        create_in_flight("d/f.txt", "in d");
        ck_assert_msg(rename(P(mnt, "d"), P(mnt, "d2")) == 0, "rename dir: %m");

        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        check_share("saved.txt", "new content");
        check_share_absent(".saved.txt.tmp");
        check_share("fresh.txt", "fresh");
        check_share_absent("fresh.tmp");
        check_share("mode.txt", "mode");
        check_share_absent("gone.txt");
        check_share("d2/f.txt", "in d");
        check_share_absent("d/f.txt");
        ck_assert_str_eq(read_file(P(mnt, "saved.txt")), "new content");
        ck_assert_int_eq(errno_of(stat(P(mnt, "gone.txt"), &st)), ENOENT);
        /* the mode is the share's: it survives a remount */
        remount(mnt);
        ck_assert_int_eq(stat(P(mnt, "mode.txt"), &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0600);
        ck_assert_int_eq(errno_of(stat(P(mnt, "gone.txt"), &st)), ENOENT);
        ck_assert_int_eq(errno_of(stat(P(mnt, ".saved.txt.tmp"), &st)), ENOENT);
        ck_assert_str_eq(read_file(P(mnt, "d2/f.txt")), "in d");
}
END_TEST

/* Rewrites a file on the share in write-back mode and waits until its upload's Put Range (made
 * slow) has reached the share and is still being answered. */
static void put_range_in_flight(const char *rel, const char *data) {
        uint64_t before = counter("PutRange");

        write_file(P(mnt, rel), data);
        wait_counter_above("PutRange", before);
}

/* The faults removed and everything flushed: nothing dirty; each name of present (pairs of name
 * and bytes, NULL-terminated) holds exactly its bytes on the share and through the mount, also
 * after a remount; no name of gone is on the share, nor on the mount after the remount. */
static void check_after_renames(const char *const *present, const char *const *gone) {
        struct stat st;

        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        for (size_t k = 0; present[k]; k += 2) {
                check_share(present[k], present[k + 1]);
                ck_assert_str_eq(read_file(P(mnt, present[k])), present[k + 1]);
        }
        for (size_t k = 0; gone[k]; k++)
                check_share_absent(gone[k]);
        remount(mnt);
        for (size_t k = 0; present[k]; k += 2)
                ck_assert_str_eq(read_file(P(mnt, present[k])), present[k + 1]);
        for (size_t k = 0; gone[k]; k++)
                ck_assert_int_eq(errno_of(stat(P(mnt, gone[k]), &st)), ENOENT);
}

/* An editor's save over a file whose previous save is still being uploaded (write-back mode):
 * the temporary file renamed over it, on the share already or not yet, and an unlink of such a
 * file. The old file's late Put Range must not land in the renamed file: after a flush the
 * share holds exactly the new bytes, nothing under the temporary names, nothing dirty. */
START_TEST(test_rename_over_upload) {
        static const char new1[] = "ZZZZZZZZZZ new content, longer than the old";
        static const char new2[] = "second save, also longer than the old one";

        mnt = mount_with(NULL, "writeback=async,async_delay=0.05");
        write_file(P(mnt, "b.txt"), "original b");
        write_file(P(mnt, "c.txt"), "original c");
        write_file(P(mnt, "g.txt"), "original g");
        write_file(P(mnt, ".b.txt.tmp"), new1);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=PutRange:latency=1500ms"), 0);

        /* the temporary file on the share already */
        put_range_in_flight("b.txt", "YYYYYYYY");
        ck_assert_msg(rename(P(mnt, ".b.txt.tmp"), P(mnt, "b.txt")) == 0, "rename: %m");
        /* the temporary file not on the share yet */
        put_range_in_flight("c.txt", "XXXXXXXX");
        write_file(P(mnt, ".c.txt.tmp"), new2);
        ck_assert_msg(rename(P(mnt, ".c.txt.tmp"), P(mnt, "c.txt")) == 0, "rename: %m");
        /* unlink */
        put_range_in_flight("g.txt", "WWWWWWWW");
        ck_assert_msg(unlink(P(mnt, "g.txt")) == 0, "unlink: %m");

        check_after_renames(
                (const char *const[]){"b.txt", new1, "c.txt", new2, NULL},
                (const char *const[]){".b.txt.tmp", ".c.txt.tmp", "g.txt", NULL});
}
END_TEST

typedef struct RenameArgs {
        const char *from, *to;
        int result; /* 0 or -errno */
} RenameArgs;

static void *rename_thread(void *p) {
        RenameArgs *a = p;
        a->result = rename(a->from, a->to) < 0 ? -errno : 0;
        return NULL;
}

/* Renames from over to (mount-relative) in a thread and returns once the share has carried the
 * Rename File out, its answer held back (answer-latency): the rename is still in flight. */
static pthread_t rename_in_flight(RenameArgs *a, const char *from, const char *to) {
        uint64_t before = counter("RenameFile");
        pthread_t t;

        *a = (RenameArgs){.from = P(mnt, from), .to = P(mnt, to), .result = 1};
        ck_assert_int_eq(pthread_create(&t, NULL, rename_thread, a), 0);
        wait_counter_above("RenameFile", before);
        return t;
}

typedef struct Writer {
        int fd;
        atomic_bool stop;
        _Atomic uint64_t written;
        int error; /* errno of a failed write, 0 */
} Writer;

static uint8_t pattern_byte(uint64_t k) {
        return (uint8_t)(k * 7 + k / 251);
}

#define BUSY_SIZE (1024 * 1024) /* within one piece: no write-through, whole rounds only */

/* Writes 100 bytes at a time of pattern_byte(offset), going round the file's first MiB again
 * and again, until stopped. */
static void *writer_thread(void *p) {
        Writer *w = p;
        uint8_t buf[100];

        while (!atomic_load(&w->stop)) {
                uint64_t n = atomic_load(&w->written), off = n % (BUSY_SIZE / sizeof(buf) * 100);
                for (size_t k = 0; k < sizeof(buf); k++)
                        buf[k] = pattern_byte(off + k);
                if (pwrite(w->fd, buf, sizeof(buf), (off_t)off) != (ssize_t)sizeof(buf)) {
                        w->error = errno;
                        break;
                }
                atomic_store(&w->written, n + sizeof(buf));
        }
        return NULL;
}

/* Joins t within 30 s, or fails naming what did not end. */
static void join_within(pthread_t t, const char *what) {
        struct timespec until;

        ck_assert_int_eq(clock_gettime(CLOCK_REALTIME, &until), 0);
        until.tv_sec += 30;
        ck_assert_msg(
                pthread_timedjoin_np(t, NULL, &until) == 0, "%s did not end within 30 s", what);
}

/* A file that a writer keeps dirty (overwriting its first MiB, so no write-through), with slow
 * uploads: each round ends with new data, and in the default mode the next round starts at once.
 * A reader's close() (a flush) is answered once a round that began after it succeeded: it waited
 * for the file to be clean, i.e. for ever. A rename of the file ends too (the kernel holds the
 * file's lock for it, which stops the writer until then). Every byte written reaches the share
 * under the new name. */
START_TEST(test_busy_writer) {
        _cleanup_free_ char *data = NULL;
        Writer w = {.fd = -1};
        CloseArgs reader;
        RenameArgs ren = {.result = 1};
        pthread_t tw, t;
        size_t size = 0;
        uint64_t n;

        mnt = mount_with(NULL, NULL);
        w.fd = open(P(mnt, "log"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_int_ge(w.fd, 0);
        ck_assert_int_eq(pthread_create(&tw, NULL, writer_thread, &w), 0);
        for (unsigned k = 0; k < 20000 && atomic_load(&w.written) < 100000; k++)
                (void)usleep(1000); /* polling interval; the condition is the bytes written */
        ck_assert_uint_ge(atomic_load(&w.written), 100000);
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=PutRange:latency=300ms"), 0);

        reader = (CloseArgs){.fd = open(P(mnt, "log"), O_RDONLY | O_CLOEXEC), .result = 1};
        ck_assert_int_ge(reader.fd, 0);
        ck_assert_int_eq(pthread_create(&t, NULL, close_thread, &reader), 0);
        join_within(t, "a reader's close() of a file kept dirty");
        ck_assert_int_eq(reader.result, 0);

        ren = (RenameArgs){.from = P(mnt, "log"), .to = P(mnt, "log.1"), .result = 1};
        ck_assert_int_eq(pthread_create(&t, NULL, rename_thread, &ren), 0);
        join_within(t, "a rename of a file kept dirty");
        ck_assert_int_eq(ren.result, 0);

        atomic_store(&w.stop, true);
        ck_assert_int_eq(pthread_join(tw, NULL), 0);
        ck_assert_int_eq(w.error, 0);
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        ck_assert_int_eq(close(w.fd), 0);
        n = MIN(atomic_load(&w.written), (uint64_t)(BUSY_SIZE / 100 * 100));
        ck_assert_int_eq(fs_share_read(emu, SHARE, "log.1", &data, &size), 0);
        ck_assert_uint_eq(size, n);
        for (uint64_t k = 0; k < n; k++)
                ck_assert_msg((uint8_t)data[k] == pattern_byte(k), "log.1 differs at %" PRIu64, k);
        check_share_absent("log");
}
END_TEST

/* A rename whose destination, or source, has unsynced data whose upload is not running when the
 * rename starts but is started (the flush xattr) while the Rename File is in flight, the share
 * having renamed already: the destination's old bytes must not land in the renamed file, the
 * source's new bytes must reach the new name (not the old one), with the rename answered. */
START_TEST(test_rename_upload_starts) {
        static const char new_dst[] = "the renamed file's bytes, longer than the other";
        static const char new_moved[] = "source's new bytes, unsynced when it was renamed";
        RenameArgs a;
        pthread_t t;

        mnt = mount_with(NULL, "writeback=async,async_delay=3600");
        /* Not in the root: the kernel holds the directory of a rename locked meanwhile, and the
         * flush xattr is set on the root. */
        ck_assert_int_eq(mkdir(P(mnt, "r"), 0755), 0);
        write_file(P(mnt, "r/src.txt"), new_dst);
        write_file(P(mnt, "r/dst.txt"), "dst on the share");
        write_file(P(mnt, "r/src2.txt"), "source on the share");
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        /* dirty, not uploading (async_delay) */
        write_file(P(mnt, "r/dst.txt"), "OLD");
        ck_assert_uint_gt(dirty(mnt), 0);
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=RenameFile:answer-latency=1500ms"), 0);

        /* the destination: its upload asked for while the rename is in flight */
        t = rename_in_flight(&a, "r/src.txt", "r/dst.txt");
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_msg(a.result == 0, "rename over r/dst.txt: %s", strerror(-a.result));
        /* the source (the flush above uploaded everything) */
        write_file(P(mnt, "r/src2.txt"), new_moved);
        ck_assert_uint_gt(dirty(mnt), 0);
        t = rename_in_flight(&a, "r/src2.txt", "r/moved.txt");
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_msg(a.result == 0, "rename to r/moved.txt: %s", strerror(-a.result));
        check_after_renames(
                (const char *const[]){"r/dst.txt", new_dst, "r/moved.txt", new_moved, NULL},
                (const char *const[]){"r/src.txt", "r/src2.txt", NULL});
}
END_TEST

/* A call on a path (unlink, truncate) made in a thread of its own. */
typedef struct PathCall {
        const char *path;
        int (*fn)(const char *path);
        int result; /* 0 or -errno */
} PathCall;

static void *path_call_thread(void *p) {
        PathCall *a = p;
        a->result = a->fn(a->path) < 0 ? -errno : 0;
        return NULL;
}

/* An upload of a file with unsynced data asked for (the flush xattr) while its Delete File is in
 * flight, the share having deleted it already: the upload found the file gone and created it
 * again, so the deleted file came back. It waits for the Delete File's answer now (then the data
 * is dropped). */
START_TEST(test_unlink_upload_starts) {
        PathCall a;
        uint64_t before;
        pthread_t t;

        mnt = mount_with(NULL, "writeback=async,async_delay=3600");
        ck_assert_int_eq(mkdir(P(mnt, "u"), 0755), 0);
        write_file(P(mnt, "u/gone.txt"), "on the share");
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        write_file(P(mnt, "u/gone.txt"), "unsynced, then deleted"); /* dirty, not uploading */
        ck_assert_uint_gt(dirty(mnt), 0);
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=DeleteFile:answer-latency=1500ms"), 0);
        before = counter("DeleteFile");
        a = (PathCall){.path = P(mnt, "u/gone.txt"), .fn = unlink, .result = 1};
        ck_assert_int_eq(pthread_create(&t, NULL, path_call_thread, &a), 0);
        wait_counter_above("DeleteFile", before);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_int_eq(a.result, 0);
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        check_share_absent("u/gone.txt");
}
END_TEST

/* fchmod and futimens through a descriptor of a file replaced on the share by a rename (and of
 * one deleted): they went to the name, i.e. changed the file that replaced it. They change the
 * open file only now. */
START_TEST(test_replaced_open_attrs) {
        const struct timespec times[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
        _cleanup_free_ char *mode_before = NULL, *time_before = NULL;
        struct stat st;
        int fd, fd2;

        mnt = mount_with(NULL, NULL);
        write_file(P(mnt, "f"), "f, to be replaced");
        write_file(P(mnt, "g"), "g, moved over f");
        write_file(P(mnt, "h"), "h, to be deleted");
        fd = open(P(mnt, "f"), O_RDONLY | O_CLOEXEC);
        fd2 = open(P(mnt, "h"), O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_ge(fd2, 0);
        ck_assert_int_eq(rename(P(mnt, "g"), P(mnt, "f")), 0);
        mode_before = strdup(share_mode("f"));
        time_before = strdup(share_header("f", "x-ms-file-last-write-time"));
        ck_assert_int_eq(fchmod(fd, 0600), 0);
        ck_assert_int_eq(futimens(fd, times), 0);
        ck_assert_int_eq(fstat(fd, &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0600);
        ck_assert_int_eq(st.st_mtim.tv_sec, 1000000000);
        ck_assert_int_eq(unlink(P(mnt, "h")), 0);
        ck_assert_int_eq(fchmod(fd2, 0600), 0);
        ck_assert_int_eq(close(fd), 0);
        ck_assert_int_eq(close(fd2), 0);
        ck_assert_str_eq(share_mode("f"), mode_before);
        ck_assert_str_eq(share_header("f", "x-ms-file-last-write-time"), time_before);
        check_share("f", "g, moved over f");
        check_share_absent("h");

        /* Reading a range of the replaced file that is not cached here: not the bytes of the
         * file that has its name now (they were), EIO. */
        mnt_b = mount_with(NULL, NULL);
        write_file(P(mnt_b, "r"), "r, the replaced file's bytes");
        write_file(P(mnt_b, "s"), "s, which replaces it (and is longer)");
        fd = open(P(mnt, "r"), O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(rename(P(mnt, "s"), P(mnt, "r")), 0);
        {
                char buf[64];
                ck_assert_int_eq(errno_of((int)read(fd, buf, sizeof(buf))), EIO);
        }
        ck_assert_int_eq(close(fd), 0);
}
END_TEST

/* utimensat (touch -d) of a new file while its first upload's Create File is in flight (that
 * Create File carries the time the file had when it was sent): the time set reaches the share. */
START_TEST(test_utimens_create_in_flight) {
        const struct timespec times[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
        struct stat st;

        mnt = mount_with(NULL, "writeback=async,async_delay=0.05");
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=CreateFile:latency=1500ms"), 0);
        create_in_flight("touched.txt", "touched");
        ck_assert_msg(utimensat(AT_FDCWD, P(mnt, "touched.txt"), times, 0) == 0, "utimensat: %m");
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        check_share("touched.txt", "touched");
        remount(mnt);
        ck_assert_int_eq(stat(P(mnt, "touched.txt"), &st), 0);
        ck_assert_int_eq(st.st_mtim.tv_sec, 1000000000);
}
END_TEST

/* A change of size alone (no byte written) sets the share's last-write time: truncate(2) of a
 * file not open (to the time of the call), `: > f` (the time of the open), ftruncate() then
 * futimens() (the time set). Each kept the share's old time: the size went with the time
 * preserved, and no Put Range set it. */
START_TEST(test_truncate_mtime) {
        const struct timespec old[2] = {{.tv_sec = 978307200}, {.tv_sec = 978307200}};
        const struct timespec set[2] = {{.tv_sec = 1104537600}, {.tv_sec = 1104537600}};
        const char *names[] = {"by-path.txt", "o-trunc.txt", "futimens.txt"};
        struct timespec start;
        struct stat st;
        int fd;

        mnt = mount_with(NULL, NULL);
        for (size_t k = 0; k < ELEMENTSOF(names); k++) {
                write_file(P(mnt, names[k]), "0123456789");
                ck_assert_int_eq(utimensat(AT_FDCWD, P(mnt, names[k]), old, 0), 0);
        }
        remount(mnt); /* none of them open, dirty or cached */
        ck_assert_int_eq(clock_gettime(CLOCK_REALTIME, &start), 0);
        ck_assert_msg(truncate(P(mnt, "by-path.txt"), 4) == 0, "truncate: %m");
        fd = open(P(mnt, "o-trunc.txt"), O_WRONLY | O_TRUNC | O_CLOEXEC);
        ck_assert_msg(fd >= 0, "open O_TRUNC: %m");
        ck_assert_int_eq(close(fd), 0);
        fd = open(P(mnt, "futimens.txt"), O_RDWR | O_CLOEXEC);
        ck_assert_msg(fd >= 0, "open: %m");
        ck_assert_int_eq(ftruncate(fd, 6), 0);
        ck_assert_int_eq(futimens(fd, set), 0);
        ck_assert_int_eq(close(fd), 0);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        check_share("by-path.txt", "0123");
        check_share("o-trunc.txt", "");
        check_share("futimens.txt", "012345");
        remount(mnt); /* what the share has */
        for (size_t k = 0; k < 2; k++) {
                ck_assert_int_eq(stat(P(mnt, names[k]), &st), 0);
                /* The share keeps 100 ns; the test's clock and the daemon's are the same. */
                ck_assert_msg(
                        st.st_mtim.tv_sec >= start.tv_sec,
                        "%s: the share's time is %lld, before %lld", names[k],
                        (long long)st.st_mtim.tv_sec, (long long)start.tv_sec);
        }
        ck_assert_int_eq(stat(P(mnt, "futimens.txt"), &st), 0);
        ck_assert_int_eq(st.st_mtim.tv_sec, set[1].tv_sec);
}
END_TEST

/* Disk blocks of the cache data files below path (the cache directory), in bytes: what a reclaim
 * frees. Directories' own blocks and dirty records (<id>.dirty and their temporaries) are left
 * out: the durable thread rewrites records whenever it runs, so their blocks come and go under
 * the test (an extra 4 KiB failed a CI run), and a reclaim never touches them. */
static uint64_t tree_bytes(const char *path) {
        DIR *d = opendir(path);
        uint64_t total = 0;
        struct dirent *de;

        ck_assert_msg(d, "opendir %s: %m", path);
        while ((de = readdir(d))) {
                _cleanup_free_ char *sub = NULL;
                struct stat st;

                if (streq(de->d_name, ".") || streq(de->d_name, "..") ||
                    strstr(de->d_name, ".dirty"))
                        continue;
                ck_assert_int_ge(asprintf(&sub, "%s/%s", path, de->d_name), 0);
                ck_assert_int_eq(lstat(sub, &st), 0);
                if (S_ISDIR(st.st_mode))
                        total += tree_bytes(sub);
                else
                        total += (uint64_t)st.st_blocks * 512U;
        }
        (void)closedir(d);
        return total;
}

static int reclaim(FsMount *m, const char *value) {
        _cleanup_free_ char *root = fs_mount_path(m, "");
        ck_assert_ptr_nonnull(root);
        return setxattr(root, "user.azfilesfs.reclaim", value, strlen(value), 0) < 0 ? -errno : 0;
}

/* Drops what the kernel caches of path, so that the next read is the driver's. */
static void drop_page_cache(const char *path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ck_assert_msg(fd >= 0, "open %s: %m", path);
        ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
        (void)close(fd);
}

/* The reclaim xattr: clean cache files go, least recently used first, by the amount asked; the
 * cache directory shrinks by what the stats say; the data reads back from the share; dirty data
 * and open files are never dropped; reads racing with reclaims always see the right bytes. */
START_TEST(test_reclaim) {
        const uint64_t mib = 1024 * 1024;
        const char *r1, *r2, *d, *root;
        uint64_t before, after, freed;
        char names[512], v[8];
        ssize_t n;
        pid_t pid;
        int status, fd;

        mnt = mount_with(NULL, "writeback=async,async_delay=3600");
        root = P(mnt, "");
        r1 = P(mnt, "r1");
        r2 = P(mnt, "r2");
        d = P(mnt, "dirty");
        ck_assert_int_eq(fs_write_pattern(r1, 1, 12 * mib, 1 * mib), 0);
        ck_assert_int_eq(fs_write_pattern(r2, 2, 8 * mib, 1 * mib), 0);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        /* r1 used last: r2 is the least recently used clean file */
        drop_page_cache(r1);
        ck_assert_int_eq(fs_check_pattern(r1, 1, 12 * mib), 0);
        /* dirty, and stays so (async_delay) */
        ck_assert_int_eq(fs_write_pattern(d, 3, 5 * mib, 1 * mib), 0);
        ck_assert_uint_eq(dirty(mnt), 5 * mib);
        ck_assert_uint_eq(stats_number(mnt, "cache_bytes"), 25 * mib);
        ck_assert_uint_eq(stats_number(mnt, "cache_clean_bytes"), 20 * mib);
        ck_assert_uint_eq(stats_number(mnt, "cache_dirty_bytes"), 5 * mib);
        ck_assert_uint_ge(stats_number(mnt, "cache_reclaimable_bytes"), 20 * mib);
        ck_assert_uint_eq(stats_number(mnt, "reclaimed_bytes"), 0);

        /* 1 byte asked: one file goes, the least recently used */
        before = tree_bytes(mnt->cache_dir);
        ck_assert_int_eq(reclaim(mnt, "1"), 0);
        after = tree_bytes(mnt->cache_dir);
        freed = stats_number(mnt, "last_reclaim_bytes");
        ck_assert_uint_ge(freed, 8 * mib);
        ck_assert_uint_lt(freed, 12 * mib);
        ck_assert_uint_eq(before - after, freed);
        ck_assert_uint_eq(stats_number(mnt, "cache_clean_bytes"), 12 * mib);

        /* all: r1 goes too, the dirty file stays */
        ck_assert_int_eq(reclaim(mnt, "all\n"), 0);
        ck_assert_uint_eq(
                before - tree_bytes(mnt->cache_dir), stats_number(mnt, "reclaimed_bytes"));
        ck_assert_uint_ge(stats_number(mnt, "reclaimed_bytes"), 20 * mib);
        ck_assert_uint_eq(stats_number(mnt, "cache_clean_bytes"), 0);
        ck_assert_uint_eq(stats_number(mnt, "cache_reclaimable_bytes"), 0);
        ck_assert_uint_eq(dirty(mnt), 5 * mib);
        ck_assert_uint_ge(tree_bytes(mnt->cache_dir), 5 * mib);
        /* nothing more to drop */
        ck_assert_int_eq(reclaim(mnt, "all"), 0);
        ck_assert_uint_eq(stats_number(mnt, "last_reclaim_bytes"), 0);

        /* the clean files read back from the share, byte for byte */
        ck_assert_int_eq(fs_emu_counter(emu, "GetFile", true, &freed), 0);
        drop_page_cache(r1);
        drop_page_cache(r2);
        ck_assert_int_eq(fs_check_pattern(r1, 1, 12 * mib), 0);
        ck_assert_int_eq(fs_check_pattern(r2, 2, 8 * mib), 0);
        ck_assert_uint_ge(counter("GetFile"), 5); /* 20 MiB in 4 MiB pieces */

        /* an open file's cache stays until it is closed */
        fd = open(r1, O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(reclaim(mnt, "all"), 0);
        ck_assert_uint_eq(stats_number(mnt, "cache_clean_bytes"), 12 * mib);
        ck_assert_int_eq(close(fd), 0);
        /* the kernel sends the release after close() returned: until it arrives the file is
         * still open here, so ask again (bounded) until it has */
        for (unsigned k = 0; k < 10000; k++) {
                ck_assert_int_eq(reclaim(mnt, "all"), 0);
                if (stats_number(mnt, "cache_clean_bytes") == 0)
                        break;
                (void)usleep(1000); /* polling interval; the condition is the cache's size */
        }
        ck_assert_uint_eq(stats_number(mnt, "cache_clean_bytes"), 0);

        /* reads racing with reclaims: always the right bytes */
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                for (unsigned k = 0; k < 20; k++) {
                        drop_page_cache(r2);
                        if (fs_check_pattern(r2, 2, 8 * mib) != 0 ||
                            fs_check_pattern(r1, 1, 12 * mib) != 0)
                                _exit(1);
                }
                _exit(0);
        }
        for (;;) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                ck_assert_int_ge(w, 0);
                if (w == pid)
                        break;
                ck_assert_int_eq(reclaim(mnt, "all"), 0);
        }
        ck_assert_msg(
                WIFEXITED(status) && WEXITSTATUS(status) == 0, "racing reader saw wrong bytes");

        /* the dirty data is intact, and uploaded by the flush */
        ck_assert_int_eq(fs_check_pattern(d, 3, 5 * mib), 0);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        {
                _cleanup_free_ char *data = NULL, *want = malloc(5 * mib);
                size_t size = 0;

                ck_assert_ptr_nonnull(want);
                ck_assert_int_eq(fs_share_read(emu, SHARE, "dirty", &data, &size), 0);
                fs_pattern_fill(3, 0, want, 5 * mib);
                ck_assert_uint_eq(size, 5 * mib);
                ck_assert(memcmp(data, want, size) == 0);
        }

        /* the interface */
        n = listxattr(root, names, sizeof(names));
        ck_assert_int_gt(n, 0);
        ck_assert(memmem(names, (size_t)n, "user.azfilesfs.reclaim", 23));
        ck_assert_int_eq(getxattr(root, "user.azfilesfs.reclaim", v, sizeof(v)), 0);
        ck_assert_int_eq(reclaim(mnt, "lots"), -EINVAL);
        ck_assert_int_eq(reclaim(mnt, "-1"), -EINVAL);
        ck_assert_int_eq(reclaim(mnt, "12x"), -EINVAL);
}
END_TEST

/* Waits (bounded, 20 s) until m's cache holds exactly bytes of file data (every Get Range in
 * flight has landed). */
static void wait_cache_bytes(FsMount *m, uint64_t bytes) {
        for (unsigned k = 0; k < 20000 && stats_number(m, "cache_bytes") != bytes; k++)
                (void)usleep(1000); /* polling interval; the condition is the cache's size */
        ck_assert_uint_eq(stats_number(m, "cache_bytes"), bytes);
}

/* Drops m's clean cache files (bounded, 20 s): the kernel may send the release of a file closed
 * just before after close() returned, and an open file's cache stays. */
static void reclaim_all(FsMount *m) {
        for (unsigned k = 0; k < 20000; k++) {
                ck_assert_int_eq(reclaim(m, "all"), 0);
                if (stats_number(m, "cache_clean_bytes") == 0)
                        return;
                (void)usleep(1000); /* polling interval; the condition is the cache's size */
        }
        ck_abort_msg("clean cache not dropped within 20 s");
}

/* Bytes the daemon of m read with read()-like calls (rchar of /proc/PID/io): not those it
 * received from sockets or moved with splice(). */
static uint64_t daemon_rchar(FsMount *m) {
        _cleanup_free_ char *path = NULL;
        char line[256];
        uint64_t v = UINT64_MAX;
        FILE *f;

        ck_assert_int_ge(asprintf(&path, "/proc/%d/io", (int)m->pid), 0);
        f = fopen(path, "re");
        ck_assert_msg(f, "open %s: %m", path);
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "rchar: %" SCNu64, &v) == 1)
                        break;
        (void)fclose(f);
        ck_assert_uint_ne(v, UINT64_MAX);
        return v;
}

/* Cold reads of an 11-piece file from a mount that has none of it cached (the Get Files from the
 * emulator's counters): the first read fetches its piece and the 4 pieces after it (the
 * readahead, 16 MiB); reading on fetches every piece exactly once, and the bytes and their
 * SHA-256 are the share's, spliced from the cache file (the daemon reads none of them itself); a
 * read without kernel readahead at a random place fetches only its piece; Get Files answered 503 or
 * cut short are retried and the bytes are still right. */
START_TEST(test_readahead) {
        const uint64_t mib = 1024 * 1024, piece = 4 * mib, size = 42 * mib + 12345;
        const uint64_t pieces = 11, seed = 5;
        static char buf[128 * 1024], want[128 * 1024];
        uint8_t sha_share[32], sha_mount[32];
        const char *f;
        uint64_t v, rchar;
        int fd;

        mnt = mount_with(NULL, NULL);
        ck_assert_int_eq(fs_write_pattern(P(mnt, "seq.bin"), seed, size, 1 * mib), 0);
        ck_assert_int_eq(fs_share_sha256(emu, SHARE, "seq.bin", sha_share), 0);
        mnt_b = mount_with(NULL, NULL); /* its own cache: every byte comes from the share */
        f = P(mnt_b, "seq.bin");

        /* the first read: its piece and 4 ahead, nothing more */
        ck_assert_int_eq(fs_emu_counter(emu, NULL, true, &v), 0);
        fd = open(f, O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pread(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
        fs_pattern_fill(seed, 0, want, sizeof(want));
        ck_assert(memcmp(buf, want, sizeof(buf)) == 0);
        wait_cache_bytes(mnt_b, 5 * piece);
        ck_assert_uint_eq(counter("GetFile"), 5);
        ck_assert_int_eq(close(fd), 0);
        /* reading on: every piece once, the share's bytes */
        rchar = daemon_rchar(mnt_b);
        ck_assert_int_eq(fs_file_sha256(f, sha_mount), 0);
        /* answered with splice from the cache file: the daemon did not read the bytes itself
         * (with a pread into a buffer per read it did: 42 MiB for this file) */
        rchar = daemon_rchar(mnt_b) - rchar;
        ck_assert_msg(rchar < size / 8, "the daemon read %" PRIu64 " bytes itself", rchar);
        ck_assert(memcmp(sha_mount, sha_share, sizeof(sha_share)) == 0);
        ck_assert_int_eq(fs_check_pattern(f, seed, size), 0);
        ck_assert_uint_eq(counter("GetFile"), pieces);
        ck_assert_uint_eq(stats_number(mnt_b, "cache_bytes"), size);

        /* random reads (no kernel readahead): only the piece read */
        reclaim_all(mnt_b);
        drop_page_cache(f);
        ck_assert_int_eq(fs_emu_counter(emu, NULL, true, &v), 0);
        fd = open(f, O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM), 0);
        ck_assert_int_eq(pread(fd, buf, 4096, (off_t)(7 * piece + 65536)), 4096);
        fs_pattern_fill(seed, 7 * piece + 65536, want, 4096);
        ck_assert(memcmp(buf, want, 4096) == 0);
        wait_cache_bytes(mnt_b, piece);
        ck_assert_uint_eq(counter("GetFile"), 1);
        ck_assert_int_eq(close(fd), 0);

        /* the first 4 Get Files answered 503, the next 2 cut short: retried, right bytes */
        reclaim_all(mnt_b);
        drop_page_cache(f);
        ck_assert_int_eq(
                fs_emu_set_faults(
                        emu, "op=GetFile:503,count=4,retry-after=0;op=GetFile:truncate,count=2"),
                0);
        ck_assert_int_eq(fs_emu_counter(emu, NULL, true, &v), 0);
        ck_assert_int_eq(fs_check_pattern(f, seed, size), 0);
        ck_assert_uint_eq(counter("GetFile"), pieces + 6);
        ck_assert_uint_eq(stats_number(mnt_b, "requests_failed"), 0);
}
END_TEST

/* The share gone: cached data is still read, unknown names fail at once (no hang), writes land
 * in the cache and close() says they are not on the share, the flush gives up within its bound. */
START_TEST(test_offline) {
        const char *f;
        struct stat st;
        int fd;

        mnt = mount_with(NULL, "retry_budget=2");
        f = P(mnt, "cached.txt");
        write_file(f, "cached data");
        ck_assert_str_eq(read_file(f), "cached data");
        ck_assert_int_eq(emu_instance_stop(emu), 0);
        ck_assert_str_eq(read_file(f), "cached data");
        ck_assert_int_eq(stat(f, &st), 0);
        ck_assert_int_ne(errno_of(stat(P(mnt, "unknown"), &st)), 0);
        fd = open(f, O_WRONLY | O_APPEND | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, " more", 5), 5);
        ck_assert_int_ne(errno_of(close(fd)), 0);
        ck_assert_uint_gt(dirty(mnt), 0);
        ck_assert_int_lt(fs_flush(mnt, 1), 0);
        ck_assert_str_eq(read_file(f), "cached data more");
}
END_TEST

START_TEST(test_crash) {
        char cache[] = "/tmp/fs-basic-cache.XXXXXX";

        ck_assert_ptr_nonnull(mkdtemp(cache));
        mnt = mount_with(cache, "writeback=async,async_delay=3600");
        write_file(P(mnt, "unsynced.txt"), "not yet on the share");
        ck_assert_int_eq(fs_write_pattern(P(mnt, "big.bin"), 3, 6 * 1024 * 1024, 65536), 0);
        /* a dirty file whose directory is renamed before the crash */
        ck_assert_int_eq(mkdir(P(mnt, "d1"), 0755), 0);
        write_file(P(mnt, "d1/in.txt"), "moved with its directory");
        ck_assert_int_eq(rename(P(mnt, "d1"), P(mnt, "d2")), 0);
        /* a file on the share, shrunk and grown again before the crash (fsync: on the share) */
        write_file(P(mnt, "shrunk.txt"), "old content, longer than sixteen");
        {
                int fd = open(P(mnt, "shrunk.txt"), O_RDONLY | O_CLOEXEC);
                ck_assert_int_ge(fd, 0);
                ck_assert_int_eq(fsync(fd), 0);
                ck_assert_int_eq(close(fd), 0);
        }
        check_share("shrunk.txt", "old content, longer than sixteen");
        shrink_grow(P(mnt, "shrunk.txt"));
        ck_assert_uint_gt(dirty(mnt), 0);
        check_share_absent("unsynced.txt"); /* created here: on the share with its upload */
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        mnt = fs_mount_free(mnt);
        mnt = mount_with(cache, NULL);
        /* the new mount uploaded it before serving */
        check_share("unsynced.txt", "not yet on the share");
        check_share("d2/in.txt", "moved with its directory");
        check_share_absent("d1/in.txt");
        check_share_bytes("shrunk.txt", shrunk_grown, sizeof(shrunk_grown));
        ck_assert_str_eq(read_file(P(mnt, "unsynced.txt")), "not yet on the share");
        ck_assert_int_eq(fs_check_pattern(P(mnt, "big.bin"), 3, 6 * 1024 * 1024), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        mnt = fs_mount_free(mnt);
        fs_rm_rf(cache);
}
END_TEST

static void write_credentials(const char *path, const char *text) {
        FILE *f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        fputs(text, f);
        ck_assert_int_eq(fclose(f), 0);
        ck_assert_int_eq(chmod(path, 0600), 0);
}

/* The same share through a SAS token and through a managed identity (token from the emulator's
 * Instance Metadata Service). */
START_TEST(test_auth) {
        _cleanup_free_ uint8_t *key = NULL;
        _cleanup_free_ char *query = NULL, *text = NULL, *opts = NULL;
        char expiry[SAS_TIME_MAX];
        size_t key_size = 0;
        struct timespec t0, t1;
        struct stat st;
        SasToken t = {
                .kind = SAS_SERVICE,
                .version = (char *)"2025-05-05",
                .permissions = (char *)"rcwdl",
                .protocol = (char *)"https,http",
                .resource = (char *)"s",
        };

        mnt = mount_with(NULL, NULL);
        write_file(P(mnt, "by-key.txt"), "key");
        ck_assert_int_eq(fs_mount_stop(mnt), 0);

        ck_assert_int_eq(base64_decode(EMU_TEST_KEY, &key, &key_size), 0);
        t.expiry = sas_format_time(expiry, (int64_t)(time(NULL) + 3600) * INT64_C(1000000000));
        ck_assert_int_eq(sas_generate(&t, EMU_TEST_ACCOUNT, SHARE, key, key_size, &query), 0);
        ck_assert_int_ge(asprintf(&text, "[storage]\nsas_token = %s\n", query), 0);
        write_credentials(mnt->credentials, text);
        ck_assert_int_eq(fs_mount_start(mnt), 0);
        ck_assert_str_eq(read_file(P(mnt, "by-key.txt")), "key");
        write_file(P(mnt, "by-sas.txt"), "sas");
        check_share("by-sas.txt", "sas");
        ck_assert_int_eq(fs_mount_stop(mnt), 0);

        write_credentials(mnt->credentials, "[storage]\nmanaged_identity = yes\n");
        ck_assert_int_ge(asprintf(&opts, "imds=%s", emu->imds_url), 0);
        free(mnt->options);
        mnt->options = TAKE_PTR(opts);
        ck_assert_int_eq(fs_mount_start(mnt), 0);
        ck_assert_str_eq(read_file(P(mnt, "by-sas.txt")), "sas");
        write_file(P(mnt, "by-identity.txt"), "mi");
        check_share("by-identity.txt", "mi");

        /* IMDS not answering: waiting for a token counts in retry_budget, as a request's tries
         * do (the token's fetch gave up after its own 60 s, 10 s a try: the mount took that long
         * to come up, and so did every operation) */
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
        ck_assert_int_ge(asprintf(&opts, "imds=%s,retry_budget=3", emu->imds_url), 0);
        free(mnt->options);
        mnt->options = TAKE_PTR(opts);
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=ImdsToken:latency=60s"), 0);
        ck_assert_int_eq(fs_mount_start(mnt), 0); /* "not reachable now; mounting anyway" */
        ck_assert_int_eq(clock_gettime(CLOCK_MONOTONIC, &t0), 0);
        ck_assert_int_eq(stat(P(mnt, "by-identity.txt"), &st), -1);
        ck_assert_int_eq(clock_gettime(CLOCK_MONOTONIC, &t1), 0);
        ck_assert_msg(
                t1.tv_sec - t0.tv_sec < 30, "stat() waited %lld s for a token (retry_budget=3)",
                (long long)(t1.tv_sec - t0.tv_sec));
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
}
END_TEST

/* Runs the driver with args and returns its exit status; its output in *ret_out. */
static int run_cli(const char *const *args, char **ret_out) {
        _cleanup_free_ char *cmd = NULL, *out = NULL;
        const char *bin = getenv("AZFILESFS");
        size_t len = 0, alloc = 0;
        char buf[4096];
        FILE *p;
        int status;

        ck_assert_int_ge(asprintf(&cmd, "%s", bin), 0);
        for (size_t k = 0; args[k]; k++) {
                char *c = NULL;
                ck_assert_int_ge(asprintf(&c, "%s '%s'", cmd, args[k]), 0);
                free(cmd);
                cmd = c;
        }
        {
                char *c = NULL;
                ck_assert_int_ge(asprintf(&c, "%s 2>&1 </dev/null", cmd), 0);
                free(cmd);
                cmd = c;
        }
        p = popen(cmd, "re");
        ck_assert_ptr_nonnull(p);
        while (fgets(buf, sizeof(buf), p)) {
                size_t l = strlen(buf);
                if (len + l + 1 > alloc) {
                        alloc = (len + l + 1) * 2;
                        out = realloc(out, alloc);
                        ck_assert_ptr_nonnull(out);
                }
                memcpy(out + len, buf, l + 1);
                len += l;
        }
        status = pclose(p);
        *ret_out = out ? TAKE_PTR(out) : strdup("");
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

START_TEST(test_cli) {
        char dir[] = "/tmp/fs-basic-cli.XXXXXX";
        _cleanup_free_ char *src = NULL, *cred = NULL, *mp = NULL, *opt = NULL, *out = NULL;
        FILE *f;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        ck_assert_int_ge(asprintf(&src, "%s/%s", emu->files_url, SHARE), 0);
        ck_assert_int_ge(asprintf(&cred, "%s/cred", dir), 0);
        ck_assert_int_ge(asprintf(&mp, "%s/mnt", dir), 0);
        ck_assert_int_eq(mkdir(mp, 0755), 0);
        f = fopen(cred, "we");
        ck_assert_ptr_nonnull(f);
        fprintf(f, "[storage]\naccount_key = %s\n", EMU_TEST_KEY);
        fclose(f);
        ck_assert_int_eq(chmod(cred, 0644), 0);
        ck_assert_int_ge(asprintf(&opt, "credentials=%s,cache_dir=%s/cache", cred, dir), 0);

        /* readable by others: refused, naming the file; the key never printed */
        ck_assert_int_eq(run_cli((const char *[]){src, mp, "-f", "-o", opt, NULL}, &out), 1);
        ck_assert_msg(strstr(out, cred), "%s", out);
        ck_assert_msg(!strstr(out, EMU_TEST_KEY), "%s", out);
        free(out);
        /* two credentials at once */
        ck_assert_int_eq(chmod(cred, 0600), 0);
        f = fopen(cred, "ae");
        fprintf(f, "sas_token = sv=2025-05-05&sig=x\n");
        fclose(f);
        ck_assert_int_eq(run_cli((const char *[]){src, mp, "-f", "-o", opt, NULL}, &out), 1);
        ck_assert_msg(strstr(out, "exactly one"), "%s", out);
        free(out);
        /* credentials the share answers with 401 (a SAS without its signature): the mount fails,
         * as for a 403; it went on as if the share were out of reach */
        f = fopen(cred, "we");
        fprintf(f, "[storage]\nsas_token = sv=2025-05-05&ss=f&srt=sco&sp=rl\n");
        fclose(f);
        ck_assert_int_eq(run_cli((const char *[]){src, mp, "-f", "-o", opt, NULL}, &out), 1);
        ck_assert_msg(strstr(out, "refused"), "%s", out);
        free(out);
        /* missing file */
        ck_assert_int_eq(unlink(cred), 0);
        ck_assert_int_eq(run_cli((const char *[]){src, mp, "-f", "-o", opt, NULL}, &out), 1);
        ck_assert_msg(strstr(out, cred), "%s", out);
        free(out);
        /* unknown option, bad source, bad value */
        ck_assert_int_eq(
                run_cli((const char *[]){src, mp, "-o", "credentials=/x,colour=blue", NULL}, &out),
                1);
        ck_assert_msg(strstr(out, "colour"), "%s", out);
        free(out);
        ck_assert_int_eq(
                run_cli((const char *[]){"ftp://x/y", mp, "-o", "credentials=/x", NULL}, &out), 1);
        free(out);
        ck_assert_int_eq(
                run_cli((const char *[]){src, mp, "-o", "credentials=/x,file_mode=999", NULL},
                        &out),
                1);
        ck_assert_msg(strstr(out, "file_mode"), "%s", out);
        free(out);
        ck_assert_int_eq(run_cli((const char *[]){"--help", NULL}, &out), 0);
        ck_assert_msg(strstr(out, "user.azfilesfs.flush"), "%s", out);
        free(out);
        ck_assert_int_eq(run_cli((const char *[]){"--version", NULL}, &out), 0);
        ck_assert_msg(strstr(out, "azfilesfs"), "%s", out);
        free(out);
        out = NULL;
        /* nothing got mounted */
        ck_assert_int_eq(dir_count(mp), 0);
        fs_rm_rf(dir);
}
END_TEST

/* The share holds exactly size bytes of the pattern of seed, except [over_off, over_off +
 * over_len), which holds the pattern of over_seed. */
static void check_share_pattern(
        const char *rel,
        uint64_t seed,
        size_t size,
        uint64_t over_seed,
        size_t over_off,
        size_t over_len) {
        _cleanup_free_ char *data = NULL, *want = NULL;
        size_t got = 0;
        int r = fs_share_read(emu, SHARE, rel, &data, &got);

        ck_assert_msg(r == 0, "share read %s: %s", rel, strerror(-r));
        ck_assert_msg(got == size, "share %s: %zu bytes, want %zu", rel, got, size);
        want = malloc(size);
        ck_assert_ptr_nonnull(want);
        fs_pattern_fill(seed, 0, want, size);
        if (over_len > 0)
                fs_pattern_fill(over_seed, over_off, want + over_off, over_len);
        for (size_t off = 0; off < size; off += 4096)
                ck_assert_msg(
                        memcmp(data + off, want + off, MIN((size_t)4096, size - off)) == 0,
                        "share %s differs at %zu", rel, off);
}

/* A flush of a file with more dirty pieces than one round used to take (64): one pipeline of
 * Put Ranges, one Get File Properties for the ETag at the end, the share's bytes exact. */
START_TEST(test_flush_pipeline) {
        const uint64_t mib = 1024 * 1024;
        const size_t size = 66 * 4 * mib - 1000; /* 66 pieces */
        uint64_t props = 0, ranges = 0;

        mnt = mount_with(NULL, "writeback=async,async_delay=3600,max_dirty=1G,cache_size=2G");
        ck_assert_int_eq(fs_write_pattern(P(mnt, "big.bin"), 21, size, 1 * mib), 0);
        ck_assert_uint_eq(dirty(mnt), size);
        ck_assert_int_eq(fs_emu_counter(emu, NULL, true, &props), 0); /* reset */
        ck_assert_int_eq(fs_flush(mnt, 100), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        ck_assert_int_eq(fs_emu_counter(emu, "GetFileProperties", false, &props), 0);
        ck_assert_int_eq(fs_emu_counter(emu, "PutRange", false, &ranges), 0);
        ck_assert_uint_eq(props, 1);
        ck_assert_uint_eq(ranges, 66);
        check_share_pattern("big.bin", 21, size, 0, 0, 0);
        /* the ETag it learnt is the share's: a new open keeps the cache (no Get Range) */
        ck_assert_int_eq(fs_emu_counter(emu, NULL, true, &props), 0);
        ck_assert_int_eq(fs_check_pattern(P(mnt, "big.bin"), 21, size), 0);
        ck_assert_int_eq(fs_emu_counter(emu, "GetFile", false, &ranges), 0);
        ck_assert_uint_eq(ranges, 0);
}
END_TEST

/* Write-through in the default mode: while a big file is still open for writing, the pieces the
 * writer has moved past reach the share (Put Ranges before close()); a piece written again after
 * its early upload is uploaded again, so that after close() the share holds the final bytes;
 * close() still returns only when every byte is there; the time set on the open file (as tar
 * does) is the share's. */
START_TEST(test_write_through) {
        const uint64_t mib = 1024 * 1024;
        const size_t size = 10 * 4 * mib + 1000, first = 6 * 4 * mib;
        const int64_t when = 1500000000;
        _cleanup_free_ char *buf = malloc(1 * mib);
        uint64_t before, v;
        struct timespec times[2] = {{.tv_sec = when}, {.tv_sec = when}};
        struct stat st;
        int fd;

        ck_assert_ptr_nonnull(buf);
        mnt = mount_with(NULL, NULL);
        before = counter("PutRange");
        fd = open(P(mnt, "wt.bin"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ck_assert_msg(fd >= 0, "open: %m");
        for (size_t off = 0; off < first; off += mib) {
                fs_pattern_fill(31, off, buf, mib);
                ck_assert_int_eq(pwrite(fd, buf, mib, (off_t)off), (ssize_t)mib);
        }
        /* the file is open, the writer is in piece 6: pieces 0-5 go to the share now */
        wait_counter_above("PutRange", before);
        /* and one of them is answered (clean again here): dirty data below what was written */
        for (unsigned k = 0; k < 20000 && dirty(mnt) >= first; k++)
                (void)usleep(1000); /* polling interval; the condition is the dirty count */
        ck_assert_uint_lt(dirty(mnt), first);
        /* piece 1 written again after its early upload (part of it) */
        fs_pattern_fill(32, 4 * mib + 4096, buf, mib);
        ck_assert_int_eq(pwrite(fd, buf, mib, (off_t)(4 * mib + 4096)), (ssize_t)mib);
        for (size_t off = first; off < size; off += mib) {
                size_t n = MIN((size_t)mib, size - off);
                fs_pattern_fill(31, off, buf, n);
                ck_assert_int_eq(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
        }
        ck_assert_int_eq(futimens(fd, times), 0);
        ck_assert_msg(close(fd) == 0, "close: %m");
        /* close() returned: every byte is on the share, nothing dirty */
        ck_assert_uint_eq(dirty(mnt), 0);
        check_share_pattern("wt.bin", 31, size, 32, 4 * mib + 4096, mib);
        ck_assert_int_eq(fs_emu_counter(emu, "CreateFile", false, &v), 0);
        ck_assert_uint_eq(v, 1);
        /* the time tar would set is the share's (a fresh mount reads it from there) */
        remount(mnt);
        ck_assert_int_eq(stat(P(mnt, "wt.bin"), &st), 0);
        ck_assert_int_eq(st.st_mtim.tv_sec, when);
}
END_TEST

/* Write-only descriptors skip the kernel's page cache (azfilesfs opens them with direct I/O:
 * one copy less per byte written, fusefs/SEMANTICS.md). Another descriptor of the file that had
 * read the old bytes, and its shared mapping, must still see every write at once. The mincore()
 * check is what shows direct I/O: a write through the page cache leaves the page resident. */
START_TEST(test_write_only) {
        const size_t page = 4096, size = 3 * page + 100;
        _cleanup_free_ char *want = malloc(size + 2 * page), *got = malloc(size + 2 * page);
        const char *path;
        struct stat st;
        char *map;
        int w, r, rw;

        ck_assert_ptr_nonnull(want);
        ck_assert_ptr_nonnull(got);
        mnt = mount_with(NULL, NULL);
        path = P(mnt, "wo.bin");
        memset(want, 'a', size);
        rw = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ck_assert_msg(rw >= 0, "open: %m");
        ck_assert_int_eq(pwrite(rw, want, size, 0), (ssize_t)size);

        /* the reader has every old byte in the page cache, and a shared mapping of them */
        r = open(path, O_RDONLY | O_CLOEXEC);
        ck_assert_msg(r >= 0, "open: %m");
        ck_assert_int_eq(pread(r, got, size, 0), (ssize_t)size);
        ck_assert_int_eq(memcmp(got, want, size), 0);
        map = mmap(NULL, size, PROT_READ, MAP_SHARED, r, 0);
        ck_assert_msg(map != MAP_FAILED, "mmap: %m");
        ck_assert_int_eq(map[page], 'a');

        /* a whole page, a few bytes inside another, and past the end */
        w = open(path, O_WRONLY | O_CLOEXEC);
        ck_assert_msg(w >= 0, "open: %m");
        memset(want + page, 'b', page);
        ck_assert_int_eq(pwrite(w, want + page, page, (off_t)page), (ssize_t)page);
        /* the write went around the page cache: the kernel dropped its copy of that page */
        unsigned char resident[4] = {0};
        ck_assert_int_eq(mincore(map, size, resident), 0);
        ck_assert_msg(!(resident[1] & 1), "the written page is still in the page cache");
        ck_assert_int_eq(resident[0] & 1, 1);
        memcpy(want + 10, "ccc", 3);
        ck_assert_int_eq(pwrite(w, "ccc", 3, 10), 3);
        memset(want + size, 'd', page);
        ck_assert_int_eq(pwrite(w, want + size, page, (off_t)size), (ssize_t)page);

        ck_assert_int_eq(fstat(r, &st), 0);
        ck_assert_int_eq(st.st_size, (off_t)(size + page));
        ck_assert_int_eq(pread(r, got, size + page, 0), (ssize_t)(size + page));
        ck_assert_msg(memcmp(got, want, size + page) == 0, "reader sees stale bytes");
        ck_assert_int_eq(map[page], 'b');
        ck_assert_int_eq(map[10], 'c');
        ck_assert_int_eq(pread(rw, got, size + page, 0), (ssize_t)(size + page));
        ck_assert_msg(memcmp(got, want, size + page) == 0, "O_RDWR descriptor sees stale bytes");

        /* a write-only descriptor cannot be mapped (the kernel's rule); O_RDWR still maps shared */
        ck_assert_ptr_eq(mmap(NULL, page, PROT_WRITE, MAP_SHARED, w, 0), MAP_FAILED);
        ck_assert_int_eq(errno, EACCES);
        char *wmap = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0);
        ck_assert_msg(wmap != MAP_FAILED, "mmap O_RDWR: %m");
        wmap[0] = 'e';
        want[0] = 'e';
        ck_assert_int_eq(msync(wmap, page, MS_SYNC), 0);
        ck_assert_int_eq(munmap(wmap, page), 0);

        ck_assert_int_eq(munmap(map, size), 0);
        ck_assert_msg(close(w) == 0, "close: %m");
        ck_assert_msg(close(r) == 0, "close: %m");
        ck_assert_msg(close(rw) == 0, "close: %m");
        check_share_bytes("wo.bin", want, size + page);
        remount(mnt);
        r = open(path, O_RDONLY | O_CLOEXEC);
        ck_assert_msg(r >= 0, "open: %m");
        ck_assert_int_eq(read(r, got, size + page + 1), (ssize_t)(size + page));
        ck_assert_int_eq(memcmp(got, want, size + page), 0);
        ck_assert_int_eq(close(r), 0);
}
END_TEST

typedef struct {
        const char *path;
        ssize_t result;
        int error;
} WriteJob;

static void *write_b_page(void *userdata) {
        WriteJob *j = userdata;
        char page[4096];
        int fd = open(j->path, O_WRONLY | O_CLOEXEC);

        memset(page, 'b', sizeof(page));
        j->result = fd < 0 ? -1 : pwrite(fd, page, sizeof(page), 0);
        j->error = errno;
        if (fd >= 0)
                (void)close(fd);
        return NULL;
}

/* A read of the range while a direct write waits (here for uploads beyond max_dirty) gets the
 * old bytes and puts them in the page cache again; no read after the write may see them. Linux
 * 6.18 drops the range both before it sends the write and after the answer (checked with
 * mincore()); kernels before 6.6 do not drop it at all, so azfilesfs drops it too when it
 * answers the write (fs-data.c, write_try). On 6.18 the test passes without that as well. */
START_TEST(test_write_only_race) {
        const uint64_t mib = 1024 * 1024;
        char got[4096];
        WriteJob job = {.result = -1};
        pthread_t t;
        uint64_t before;
        int r;

        mnt = mount_with(NULL, "writeback=async,async_delay=3600,max_dirty=4M");
        job.path = P(mnt, "race.bin");
        memset(got, 'a', sizeof(got));
        r = open(job.path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ck_assert_msg(r >= 0, "open: %m");
        ck_assert_int_eq(pwrite(r, got, sizeof(got), 0), (ssize_t)sizeof(got));
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_int_eq(pread(r, got, sizeof(got), 0), (ssize_t)sizeof(got));
        ck_assert_int_eq(got[0], 'a');

        /* more dirty data than max_dirty (4 MiB and 64 KiB for the file), its uploads slow: the
         * next writer waits for them */
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=PutRange:latency=2000ms"), 0);
        before = counter("PutRange");
        ck_assert_int_eq(fs_write_pattern(P(mnt, "filler.bin"), 3, 4 * mib, 1 * mib), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, write_b_page, &job), 0);
        wait_counter_above("PutRange", before); /* the waiting writer started the uploads */
        /* the write is not answered yet: the old bytes, now in the page cache again */
        ck_assert_int_eq(pread(r, got, sizeof(got), 0), (ssize_t)sizeof(got));
        ck_assert_int_eq(got[0], 'a');
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_msg(job.result == (ssize_t)sizeof(got), "write: %s", strerror(job.error));
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        ck_assert_int_eq(pread(r, got, sizeof(got), 0), (ssize_t)sizeof(got));
        ck_assert_msg(got[0] == 'b' && got[4095] == 'b', "a read after the write sees old bytes");
        ck_assert_int_eq(close(r), 0);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
}
END_TEST

/* A reader on A with the file open (O_DIRECT: every read reaches the daemon) while B writes new
 * versions of the same size and A opens the file again after each (its open finds a new ETag and
 * resets the cache): every read is whole and holds bytes of the versions, never zeros. */
typedef struct RaceReader {
        const char *path;
        atomic_bool stop;
        uint64_t reads;
        char bad[160];
} RaceReader;

static void *race_read(void *userdata) {
        RaceReader *rr = userdata;
        const size_t len = 1024 * 1024;
        _cleanup_free_ uint8_t *buf = aligned_alloc(4096, len);
        int fd = open(rr->path, O_RDONLY | O_DIRECT | O_CLOEXEC);

        if (!buf || fd < 0) {
                (void)snprintf(rr->bad, sizeof(rr->bad), "open: %m");
                return NULL;
        }
        while (!atomic_load(&rr->stop) && !rr->bad[0]) {
                for (off_t off = 0; off < 4 * (off_t)len && !rr->bad[0]; off += (off_t)len) {
                        ssize_t n = pread(fd, buf, len, off);
                        if (n != (ssize_t)len) {
                                (void)snprintf(
                                        rr->bad, sizeof(rr->bad), "read at %lld: %zd (%m)",
                                        (long long)off, n);
                                break;
                        }
                        /* A read at the moment of the reset may mix two versions. */
                        for (size_t k = 0; k < len; k++)
                                if (buf[k] < 'A' || buf[k] > 'Z') {
                                        (void)snprintf(
                                                rr->bad, sizeof(rr->bad),
                                                "read at %lld: byte %zu is %d, of no version",
                                                (long long)off, k, buf[k]);
                                        break;
                                }
                        rr->reads++;
                }
        }
        (void)close(fd);
        return NULL;
}

static void write_version(const char *path, unsigned v, size_t size) {
        _cleanup_free_ char *data = malloc(size);
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

        ck_assert_ptr_nonnull(data);
        memset(data, 'A' + (int)(v % 26), size);
        ck_assert_msg(fd >= 0, "open %s: %m", path);
        ck_assert_int_eq(pwrite(fd, data, size, 0), (ssize_t)size);
        ck_assert_msg(close(fd) == 0, "close %s: %m", path);
}

START_TEST(test_reset_race) {
        const size_t size = 4 * 1024 * 1024;
        RaceReader rr = {};
        pthread_t t;
        unsigned v;

        mnt = mount_with(NULL, NULL);
        mnt_b = mount_with(NULL, NULL);
        rr.path = P(mnt, "versions.bin");
        write_version(P(mnt_b, "versions.bin"), 0, size);
        ck_assert_int_eq(pthread_create(&t, NULL, race_read, &rr), 0);
        for (v = 1; v <= 60 && !rr.bad[0]; v++) {
                int fd;
                write_version(P(mnt_b, "versions.bin"), v, size);
                fd = open(rr.path, O_RDONLY | O_CLOEXEC); /* finds the new version */
                ck_assert_msg(fd >= 0, "open: %m");
                ck_assert_int_eq(close(fd), 0);
        }
        atomic_store(&rr.stop, true);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_msg(!rr.bad[0], "after %u versions, %" PRIu64 " reads: %s", v, rr.reads, rr.bad);
        ck_assert_uint_gt(rr.reads, 0);
}
END_TEST

typedef struct PageJob {
        const char *path;
        int flags;
        ssize_t result;
        int error;
        atomic_bool done;
} PageJob;

/* Writes 100 bytes of 'w' at 100 (flags O_WRONLY) or reads the first page, then closes. */
static void *page_job(void *userdata) {
        PageJob *j = userdata;
        char page[4096];
        int fd = open(j->path, j->flags | O_CLOEXEC);

        memset(page, 'w', sizeof(page));
        if (fd < 0)
                j->result = -1;
        else if ((j->flags & O_ACCMODE) == O_WRONLY)
                j->result = pwrite(fd, page, 100, 100);
        else
                j->result = pread(fd, page, sizeof(page), 0);
        j->error = errno;
        if (fd >= 0 && close(fd) < 0 && j->result >= 0) {
                j->result = -1;
                j->error = errno;
        }
        atomic_store(&j->done, true);
        return NULL;
}

/* Ends every request of m's FUSE connection (fusectl's abort), as an operator would for a mount
 * whose daemon hangs in the kernel: the test's threads and the daemon can then exit. */
static void abort_connection(FsMount *m) {
        char line[4096], path[128];
        unsigned maj, min = 0;
        bool found = false;
        FILE *f = fopen("/proc/self/mountinfo", "re");

        while (f && !found && fgets(line, sizeof(line), f))
                found = strstr(line, m->mountpoint) && strstr(line, "fuse.azfilesfs") &&
                        sscanf(line, "%*u %*u %u:%u", &maj, &min) == 2;
        if (f)
                (void)fclose(f);
        (void)mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, NULL);
        (void)snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%u/abort", min);
        if (found) {
                int fd = open(path, O_WRONLY | O_CLOEXEC);
                if (fd >= 0) {
                        (void)write(fd, "1", 1);
                        (void)close(fd);
                }
        }
}

START_TEST(test_inval_deadlock) {
        PageJob w = {.flags = O_WRONLY}, r = {.flags = O_RDONLY};
        pthread_t tw, tr;
        char got[200];
        uint64_t before;
        unsigned k;
        int keep;

        mnt = mount_with(NULL, NULL);
        ck_assert_int_eq(fs_write_pattern(P(mnt, "f.bin"), 5, 4 * 1024 * 1024, 1024 * 1024), 0);
        remount(mnt); /* nothing cached */
        w.path = r.path = P(mnt, "f.bin");
        keep = open(w.path, O_RDONLY | O_CLOEXEC); /* the kernel may cache the file's pages */
        ck_assert_int_ge(keep, 0);
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=GetFile:latency=1500ms"), 0);
        before = counter("GetFile");
        /* the write covers part of piece 0: it waits for the piece's Get Range */
        ck_assert_int_eq(pthread_create(&tw, NULL, page_job, &w), 0);
        wait_counter_above("GetFile", before);
        /* the read locks its pages in the kernel and waits for the same Get Range, after the
         * write */
        ck_assert_int_eq(pthread_create(&tr, NULL, page_job, &r), 0);
        wait_figure(stat_figure, "reads_waiting", 1);
        for (k = 0; k < 20000 && !(atomic_load(&w.done) && atomic_load(&r.done)); k++)
                (void)usleep(1000); /* polling interval; the condition is both jobs' end */
        if (k == 20000)
                abort_connection(mnt);
        ck_assert_int_eq(pthread_join(tw, NULL), 0);
        ck_assert_int_eq(pthread_join(tr, NULL), 0);
        ck_assert_msg(
                k < 20000,
                "the write and the read hung (the daemon's I/O thread waited for the read's pages)");
        ck_assert_msg(w.result == 100, "write: %zd (%s)", w.result, strerror(w.error));
        ck_assert_msg(r.result == 4096, "read: %zd (%s)", r.result, strerror(r.error));
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        /* no read after the write sees the old bytes; the share has the new ones */
        ck_assert_int_eq(pread(keep, got, sizeof(got), 0), (ssize_t)sizeof(got));
        ck_assert_msg(got[100] == 'w' && got[199] == 'w', "a read after the write sees old bytes");
        ck_assert_int_eq(close(keep), 0);
        {
                _cleanup_free_ char *data = NULL;
                size_t size = 0;
                ck_assert_int_eq(fs_share_read(emu, SHARE, "f.bin", &data, &size), 0);
                ck_assert_uint_eq(size, 4 * 1024 * 1024);
                ck_assert_msg(
                        data[100] == 'w' && data[199] == 'w', "the write is not on the share");
        }
}
END_TEST

/* Four writers into one file at once, each its own bytes (interleaved 64 KiB stripes, in an
 * order of its own, with unaligned writes), two through write-only descriptors (direct I/O) and
 * two buffered, each calling fsync() now and then, while Put Ranges are slowed. */
typedef struct StripeWriter {
        const char *path;
        unsigned id, n_writers;
        size_t size, stripe;
        const uint8_t *want;
        int result;
        char bad[160];
} StripeWriter;

static void *stripe_writer(void *userdata) {
        StripeWriter *s = userdata;
        size_t n_stripes = s->size / s->stripe, mine = 0;
        unsigned seed = s->id * 7919u + 1;
        int fd = open(s->path, (s->id % 2 ? O_WRONLY : O_RDWR) | O_CLOEXEC);

        if (fd < 0) {
                (void)snprintf(s->bad, sizeof(s->bad), "open: %m");
                return NULL;
        }
        /* my stripes, k with k % n_writers == id, in a shuffled order */
        size_t order[1024];
        for (size_t k = s->id; k < n_stripes && mine < ELEMENTSOF(order); k += s->n_writers)
                order[mine++] = k;
        for (size_t k = mine; k > 1; k--) {
                size_t j = rand_r(&seed) % k;
                size_t t = order[k - 1];
                order[k - 1] = order[j];
                order[j] = t;
        }
        for (size_t m = 0; m < mine && !s->bad[0]; m++) {
                size_t start = order[m] * s->stripe, done = 0;
                while (done < s->stripe) {
                        size_t len = MIN(s->stripe - done, 1 + (size_t)(rand_r(&seed) % 20000));
                        ssize_t n = pwrite(fd, s->want + start + done, len, (off_t)(start + done));
                        if (n != (ssize_t)len) {
                                (void)snprintf(s->bad, sizeof(s->bad), "pwrite: %zd (%m)", n);
                                break;
                        }
                        done += len;
                }
                if (m % 8 == 7 && fsync(fd) < 0)
                        (void)snprintf(s->bad, sizeof(s->bad), "fsync: %m");
        }
        if (close(fd) < 0 && !s->bad[0])
                (void)snprintf(s->bad, sizeof(s->bad), "close: %m");
        return NULL;
}

/* Runs the four writers through m over the file of the pattern of seed (its size, on the
 * share already), then checks the share (after a flush: writeback=async) and the mount. */
static void stripes_written(FsMount *m, uint64_t seed, size_t size) {
        const size_t stripe = 64 * 1024;
        _cleanup_free_ uint8_t *want = malloc(size);
        _cleanup_free_ char *data = NULL;
        StripeWriter w[4];
        pthread_t t[4];
        size_t got = 0;

        ck_assert_ptr_nonnull(want);
        fs_pattern_fill(seed, 0, want, size);
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=PutRange:latency=30ms"), 0);
        for (unsigned k = 0; k < ELEMENTSOF(w); k++) {
                w[k] = (StripeWriter){
                        .path = P(m, "striped.bin"),
                        .id = k,
                        .n_writers = ELEMENTSOF(w),
                        .size = size,
                        .stripe = stripe,
                        .want = want};
                ck_assert_int_eq(pthread_create(&t[k], NULL, stripe_writer, &w[k]), 0);
        }
        for (unsigned k = 0; k < ELEMENTSOF(w); k++) {
                ck_assert_int_eq(pthread_join(t[k], NULL), 0);
                ck_assert_msg(!w[k].bad[0], "writer %u: %s", k, w[k].bad);
        }
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        ck_assert_int_eq(fs_flush(m, 60), 0);
        ck_assert_int_eq(fs_share_read(emu, SHARE, "striped.bin", &data, &got), 0);
        ck_assert_uint_eq(got, size);
        if (memcmp(data, want, size) != 0) {
                size_t k = 0;
                while (data[k] == (char)want[k])
                        k++;
                ck_abort_msg("the share differs at byte %zu", k);
        }
        ck_assert_int_eq(fs_check_pattern(P(m, "striped.bin"), seed, size), 0);
}

START_TEST(test_concurrent_writers) {
        const size_t size = 24 * 1024 * 1024;
        int fd;

        mnt = mount_with(NULL, NULL);
        /* the file exists on the share, full of zeros: every writer opens it without O_CREAT */
        fd = open(P(mnt, "striped.bin"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
        ck_assert_int_eq(close(fd), 0);
        stripes_written(mnt, 77, size);
        /* the same in writeback=async, over the bytes written above */
        mnt_b = mount_with(NULL, "writeback=async");
        stripes_written(mnt_b, 78, size);
}
END_TEST

/* Started with a soft limit of 128 open files (systemd's default of 1024 is as low for this):
 * 400 small files in writeback=async, each with data in the cache and so an open cache file,
 * all written, flushed and on the share. Before azfilesfs raised its soft limit to the hard one,
 * writes failed with EMFILE after about a hundred files, and so did uploads and the flush. */
START_TEST(test_fd_limit) {
        struct rlimit rl, low;

        ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        ck_assert_uint_gt(rl.rlim_max, 1024);
        low = (struct rlimit){.rlim_cur = 128, .rlim_max = rl.rlim_max};
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
        mnt = mount_with(NULL, "writeback=async");
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
        ck_assert_int_eq(mkdir(P(mnt, "many"), 0755), 0);
        write_numbered(mnt, "many", 0, 400, 0);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        ck_assert_uint_eq(dirty(mnt), 0);
        check_numbered(NULL, "many", 0, 400, 0);
}
END_TEST

/* A new file's upload that failed at its very end (its Get File Properties), its Create File of
 * 8 MiB and its Put Ranges done: the share's file holds the bytes. The file is then cut to 0 and
 * made 8 MiB long again, both here only, and fsync()ed: the share must hold 8 MiB of zeros. The
 * failed round used to leave the share's size as it was before it (0), so the cut was no shrink
 * for the next round, which only set the size: fsync() returned 0 over the old bytes. */
START_TEST(test_shrink_after_failed_round) {
        const size_t mib = 1024 * 1024;
        _cleanup_free_ char *a = malloc(8 * mib), *zeros = calloc(1, 8 * mib);
        int fd;

        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(zeros);
        memset(a, 'A', 8 * mib);
        mnt = mount_with(NULL, "retry_budget=2");
        fd = open(P(mnt, "stale.bin"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ck_assert_msg(fd >= 0, "open: %m");
        /* Piece 1 first, then piece 0: no write-through, one whole round at fsync(). */
        ck_assert_int_eq(pwrite(fd, a, 4 * mib, 4 * mib), (ssize_t)(4 * mib));
        ck_assert_int_eq(pwrite(fd, a, 4 * mib, 0), (ssize_t)(4 * mib));
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=GetFileProperties:500"), 0);
        ck_assert_int_eq(fsync(fd), -1); /* the retries of the 500 ran out */
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        check_share_bytes("stale.bin", a, 8 * mib); /* what the failed round left there */
        ck_assert_int_eq(ftruncate(fd, 0), 0);
        ck_assert_int_eq(ftruncate(fd, (off_t)(8 * mib)), 0);
        ck_assert_msg(fsync(fd) == 0, "fsync: %m");
        check_share_bytes("stale.bin", zeros, 8 * mib);
        ck_assert_msg(close(fd) == 0, "close: %m");
        ck_assert_uint_eq(dirty(mnt), 0);
}
END_TEST

static int truncate_to_2(const char *path) {
        return truncate(path, 2);
}

/* truncate(2) of the closed file rel ("abcdefgh", clean) to 2 bytes, and an open of it (flags)
 * while the Set File Properties (made slow) is on its way: the open's Get File Properties is
 * answered first, with the old size. Returns the descriptor, once the truncate() returned 0. */
static int open_during_truncate(const char *rel, int flags) {
        PathCall a = {.path = P(mnt, rel), .fn = truncate_to_2, .result = 1};
        uint64_t before;
        pthread_t t;
        int fd;

        write_file(a.path, "abcdefgh");
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=SetFileProperties:latency=2s"), 0);
        before = counter("SetFileProperties");
        ck_assert_int_eq(pthread_create(&t, NULL, path_call_thread, &a), 0);
        wait_counter_above("SetFileProperties", before);
        fd = open(a.path, flags | O_CLOEXEC);
        ck_assert_msg(fd >= 0, "open %s: %m", a.path);
        join_within(t, "truncate()");
        ck_assert_int_eq(a.result, 0);
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        return fd;
}

/* truncate(2) by path racing an open() of the same file: the open made the file's cache the
 * truth (it is open) with the old size before the truncate's answer came, which then changed
 * only the share. truncate() returned 0, yet the open file kept its 8 bytes, and a write at its
 * old end brought the cut bytes back to the share. Now the cut goes to the cache too. */
START_TEST(test_truncate_open_race) {
        static const char want[8] = {'a', 'b', 0, 0, 0, 0, 0, 'X'};
        struct stat st;
        char buf[16];
        int fd;

        mnt = mount_with(NULL, NULL);
        fd = open_during_truncate("t", O_RDONLY);
        ck_assert_int_eq(fstat(fd, &st), 0);
        ck_assert_int_eq(st.st_size, 2);
        ck_assert_int_eq(pread(fd, buf, sizeof(buf), 0), 2);
        ck_assert_int_eq(memcmp(buf, "ab", 2), 0);
        ck_assert_msg(close(fd) == 0, "close: %m");
        check_share("t", "ab");

        /* A writer that opened it so writes one byte at its old end. */
        fd = open_during_truncate("u", O_RDWR);
        ck_assert_int_eq(pwrite(fd, "X", 1, 7), 1);
        ck_assert_msg(close(fd) == 0, "close: %m");
        ck_assert_uint_eq(dirty(mnt), 0);
        check_share_bytes("u", want, sizeof(want));
}
END_TEST

/* Writes 1 MiB of 'w' at a time, sequentially from 0, 8 times a second, until stopped (60 s at
 * most). */
static void *sequential_writer_thread(void *p) {
        static char buf[1024 * 1024];
        Writer *w = p;

        memset(buf, 'w', sizeof(buf));
        for (unsigned k = 0; k < 480 && !atomic_load(&w->stop); k++) {
                if (pwrite(w->fd, buf, sizeof(buf), (off_t)k * (off_t)sizeof(buf)) !=
                    (ssize_t)sizeof(buf)) {
                        w->error = errno;
                        break;
                }
                atomic_store(&w->written, (uint64_t)(k + 1) * sizeof(buf));
                (void)usleep(125000); /* the writer's pace, not a wait for anything */
        }
        return NULL;
}

/* A file written sequentially faster than write-through uploads it (one Put Range of it in
 * flight, each taking a second), and a reader's close() (a flush) meanwhile. The flush could not
 * make the write-through round whole (the share's file is grown ahead of the writer) and waited
 * for the next round, but the round kept taking the pieces the writer moved past and never ran
 * dry: close() returned only when the writer stopped. Now the round stops taking pieces, ends,
 * and a whole round uploads what was written before the close(). */
START_TEST(test_busy_sequential_writer) {
        const uint64_t mib = 1024 * 1024;
        _cleanup_free_ char *data = NULL;
        Writer w = {.fd = -1};
        struct timespec until;
        CloseArgs reader;
        pthread_t tw, t;
        uint64_t before, k;
        size_t size = 0;
        int joined;

        mnt = mount_with(NULL, "max_requests=2");
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=PutRange:latency=1000ms"), 0);
        w.fd = open(P(mnt, "seq.bin"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_msg(w.fd >= 0, "open: %m");
        ck_assert_int_eq(pthread_create(&tw, NULL, sequential_writer_thread, &w), 0);
        for (k = 0; k < 20000 && atomic_load(&w.written) < 10 * mib; k++)
                (void)usleep(1000); /* polling interval; the condition is the bytes written */
        ck_assert_uint_ge(atomic_load(&w.written), 10 * mib);
        reader = (CloseArgs){.fd = open(P(mnt, "seq.bin"), O_RDONLY | O_CLOEXEC), .result = 1};
        ck_assert_msg(reader.fd >= 0, "open: %m");
        before = atomic_load(&w.written);
        ck_assert_int_eq(pthread_create(&t, NULL, close_thread, &reader), 0);
        ck_assert_int_eq(clock_gettime(CLOCK_REALTIME, &until), 0);
        until.tv_sec += 20;
        joined = pthread_timedjoin_np(t, NULL, &until);
        /* What was written before the close(): on the share once it returned. */
        if (joined == 0)
                ck_assert_int_eq(fs_share_read(emu, SHARE, "seq.bin", &data, &size), 0);
        atomic_store(&w.stop, true);
        ck_assert_int_eq(pthread_join(tw, NULL), 0);
        if (joined != 0) {
                /* Not within 20 s, the writer still writing: it ends once the writer stopped. */
                ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
                ck_assert_int_eq(pthread_join(t, NULL), 0);
        }
        ck_assert_msg(joined == 0, "a reader's close() did not end within 20 s of a busy writer");
        ck_assert_int_eq(reader.result, 0);
        ck_assert_int_eq(w.error, 0);
        ck_assert_uint_ge(size, before);
        for (k = 0; k < before && data[k] == 'w';)
                k++;
        ck_assert_msg(k == before, "seq.bin on the share differs at %" PRIu64, k);
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        ck_assert_msg(close(w.fd) == 0, "close: %m");
        ck_assert_uint_eq(dirty(mnt), 0);
}
END_TEST

typedef struct FlushAllArgs {
        FsMount *m;
        unsigned secs;
        int result; /* 0 or -errno */
} FlushAllArgs;

static void *flush_all_thread(void *p) {
        FlushAllArgs *a = p;
        a->result = fs_flush(a->m, a->secs);
        return NULL;
}

/* A flush-all (the flush xattr) left waiting only for a file whose data is then dropped without
 * an upload (deleted before it was ever uploaded): nothing is dirty any more, so it returns 0 at
 * once. Nothing looked at it again (only an upload's end did), and it returned ETIMEDOUT at the
 * end of its time. */
START_TEST(test_flush_all_dropped) {
        FlushAllArgs f = {.secs = 20, .result = 1};
        struct timespec t0, t1;
        pthread_t t;
        int fa, fb;

        mnt = mount_with(NULL, NULL);
        f.m = mnt;
        /* b is made in a directory made here: its names are known, its create asks nothing of
         * the share (a lookup in the root would wait behind a's Create File). */
        ck_assert_int_eq(mkdir(P(mnt, "d"), 0755), 0);
        fa = open(P(mnt, "a"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_msg(fa >= 0, "open: %m");
        ck_assert_int_eq(write(fa, "data", 4), 4);
        /* The flush-all starts a's upload, whose Create File takes 2 s... */
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=CreateFile:latency=2s"), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, flush_all_thread, &f), 0);
        wait_figure(stat_figure, "uploads_in_flight", 1);
        /* ...while b gets data, not uploaded (it is open): the flush-all waits for it then. */
        fb = open(P(mnt, "d/b"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_msg(fb >= 0, "open: %m");
        ck_assert_int_eq(write(fb, "data", 4), 4);
        for (unsigned k = 0; k < 20000 && stats_number(mnt, "uploads_in_flight") > 0; k++)
                (void)usleep(1000); /* polling interval; the condition is a's upload's end */
        ck_assert_uint_eq(stats_number(mnt, "uploads_in_flight"), 0);
        ck_assert_uint_eq(dirty(mnt), 4);
        ck_assert_int_eq(pthread_tryjoin_np(t, NULL), EBUSY);
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        ck_assert_int_eq(clock_gettime(CLOCK_MONOTONIC, &t0), 0);
        ck_assert_int_eq(unlink(P(mnt, "d/b")), 0);
        join_within(t, "the flush-all");
        ck_assert_int_eq(clock_gettime(CLOCK_MONOTONIC, &t1), 0);
        ck_assert_msg(
                f.result == 0, "flush-all: %s after %ld s", strerror(-f.result),
                (long)(t1.tv_sec - t0.tv_sec));
        ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 10);
        ck_assert_msg(close(fb) == 0, "close: %m");
        ck_assert_msg(close(fa) == 0, "close: %m");
        check_share("a", "data");
        check_share_absent("d/b");
}
END_TEST

/* A file deleted (or replaced by a rename here) while open, read and closed at once, a
 * thousand times over: the read's reply lets the reader close, and the kernel then releases and
 * forgets the file while the daemon still finishes the read. */
typedef enum ReadGoneKind {
        READ_GONE_DIRECT,   /* O_DIRECT: every read reaches the daemon */
        READ_GONE_BUFFERED, /* 100 bytes at 5000, read back buffered (tmpfile()'s way) */
        READ_GONE_RENAMED,  /* replaced by a rename on this mount, not deleted */
} ReadGoneKind;

static void read_gone_loop(ReadGoneKind kind, unsigned iterations) {
        _cleanup_free_ uint8_t *buf = aligned_alloc(4096, 4096);
        const char *path = P(mnt, "gone.bin"), *other = P(mnt, "gone.bin.new");

        ck_assert_ptr_nonnull(buf);
        memset(buf, 'x', 4096);
        for (unsigned k = 0; k < iterations; k++) {
                int fd = open(
                        path,
                        O_RDWR | O_CREAT | O_CLOEXEC | (kind == READ_GONE_BUFFERED ? 0 : O_DIRECT),
                        0644);
                bool ok =
                        fd >= 0 && (kind == READ_GONE_BUFFERED ? pwrite(fd, buf, 100, 5000) == 100
                                                               : pwrite(fd, buf, 4096, 0) == 4096);
                if (ok && kind == READ_GONE_RENAMED) {
                        int fd2 = open(other, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                        ok = fd2 >= 0 && close(fd2) == 0 && rename(other, path) == 0;
                } else if (ok)
                        ok = unlink(path) == 0;
                ok = ok && pread(fd, buf, 4096, 0) == 4096;
                ok = close(fd) == 0 && ok;
                if (!ok)
                        dump_log(mnt);
                ck_assert_msg(ok, "kind %d, iteration %u: %m", (int)kind, k);
        }
}

START_TEST(test_read_gone) {
        mnt = mount_with(NULL, "writeback=async,async_delay=3600");
        read_gone_loop(READ_GONE_DIRECT, 1500);
        read_gone_loop(READ_GONE_RENAMED, 500);
        read_gone_loop(READ_GONE_BUFFERED, 1500);
}
END_TEST

/* A read of a range not cached whose Get Range reached the share (slowed there) when another
 * file was renamed over the open one on this mount: the share answers with the new file's
 * bytes, which the read must not return (EIO, as for any range of a replaced file not cached). */
typedef struct PreadJob {
        int fd;
        ssize_t n;
        char buf[64];
} PreadJob;

static void *pread_job(void *userdata) {
        PreadJob *a = userdata;

        a->n = pread(a->fd, a->buf, sizeof(a->buf) - 1, 0);
        return NULL;
}

START_TEST(test_replaced_fetch_in_flight) {
        PreadJob a = {};
        pthread_t t;
        uint64_t before;

        mnt = mount_with(NULL, NULL);
        write_file(P(mnt, "r"), "r, the replaced file's bytes");
        write_file(P(mnt, "s"), "s, which replaces it (and is longer)");
        reclaim_all(mnt);
        a.fd = open(P(mnt, "r"), O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(a.fd, 0);
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=GetFile:latency=1500ms"), 0);
        before = counter("GetFile");
        ck_assert_int_eq(pthread_create(&t, NULL, pread_job, &a), 0);
        wait_counter_above("GetFile", before); /* the Get Range reached the share, waits there */
        ck_assert_int_eq(rename(P(mnt, "s"), P(mnt, "r")), 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        ck_assert_msg(
                a.n < 0 || strncmp(a.buf, "r, ", 3) == 0,
                "the open (replaced) file reads another file's bytes: '%s'", a.buf);
        ck_assert_int_eq(close(a.fd), 0);
}
END_TEST

/* A write covering the end of a file's first piece (not cached: it waits for its fetch) and the
 * whole of its short last piece, which needs no fetch; once the fetch is answered the write is
 * retried but waits again, now under max_dirty (another file filled it), and fails (uploads
 * refused). The last piece, never written, must not count as cached: a later one-byte write into
 * it had uploaded zeros over the share's bytes. */
typedef struct CoverWrite {
        int fd;
        off_t off;
        size_t len;
        ssize_t result;
} CoverWrite;

static void *cover_write(void *userdata) {
        CoverWrite *a = userdata;
        _cleanup_free_ char *b = malloc(a->len);

        if (!b)
                return NULL;
        memset(b, 'b', a->len);
        a->result = pwrite(a->fd, b, a->len, a->off);
        return NULL;
}

static void *fill_dirty(void *userdata) {
        int *result = userdata;

        *result = fs_write_pattern(P(mnt, "filler.bin"), 3, 8 * 1024 * 1024, 1024 * 1024);
        return NULL;
}

START_TEST(test_covered_cap_fail) {
        const uint64_t piece = 4 * 1024 * 1024, tail = 10 * 1024;
        _cleanup_free_ char *data = malloc(piece + tail);
        CoverWrite wj = {.off = (off_t)(piece - 32 * 1024), .len = 32 * 1024 + tail};
        pthread_t tw, tf;
        uint64_t before;
        int fd, filled = 0;

        ck_assert_ptr_nonnull(data);
        mnt = mount_with(NULL, "writeback=async,async_delay=3600,max_dirty=4M,retry_budget=3");
        memset(data, 'a', piece + tail);
        fd = open(P(mnt, "ck.bin"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pwrite(fd, data, piece + tail, 0), (ssize_t)(piece + tail));
        ck_assert_int_eq(close(fd), 0);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        reclaim_all(mnt);

        wj.fd = open(P(mnt, "ck.bin"), O_WRONLY | O_CLOEXEC);
        ck_assert_int_ge(wj.fd, 0);
        ck_assert_int_eq(
                fs_emu_set_faults(emu, "op=GetFile:latency=1000ms;op=PutRange:503,retry-after=0"),
                0);
        before = counter("GetFile");
        ck_assert_int_eq(pthread_create(&tw, NULL, cover_write, &wj), 0);
        wait_counter_above("GetFile", before); /* the write waits for piece 0 */
        ck_assert_int_eq(pthread_create(&tf, NULL, fill_dirty, &filled), 0);
        ck_assert_int_eq(pthread_join(tw, NULL), 0);
        ck_assert_int_eq(pthread_join(tf, NULL), 0);
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        /* one byte into the last piece, through the same descriptor */
        ck_assert_int_eq(pwrite(wj.fd, "c", 1, (off_t)piece + 5), 1);
        ck_assert_int_eq(close(wj.fd), 0);
        ck_assert_int_eq(fs_flush(mnt, 60), 0);
        data[piece + 5] = 'c';
        if (wj.result > 0) /* it may also have got through */
                memset(data + wj.off, 'b', wj.len);
        check_share_bytes("ck.bin", data, piece + tail);
}
END_TEST

/* A write-only descriptor (direct I/O) overwrites the whole of a file that is not cached: the
 * write needs no Get Range, its piece is filled by the write itself. A reader of the same bytes
 * at the same moment must see the old version or the new one (or a mix, as for any read racing
 * a write), never zeros: the holes of the cache file before the write's bytes land there. The
 * reader starts after a random spin, so that some reads meet the write's copy and wait for it.
 * buffered: the reader goes through the page cache, so the write drops its range from it
 * (notify_inval_inode), which waits for the pages the waiting read holds locked: the read must
 * be answered first, or both hang (bounded here: 10 s, then the connection is aborted). */
typedef struct CoverJob {
        int fd;
        uint8_t *buf;
        size_t size;
        bool write;
        unsigned spin;
        ssize_t n;
        atomic_bool done;
} CoverJob;

static void *cover_job(void *userdata) {
        CoverJob *j = userdata;

        for (volatile unsigned k = 0; k < j->spin; k++)
                ;
        j->n = j->write ? pwrite(j->fd, j->buf, j->size, 0) : pread(j->fd, j->buf, j->size, 0);
        atomic_store(&j->done, true);
        return NULL;
}

static void cover_race(bool buffered) {
        const size_t size = 64 * 1024;
        const unsigned iters = (unsigned)fs_env_ulong("COVER_ITERS", 2000);
        uint8_t *data = aligned_alloc(4096, size), *buf = aligned_alloc(4096, size);
        unsigned n_old = 0, n_new = 0, n_mixed = 0;
        char bad[200] = "";
        const char *path;

        ck_assert_ptr_nonnull(data);
        ck_assert_ptr_nonnull(buf);
        mnt = mount_with(NULL, NULL);
        path = P(mnt, "cover.bin");
        write_version(path, 0, size);
        srand(1);
        for (unsigned v = 1; v <= iters && !bad[0]; v++) {
                uint8_t old = (uint8_t)('A' + (v - 1) % 26), new = (uint8_t)('A' + v % 26);
                CoverJob r = {.size = size, .buf = buf, .n = -1};
                CoverJob w = {.size = size, .buf = data, .write = true, .n = -1};
                pthread_t tr, tw;
                unsigned k;

                reclaim_all(mnt); /* the next open starts with nothing cached */
                r.fd = open(path, O_RDONLY | O_CLOEXEC | (buffered ? 0 : O_DIRECT));
                ck_assert_msg(r.fd >= 0, "open: %m");
                w.fd = open(path, O_WRONLY | O_CLOEXEC);
                ck_assert_msg(w.fd >= 0, "open: %m");
                r.spin = (unsigned)rand() % 20000;
                memset(data, new, size);
                ck_assert_int_eq(pthread_create(&tw, NULL, cover_job, &w), 0);
                ck_assert_int_eq(pthread_create(&tr, NULL, cover_job, &r), 0);
                for (k = 0; k < 10000 && !(atomic_load(&w.done) && atomic_load(&r.done)); k++)
                        (void)usleep(1000); /* polling interval; the condition is both calls done */
                if (k == 10000) {
                        (void)snprintf(
                                bad, sizeof(bad),
                                "iteration %u: hung for 10 s (write done: %d, read done: %d)", v,
                                atomic_load(&w.done), atomic_load(&r.done));
                        abort_connection(mnt);
                }
                ck_assert_int_eq(pthread_join(tw, NULL), 0);
                ck_assert_int_eq(pthread_join(tr, NULL), 0);
                (void)close(w.fd);
                (void)close(r.fd);
                if (bad[0])
                        break;
                ck_assert_int_eq(w.n, (ssize_t)size);
                ck_assert_int_eq(r.n, (ssize_t)size);
                for (size_t b = 0; b < size && !bad[0]; b++)
                        if (buf[b] != old && buf[b] != new)
                                (void)snprintf(
                                        bad, sizeof(bad),
                                        "iteration %u (spin %u): byte %zu is %d, of no version", v,
                                        r.spin, b, buf[b]);
                if (buf[0] == old && buf[size - 1] == old)
                        n_old++;
                else if (buf[0] == new &&buf[size - 1] == new)
                        n_new++;
                else
                        n_mixed++;
        }
        fprintf(stderr, "cover_race%s: reads of the old version %u, of the new %u, mixed %u\n",
                buffered ? "_buffered" : "", n_old, n_new, n_mixed);
        free(data);
        free(buf);
        ck_assert_msg(!bad[0], "%s", bad);
}

START_TEST(test_cover_race) {
        cover_race(false);
}
END_TEST

START_TEST(test_cover_race_buffered) {
        cover_race(true);
}
END_TEST

/* ---- dir_became_file, stale_dirhandle ---- */

/* A directory known to A made a file on B: once A's kernel asks again (after dir_timeout), A
 * finds the file. It asked for a directory only and answered ENOENT, which its renewed name set
 * then repeated for dir_timeout: a create through A (`>>`) replaced B's file. */
START_TEST(test_dir_became_file) {
        struct stat st;

        mnt = mount_with(NULL, "dir_timeout=1");
        mnt_b = mount_with(NULL, NULL);
        ck_assert_int_eq(mkdir(P(mnt_b, "d"), 0755), 0);
        ck_assert_int_eq(dir_count(P(mnt, "")), 1); /* A lists the root: its set of names */
        ck_assert_int_eq(stat(P(mnt, "d"), &st), 0);
        ck_assert(S_ISDIR(st.st_mode));
        ck_assert_int_eq(rmdir(P(mnt_b, "d")), 0);
        write_file(P(mnt_b, "d"), "B's file");
        /* A: the directory (its kernel's entry, for dir_timeout), then the file; never ENOENT.
         * Each time first a lookup of a missing name, which lists the root once its set of
         * names is older than dir_timeout (the set then has "d"). */
        for (unsigned k = 0; k < 400; k++) {
                int r;
                ck_assert_int_eq(errno_of(stat(P(mnt, "missing"), &st)), ENOENT);
                r = stat(P(mnt, "d"), &st);
                ck_assert_msg(r == 0, "stat d on A: %m (a file on the share all along)");
                if (S_ISREG(st.st_mode))
                        break;
                (void)usleep(50000); /* polling interval; the condition is A's answer */
        }
        ck_assert(S_ISREG(st.st_mode));
        ck_assert_str_eq(read_file(P(mnt, "d")), "B's file");
}
END_TEST

/* A directory opened before it was renamed here, listed after: the listing is of the directory
 * where it is now. It listed the old path (ENOENT, or another directory made there since) and
 * took that for the renamed directory's names: its files were ENOENT, and a create through them
 * replaced them on the share. */
START_TEST(test_stale_dirhandle) {
        struct stat st;
        char buf[4096];
        long n;
        int fd;

        mnt = mount_with(NULL, "dir_timeout=30");
        mnt_b = mount_with(NULL, NULL);
        ck_assert_int_eq(mkdir(P(mnt_b, "d"), 0755), 0);
        write_file(P(mnt_b, "d/x"), "x");
        write_file(P(mnt_b, "d/y"), "y");
        fd = open(P(mnt, "d"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(rename(P(mnt, "d"), P(mnt, "e")), 0);
        ck_assert_int_eq(mkdir(P(mnt, "d"), 0755), 0);
        n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
        ck_assert_msg(n > 0, "getdents64 of the renamed directory: %m");
        (void)close(fd);
        ck_assert_msg(stat(P(mnt, "e/x"), &st) == 0, "stat e/x: %m (it is on the share)");
        ck_assert_str_eq(read_file(P(mnt, "e/y")), "y");
}
END_TEST

/* ---- truncate_fetch_fail ---- */

typedef struct PieceReadJob {
        int fd;
        off_t off;
        size_t len;
        ssize_t n;
} PieceReadJob;

static void *piece_read_thread(void *userdata) {
        PieceReadJob *j = userdata;
        _cleanup_free_ char *b = malloc(j->len);

        j->n = b ? pread(j->fd, b, j->len, j->off) : -1;
        return NULL;
}

/* The first byte where a and b differ over n bytes, SIZE_MAX when none. */
static size_t first_difference(const char *a, const char *b, size_t n) {
        for (size_t k = 0; k < n; k++)
                if (a[k] != b[k])
                        return k;
        return SIZE_MAX;
}

static void truncate_fetch_fail(off_t cut) {
        const size_t size = 8 * 1024 * 1024, piece = 4 * 1024 * 1024;
        _cleanup_free_ char *buf = malloc(size), *want = malloc(size), *data = NULL;
        PieceReadJob job = {.off = (off_t)piece, .len = piece};
        size_t n = 0, bad, share_bad;
        pthread_t t;
        uint64_t before;
        int fd;

        ck_assert_ptr_nonnull(buf);
        ck_assert_ptr_nonnull(want);
        memset(want, 'A', size);
        mnt = mount_with(NULL, "retry_budget=2");
        fd = open(P(mnt, "f.bin"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, want, size), (ssize_t)size);
        ck_assert_int_eq(close(fd), 0);
        reclaim_all(mnt);
        fd = open(P(mnt, "f.bin"), O_RDWR | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        job.fd = fd;
        ck_assert_int_eq(fs_emu_set_faults(emu, "op=GetFile:latency=1500ms,truncate"), 0);
        before = counter("GetFile");
        ck_assert_int_eq(pthread_create(&t, NULL, piece_read_thread, &job), 0);
        wait_counter_above("GetFile", before);
        ck_assert_int_eq(ftruncate(fd, cut), 0);
        join_within(t, "pread");
        ck_assert_int_eq(fs_emu_set_faults(emu, ""), 0);
        ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
        memset(want + cut, 0, size - (size_t)cut);
        ck_assert_int_eq(pwrite(fd, "X", 1, (off_t)(7 * 1024 * 1024)), 1);
        want[7 * 1024 * 1024] = 'X';
        ck_assert_int_eq(pread(fd, buf, size, 0), (ssize_t)size);
        bad = first_difference(buf, want, size);
        ck_assert_msg(fsync(fd) == 0, "fsync: %m");
        ck_assert_int_eq(close(fd), 0);
        ck_assert_int_eq(fs_share_read(emu, SHARE, "f.bin", &data, &n), 0);
        ck_assert_uint_eq(n, size);
        share_bad = first_difference(data, want, size);
        ck_assert_msg(
                bad == SIZE_MAX && share_bad == SIZE_MAX,
                "the read during the cut returned %zd; first wrong byte here at %zd, on the share at %zd",
                job.n, bad == SIZE_MAX ? -1 : (ssize_t)bad,
                share_bad == SIZE_MAX ? -1 : (ssize_t)share_bad);
}

START_TEST(test_truncate_fetch_fail) {
        truncate_fetch_fail(0);
}
END_TEST

START_TEST(test_truncate_fetch_fail_mid) {
        truncate_fetch_fail(5 * 1024 * 1024);
}
END_TEST

int main(void) {
        Suite *s = suite_create("fs-basic");
        SRunner *sr;
        int failed, pre = fs_harness_preflight();
        struct {
                const char *name;
                const TTest *test;
        } cases[] = {
                {"ops", test_ops},
                {"unsupported", test_unsupported},
                {"names", test_names},
                {"refused_names", test_refused_names},
                {"case", test_case},
                {"case_unicode", test_case_unicode},
                {"case_apart", test_case_apart},
                {"name_hashes", test_name_hashes},
                {"remount", test_remount},
                {"many_metadata", test_many_metadata},
                {"close_to_open", test_close_to_open},
                {"kind_conflict", test_kind_conflict},
                {"shrunk_elsewhere", test_shrunk_elsewhere},
                {"attr_cache", test_attr_cache},
                {"flush", test_flush},
                {"failures", test_failures},
                {"requests", test_requests},
                {"caps", test_caps},
                {"deleted_over_cap", test_deleted_over_cap},
                {"deleted_async", test_deleted_async},
                {"small_files", test_small_files},
                {"reclaim", test_reclaim},
                {"readahead", test_readahead},
                {"offline", test_offline},
                {"crash", test_crash},
                {"auth", test_auth},
                {"cli", test_cli},
                {"create_in_flight", test_create_in_flight},
                {"queued_unlink", test_queued_unlink},
                {"rename_over_upload", test_rename_over_upload},
                {"rename_upload_starts", test_rename_upload_starts},
                {"busy_writer", test_busy_writer},
                {"unlink_upload_starts", test_unlink_upload_starts},
                {"replaced_open_attrs", test_replaced_open_attrs},
                {"utimens_create_in_flight", test_utimens_create_in_flight},
                {"truncate_mtime", test_truncate_mtime},
                {"wt_at_limit", test_wt_at_limit},
                {"stale_after_upload", test_stale_after_upload},
                {"flush_pipeline", test_flush_pipeline},
                {"write_through", test_write_through},
                {"fd_limit", test_fd_limit},
                {"write_only", test_write_only},
                {"write_only_race", test_write_only_race},
                {"cache_files", test_cache_files},
                {"reset_race", test_reset_race},
                {"concurrent_writers", test_concurrent_writers},
                {"inval_deadlock", test_inval_deadlock},
                {"shrink_after_failed_round", test_shrink_after_failed_round},
                {"truncate_open_race", test_truncate_open_race},
                {"busy_sequential_writer", test_busy_sequential_writer},
                {"flush_all_dropped", test_flush_all_dropped},
                {"read_gone", test_read_gone},
                {"replaced_fetch_in_flight", test_replaced_fetch_in_flight},
                {"covered_cap_fail", test_covered_cap_fail},
                {"cover_race", test_cover_race},
                {"cover_race_buffered", test_cover_race_buffered},
                {"truncate_fetch_fail", test_truncate_fetch_fail},
                {"dir_became_file", test_dir_became_file},
                {"stale_dirhandle", test_stale_dirhandle},
                {"truncate_fetch_fail_mid", test_truncate_fetch_fail_mid},
        };

        if (pre != 0)
                return pre;
        for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
                TCase *tc = tcase_create(cases[k].name);
                tcase_add_checked_fixture(tc, setup, teardown);
                tcase_add_test(tc, cases[k].test);
                tcase_set_timeout(tc, 120);
                suite_add_tcase(s, tc);
        }
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
