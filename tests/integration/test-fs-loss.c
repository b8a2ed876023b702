/* SPDX-License-Identifier: MIT */
/* Loss tests of azfilesfs ($AZFILESFS) against a real azfiles-emu: every path that could lose a
 * byte, tried.
 *
 *   faults_workload  the model workload (fs-model.h) while the emulator injects 503s (with 503
 *                    storms and latency spikes at intervals) on every operation, and 500s,
 *                    connection resets and truncated bodies on the operations that are safe to
 *                    repeat; after the faults stop and a flush, the share (over REST) is
 *                    byte-identical to the local reference. Once in the default mode, once
 *                    with writeback=async.
 *   kill_unsynced    writeback=async, uploads held back (every Put Range answers 503), files
 *                    written, closed, one still open, part of an already uploaded file
 *                    overwritten; dirty_bytes > 0; kill -9 of azfilesfs; a remount with the
 *                    same cache_dir and a flush put every byte on the share.
 *   enospc           cache_dir on a 32 MiB tmpfs, uploads held back: the writer gets ENOSPC
 *                    (not a hang, not another errno) and every file that was closed before is
 *                    on the share after the faults stop and a flush.
 *   restart_mid_flush  64 MiB dirty, slow uploads, a flush running; azfilesfs is killed while
 *                    the flush is half done; remount, flush: every byte on the share.
 *   stop_with_queue  SIGTERM with 300 files dirty while Create File goes unanswered: the stop
 *                    ends with uploads in flight and files waiting for a slot; exit status 0
 *                    (it aborted), and the next mount uploads every byte.
 *
 *   rename_dir_dirty_kill  (bug 5, fixed) writeback=async, a
 *                    directory renamed while a file below it is dirty, kill -9, remount, flush:
 *                    the file's bytes must be on the share under the new name.
 *
 *   record_durable_later  a write() leaves a dirty record of this boot that is not durable
 *                    (nothing synced on the write path); the tick makes it durable soon after
 *                    close().
 *   reboot_not_durable  a file on the share overwritten, kill -9, its record edited to look
 *                    written before a reboot and not durable: the next mount leaves the share's
 *                    copy byte-identical and uploads the new bytes as
 *                    keep.txt.azfilesfs-recovered-<UTC> (the data may be torn after a reboot).
 *   reboot_durable   the same with a durable record: uploaded over keep.txt (trusted).
 *   reboot_dir_gone  a new file's record of an earlier boot, not durable, whose directory was
 *                    deleted on the share meanwhile: the bytes go to the share's root.
 *   unmount_durable  unmounted while uploads fail: the record left behind is durable.
 *   transfer_threads  transfer_threads=3: 6 writers at once write multi-piece files through
 *                    close() while the emulator injects 503s, resets and truncated bodies (a
 *                    503 storm on the first 6 Put Ranges, 20 % of them reset or cut short
 *                    after that); the share is byte-identical to the reference; then a fresh
 *                    mount (empty cache) reads all 6 at once under the same faults and finds
 *                    every byte; the daemon has 3 "http-transfer" threads and its stats count
 *                    at least one request per piece on them, in both halves.
 *   record_clean     after its upload a file's record says "clean" in place (not deleted per
 *                    upload); the next mount removes it with the clean cache and uploads
 *                    nothing; the file reads back from the share.
 *   record_empty     kill -9 with a dirty file; beside its record, an empty record with an empty
 *                    cache file (killed between creating a new file's first record and writing
 *                    it) and an empty one with a cache file that holds bytes: the next mount
 *                    removes the first pair, leaves the second, and uploads the dirty file.
 *   record_enospc    a file cached by a read (so without a record), the cache disk full, then a
 *                    write into it (its blocks are there: the write itself fits) and kill -9:
 *                    the write either failed (ENOSPC, the share keeps the old bytes) or its
 *                    bytes reach the share after a remount (the record it needs could not be
 *                    written, and the write was acknowledged: a crash lost it).
 *   create_enospc    creat() with the cache disk full, then kill -9: creat() failed with ENOSPC
 *                    (it returned 0 without the file's record, and the crash lost the file).
 *   truncate_enospc  ftruncate() making a clean cached file longer, the cache disk full, then
 *                    kill -9: it failed with ENOSPC (the share keeps the file) or the share has
 *                    the new size after a remount (it was acknowledged without its record: lost).
 *   rename_enospc    rename of a file with unsynced data and a durable record, the cache disk
 *                    full, then kill -9: it failed with ENOSPC (the data under the old name) or
 *                    the data is under the new name (its record could not take the intent: the
 *                    data went back under the old name).
 *   covered_enospc  a write covering a whole small file, not cached, into a full cache disk:
 *                    ENOSPC, then reads and a later write keep the share's bytes (the piece
 *                    was taken as present before the write: zeros were read and uploaded).
 *   unmount_durable_open  SIGTERM with a file open and written just before (the background pass
 *                    waits 5 s for such a file): its record is durable when azfilesfs exits.
 *   record_fifo      kill -9 with a dirty file and a FIFO named as a record: the next mount
 *                    starts (it blocked opening the FIFO) and uploads the dirty file.
 *   long_record      kill -9 with a new dirty file whose record is made longer than 64 KiB by
 *                    hand (pieces past the file's end, which recovery skips, listed before its
 *                    two real pieces): the next mount uploads both (it read only 64 KiB of a
 *                    record, and uploaded a file of zeros).
 *   replaced_open_kill  files open for writing, one replaced by a rename and one deleted,
 *                    written through their descriptors, then kill -9: after the remount the
 *                    share has the file that replaced the one and not the other (a record for
 *                    the old name made the recovery write them back over that name).
 *   rename_executed_kill, rename_not_executed_kill, rename_dir_executed_kill,
 *   delete_executed_kill, delete_not_executed_kill, rename_over_dirty_kill,
 *   rename_dir_late_write_kill  kill -9 while a rename or delete is on its way (carried out by
 *                    the share with its answer held off, or not: 503): after a remount and a
 *                    flush the data is under the name the share has, never lost or mixed.
 *   intent_evicted   a clean cached file whose Delete File fails (503s) while another file's
 *                    read fills cache_size, then written, deleted on the share by another VM,
 *                    kill -9: its record names no request, and the remount creates it again
 *                    with the bytes written (evicted meanwhile, its record kept the failed
 *                    delete's "void_if_gone" and the recovery dropped them).
 *   stray_id, two_records, cut_record, fifo_data, bad_paths, record_without_end  records and
 *                    cache files this mount would not have written (a stray name, two records of
 *                    one path, a record cut short, a FIFO as cache file, paths the share refuses,
 *                    the format before the end line): never bytes over a file on the share; what
 *                    cannot be trusted goes beside it or stays, with a warning.
 *   rename_dir_created_kill, rename_over_created_kill  kill -9 while the share renames the
 *                    directory of, or renames over, a file created here and not on the share.
 *   queued_uploads   uploads queued behind one slow connection slot longer than retry_budget:
 *                    all reach the share (each transfer is bounded, not the wait for a slot).
 *   unlink_then_dir_rename, dir_rename_then_unlink  an unlink of d/f and a rename of d at once,
 *                    the first one's answer held off: f (dirty) is gone here and on the share
 *                    after a flush (the unlink found, or sent, the path the rename had changed:
 *                    e/f came back on the share, or stayed there with the unlink failing).
 *   create_during_dir_rename  an O_CREAT open of d/h (on the share) and a mkdir of d/sub while
 *                    a rename of d to e is carried out, its answer held off: the line appended
 *                    goes after e/h's bytes (the open made a new d/h here, and its upload
 *                    replaced e/h), and e/sub is made (mkdir failed with ENOENT).
 *   touch_created_kill  a file created in writeback=async, chmod 0751 and its time set, kill -9:
 *                    after the remount the share has both (the time was lost: the record kept
 *                    the time of the creat()).
 *
 *   FS_LOSS_OPS=N   operations of the fault workload (default 500)
 *
 * Runs in a private mount namespace per test; needs root and /dev/fuse (else 77); fails when
 * $AZFILESFS is missing. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "fs-harness.h"
#include "fs-model.h"
#include "macro.h"
#include "time-util.h"

#define SHARE "loss"
#define FLUSH_S 120
/* Faults on everything: 503s (the request was not processed, so any operation may be repeated)
 * and latency. On the operations that are safe to repeat also 500s, resets and truncated
 * bodies. */
#define FAULTS_BASE                                                                                \
        "503=0.03,latency=0ms~3ms,retry-after=0,seed=11;"                                          \
        "op=PutRange+GetFile+GetFileProperties+ListDirectoriesAndFiles+SetFileProperties:"         \
        "500=0.02,reset=0.02,truncate=0.01"
#define HOLD_UPLOADS "op=PutRange:503,retry-after=0"

static EmuInstance *emu;
static FsMount *mnt;
static char ref[64];

static void setup(void) {
        umask(022);
        ck_assert_int_eq(fs_harness_enter_namespace(), 0);
        ck_assert_int_eq(emu_instance_start(NULL, NULL, &emu), 0);
        ck_assert_int_eq(fs_share_create(emu, SHARE), 0);
        (void)snprintf(ref, sizeof(ref), "/tmp/fs-loss-ref.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(ref));
}

static void teardown(void) {
        mnt = fs_mount_free(mnt);
        emu = emu_instance_free(emu);
        fs_rm_rf(ref);
}

static void dump_log(void) {
        _cleanup_free_ char *tail = mnt ? fs_mount_log_tail(mnt, 4000) : NULL;
        if (tail)
                fprintf(stderr, "--- azfilesfs log (tail) ---\n%s\n", tail);
}

#define CHECK_OK(expr, what)                                                                       \
        do {                                                                                       \
                int _r = (expr);                                                                   \
                if (_r < 0)                                                                        \
                        dump_log();                                                                \
                ck_assert_msg(_r >= 0, "%s: %s", what, strerror(-_r));                             \
        } while (0)

static void mount_with(const char *cache_dir, const char *options) {
        int r = fs_mount_new(emu, SHARE, cache_dir, options, &mnt);
        ck_assert_msg(r == 0, "mount: %s", strerror(-r));
}

static void flush_and_compare(void) {
        _cleanup_free_ char *msg = NULL;
        uint64_t dirty = UINT64_MAX;
        int r;

        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        CHECK_OK(fs_dirty_bytes(mnt, &dirty), "dirty_bytes");
        ck_assert_msg(dirty == 0, "dirty_bytes %" PRIu64 " after a flush", dirty);
        r = fs_share_compare(emu, SHARE, "", ref, &msg);
        if (r < 0)
                dump_log();
        ck_assert_msg(r == 0, "share vs reference: %s", msg ? msg : strerror(-r));
        r = fs_tree_compare(mnt->mountpoint, ref, 0, &msg);
        ck_assert_msg(r == 0, "mount vs reference: %s", msg ? msg : strerror(-r));
}

/* Faults off, a new mount with the same cache_dir, a flush: the share is the reference. */
static void remount_flush_compare(void) {
        CHECK_OK(fs_emu_set_faults(emu, ""), "faults off");
        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        flush_and_compare();
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}

/* SIGTERM to azfilesfs (a stop, as systemd's): its pidfd for wait_stopped(). */
static int stop_daemon(void) {
        int pidfd = (int)syscall(SYS_pidfd_open, mnt->pid, 0);

        ck_assert_int_ge(pidfd, 0);
        ck_assert_int_eq(kill(mnt->pid, SIGTERM), 0);
        return pidfd;
}

/* It exited with 0, and unmounted at its exit. */
static void wait_stopped(int pidfd) {
        ck_assert_int_eq(fs_mount_wait_exit(mnt, pidfd), 0);
        mnt->mounted = false;
}

static char *refp(const char *name) {
        char *p;
        ck_assert_int_ge(asprintf(&p, "%s/%s", ref, name), 0);
        return p;
}

/* Writes the same pattern file on the mount and in the reference. */
static int write_both(const char *name, uint64_t seed, uint64_t size) {
        _cleanup_free_ char *m = fs_mount_path(mnt, name), *r = refp(name);
        int k = fs_write_pattern(m, seed, size, 65536);
        if (k < 0)
                return k;
        return fs_write_pattern(r, seed, size, 65536);
}

/* ---- faults during a long random workload ---------------------------------------------------- */

static int storms(void *userdata, unsigned op) {
        (void)userdata;
        /* Every 150 ops a storm: the next 8 requests all answer 503 with Retry-After: 0 (more
         * than the 6 attempts that once ended a request within a second: bug 3, fixed, retries
         * are bounded by retry_budget); every 150 ops, offset by 75, a latency spike on the
         * next 5 requests. */
        if (op % 150 == 0)
                return fs_emu_set_faults(emu, FAULTS_BASE ";503,count=8,retry-after=0");
        if (op % 150 == 75)
                return fs_emu_set_faults(emu, FAULTS_BASE ";latency=200ms,count=5");
        return 0;
}

static int faults_off(void *userdata) {
        (void)userdata;
        return fs_emu_set_faults(emu, "");
}

static void faults_workload(bool async, uint64_t seed) {
        _cleanup_free_ char *msg = NULL;
        FsModelConfig cfg = {
                .seed = seed,
                .ops = (unsigned)fs_env_ulong("FS_LOSS_OPS", 500),
                .case_insensitive = true,
                .checkpoint_every = 0,
                .ref = ref,
                .on_op = storms,
                .before_flush = faults_off,
        };
        int r;

        /* The 503s answer Retry-After: 0, which azfilesfs takes as "no less than its backoff":
         * a short first backoff keeps the workload's retries (and its run time) near that. */
        mount_with(NULL, async ? "writeback=async,retry_delay=0.005" : "retry_delay=0.005");
        cfg.mount = mnt;
        cfg.root = mnt->mountpoint;
        CHECK_OK(fs_emu_set_faults(emu, FAULTS_BASE), "set faults");
        r = fs_model_run(&cfg, &msg);
        if (r < 0)
                dump_log();
        ck_assert_msg(r == 0, "%s", msg ? msg : strerror(-r));
}

START_TEST(test_faults_workload_default) {
        faults_workload(false, 101);
}
END_TEST

START_TEST(test_faults_workload_async) {
        faults_workload(true, 102);
}
END_TEST

/* ---- kill -9 with unsynced writes ------------------------------------------------------------ */

START_TEST(test_kill_unsynced) {
        _cleanup_free_ char *open_m = NULL, *open_r = NULL, *old_m = NULL, *old_r = NULL;
        _cleanup_free_ char *dir_m = NULL, *dir_r = NULL;
        uint8_t buf[65536];
        uint64_t dirty = 0;
        int fm, fr;

        mount_with(NULL, "writeback=async");
        /* One file on the share before the faults, then partly overwritten. */
        CHECK_OK(write_both("old.bin", 1, 3 * 1024 * 1024 + 17), "write old.bin");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "first flush");

        CHECK_OK(fs_emu_set_faults(emu, HOLD_UPLOADS), "hold uploads");
        dir_m = fs_mount_path(mnt, "dir one");
        dir_r = refp("dir one");
        ck_assert_int_eq(mkdir(dir_m, 0755), 0);
        ck_assert_int_eq(mkdir(dir_r, 0755), 0);
        for (unsigned i = 0; i < 12; i++) {
                char name[64];
                (void)snprintf(name, sizeof(name), "dir one/f-%u ü.bin", i);
                CHECK_OK(write_both(name, 100 + i, (uint64_t)i * 97 * 1024 + i), name);
        }
        /* Overwrite 64 KiB in the middle of the uploaded file. */
        fs_pattern_fill(7, 0, buf, sizeof(buf));
        old_m = fs_mount_path(mnt, "old.bin");
        old_r = refp("old.bin");
        for (int k = 0; k < 2; k++) {
                int fd = open(k ? old_r : old_m, O_WRONLY | O_CLOEXEC);
                ck_assert_int_ge(fd, 0);
                ck_assert_int_eq(
                        pwrite(fd, buf, sizeof(buf), 1024 * 1024 + 5), (ssize_t)sizeof(buf));
                ck_assert_int_eq(close(fd), 0);
        }
        /* A file still open when the daemon dies. */
        open_m = fs_mount_path(mnt, "open.bin");
        open_r = refp("open.bin");
        fm = open(open_m, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        fr = open(open_r, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_int_ge(fm, 0);
        ck_assert_int_ge(fr, 0);
        for (unsigned i = 0; i < 20; i++) {
                fs_pattern_fill(9, (uint64_t)i * sizeof(buf), buf, sizeof(buf));
                ck_assert_int_eq(write(fm, buf, sizeof(buf)), (ssize_t)sizeof(buf));
                ck_assert_int_eq(write(fr, buf, sizeof(buf)), (ssize_t)sizeof(buf));
        }
        (void)close(fr);

        CHECK_OK(fs_dirty_bytes(mnt, &dirty), "dirty_bytes");
        ck_assert_msg(
                dirty > 0, "nothing dirty with every Put Range failing: the case was not "
                           "exercised (or dirty_bytes is wrong)");
        fprintf(stderr, "kill -9 with %" PRIu64 " dirty bytes\n", dirty);
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        (void)close(fm); /* ENOTCONN on the dead mount: it was detached */

        remount_flush_compare();
}
END_TEST

/* ---- transfers spread over transfer threads ------------------------------------------------- */

#define XFER_FILES 6
#define XFER_OPTIONS "transfer_threads=3,max_requests=8"
/* On top of the base faults: the first XFER_STORM Put or Get Ranges answer 503, and then one in
 * ten is reset and one in ten cut short. */
#define XFER_STORM 6
#define XFER_FAULTS                                                                                \
        FAULTS_BASE ";op=PutRange+GetFile:503,count=6,retry-after=0"                               \
                    ";op=PutRange+GetFile:reset=0.1,truncate=0.1"

/* 3 to 5 pieces of 4 MiB, never a whole number of them. */
static uint64_t xfer_size(unsigned i) {
        return (uint64_t)(9 + 4 * (i % 3)) * 1024 * 1024 + 4099 * i + 1;
}

typedef struct XferJob {
        pthread_t thread;
        char *path;
        uint64_t seed, size;
        bool write;
        int result;
} XferJob;

static void *xfer_job(void *userdata) {
        XferJob *j = userdata;

        j->result = j->write ? fs_write_pattern(j->path, j->seed, j->size, 1024 * 1024)
                             : fs_check_pattern(j->path, j->seed, j->size);
        return NULL;
}

/* Runs the XFER_FILES jobs at once under XFER_FAULTS and checks each. */
static void xfer_run(bool write) {
        XferJob jobs[XFER_FILES] = {};

        CHECK_OK(fs_emu_set_faults(emu, XFER_FAULTS), "set faults");
        for (unsigned i = 0; i < XFER_FILES; i++) {
                char name[32];
                (void)snprintf(name, sizeof(name), "xfer-%u.bin", i);
                jobs[i] = (XferJob){
                        .path = fs_mount_path(mnt, name),
                        .seed = 300 + i,
                        .size = xfer_size(i),
                        .write = write,
                };
                ck_assert_ptr_nonnull(jobs[i].path);
                ck_assert_int_eq(pthread_create(&jobs[i].thread, NULL, xfer_job, &jobs[i]), 0);
        }
        for (unsigned i = 0; i < XFER_FILES; i++) {
                (void)pthread_join(jobs[i].thread, NULL);
                if (jobs[i].result < 0)
                        dump_log();
                ck_assert_msg(
                        jobs[i].result >= 0, "%s %s: %s", write ? "write" : "read", jobs[i].path,
                        strerror(-jobs[i].result));
                if (write) {
                        _cleanup_free_ char *r = refp(strrchr(jobs[i].path, '/') + 1);
                        CHECK_OK(
                                fs_write_pattern(r, jobs[i].seed, jobs[i].size, 1024 * 1024),
                                "reference");
                }
                free(jobs[i].path);
        }
}

/* How many of the daemon's threads are named http-transfer. */
static unsigned transfer_threads_of(pid_t pid) {
        _cleanup_free_ char *dir = NULL;
        DIR *d;
        struct dirent *de;
        unsigned n = 0;

        ck_assert_int_ge(asprintf(&dir, "/proc/%d/task", (int)pid), 0);
        d = opendir(dir);
        ck_assert_ptr_nonnull(d);
        while ((de = readdir(d))) {
                char path[384], comm[64] = "";
                FILE *f;

                if (de->d_name[0] == '.')
                        continue;
                (void)snprintf(path, sizeof(path), "%s/%s/comm", dir, de->d_name);
                f = fopen(path, "re");
                if (!f)
                        continue;
                if (fgets(comm, sizeof(comm), f) && strncmp(comm, "http-transfer", 13) == 0)
                        n++;
                (void)fclose(f);
        }
        (void)closedir(d);
        return n;
}

/* transfer_thread_requests of user.azfilesfs.stats: requests that ran on a transfer thread. */
static uint64_t thread_requests(void) {
        _cleanup_free_ char *json = NULL;
        const char *p;

        CHECK_OK(fs_stats(mnt, &json), "stats");
        p = strstr(json, "\"transfer_thread_requests\":");
        ck_assert_msg(p, "no transfer_thread_requests in %s", json);
        return strtoull(strchr(p, ':') + 1, NULL, 10);
}

START_TEST(test_transfer_threads) {
        uint64_t n, pieces = 0;

        for (unsigned i = 0; i < XFER_FILES; i++)
                pieces += (xfer_size(i) + 4 * 1024 * 1024 - 1) / (4 * 1024 * 1024);
        mount_with(NULL, XFER_OPTIONS);
        ck_assert_uint_eq(transfer_threads_of(mnt->pid), 3);
        xfer_run(true);
        n = thread_requests();
        fprintf(stderr, "writes: %" PRIu64 " requests on transfer threads, %" PRIu64 " pieces\n", n,
                pieces);
        /* Every piece's Put Range and the retries of the storm ran there. */
        ck_assert_msg(n >= pieces + XFER_STORM, "%" PRIu64 " requests on transfer threads", n);
        CHECK_OK(fs_emu_set_faults(emu, ""), "faults off");
        flush_and_compare();
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
        mnt = fs_mount_free(mnt);

        /* Cold reads: a new mount with an empty cache of its own. */
        mount_with(NULL, XFER_OPTIONS);
        xfer_run(false);
        n = thread_requests();
        fprintf(stderr, "reads: %" PRIu64 " requests on transfer threads\n", n);
        ck_assert_msg(n >= pieces + XFER_STORM, "%" PRIu64 " requests on transfer threads", n);
        CHECK_OK(fs_emu_set_faults(emu, ""), "faults off");
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* ---- a full cache disk ----------------------------------------------------------------------- */

/* A cache directory on a tmpfs of its own, 32 MiB, beside the reference directory. */
static char *tmpfs_cache(void) {
        char *cache = NULL;

        ck_assert_int_ge(asprintf(&cache, "%s.cache", ref), 0);
        ck_assert_int_eq(mkdir(cache, 0700), 0);
        ck_assert_msg(mount("tmpfs", cache, "tmpfs", 0, "size=32m,mode=0700") == 0, "tmpfs: %m");
        return cache;
}

/* Stops the mount that used it, then unmounts and removes the tmpfs. */
static void tmpfs_cache_done(const char *cache) {
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
        mnt = fs_mount_free(mnt);
        ck_assert_int_eq(umount2(cache, MNT_DETACH), 0);
        (void)rmdir(cache);
}

/* Fills the file system of dir with a file beside what is there; returns its path (to unlink). */
static char *fill_disk(const char *dir) {
        char page[4096], *filler = NULL;
        ssize_t n;
        int fd;

        ck_assert_int_ge(asprintf(&filler, "%s/filler", dir), 0);
        fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        memset(page, 0x5a, sizeof(page));
        while ((n = write(fd, page, sizeof(page))) > 0)
                ;
        ck_assert_msg(n < 0 && errno == ENOSPC, "filling %s: %m", dir);
        ck_assert_int_eq(close(fd), 0);
        return filler;
}

START_TEST(test_enospc) {
        _cleanup_free_ char *cache = NULL;
        char name[32];

        unsigned done = 0;
        int r = 0;

        cache = tmpfs_cache();
        mount_with(cache, "writeback=async");
        CHECK_OK(fs_emu_set_faults(emu, HOLD_UPLOADS), "hold uploads");

        /* 1 MiB files until the cache is full; 64 MiB at most. */
        for (done = 0; done < 64; done++) {
                _cleanup_free_ char *m = NULL, *rp = NULL;
                (void)snprintf(name, sizeof(name), "f%03u.bin", done);
                m = fs_mount_path(mnt, name);
                rp = refp(name);
                r = fs_write_pattern(m, 1000 + done, 1024 * 1024, 65536);
                if (r < 0) {
                        /* The file that hit ENOSPC is not in the reference: away with it. */
                        (void)unlink(m);
                        break;
                }
                CHECK_OK(fs_write_pattern(rp, 1000 + done, 1024 * 1024, 65536), "ref");
        }
        ck_assert_msg(
                r == -ENOSPC, "after %u MiB into a 32 MiB cache: %s (want ENOSPC)", done,
                r < 0 ? strerror(-r) : "no error");
        fprintf(stderr, "ENOSPC after %u complete files\n", done);

        CHECK_OK(fs_emu_set_faults(emu, ""), "faults off");
        flush_and_compare();
        tmpfs_cache_done(cache);
}
END_TEST

/* ---- restart in the middle of a flush -------------------------------------------------------- */

typedef struct FlushThread {
        FsMount *m;
        int result;
} FlushThread;

/* ---- a directory whose release the unmount dropped ------------------------------------------ */

/* The kernel sends RELEASEDIR in the background; the unmount drops one the driver has not read
 * yet, and the driver must free the handle itself: in the ASan stage LeakSanitizer fails the
 * driver's exit otherwise (status 134, once in CI before the fix). The driver is stopped
 * (SIGSTOP) between the closedir and the unmount, so that the release is always dropped. */
START_TEST(test_dir_release_dropped) {
        _cleanup_close_ int pidfd = -EBADF;
        _cleanup_free_ char *f = NULL;
        DIR *d;

        mount_with(NULL, NULL);
        f = fs_mount_path(mnt, "f");
        CHECK_OK(fs_write_pattern(f, 1, 1000, 1000), "write f");
        d = opendir(mnt->mountpoint);
        ck_assert_ptr_nonnull(d);
        ck_assert_ptr_nonnull(readdir(d));
        pidfd = (int)syscall(SYS_pidfd_open, mnt->pid, 0);
        ck_assert_int_ge(pidfd, 0);
        ck_assert_int_eq(kill(mnt->pid, SIGSTOP), 0);
        ck_assert_int_eq(closedir(d), 0);
        ck_assert_msg(umount2(mnt->mountpoint, 0) == 0, "umount: %m");
        mnt->mounted = false;
        ck_assert_int_eq(kill(mnt->pid, SIGCONT), 0);
        ck_assert_int_eq(fs_mount_wait_exit(mnt, pidfd), 0);
}
END_TEST

static void *flush_thread(void *p) {
        FlushThread *t = p;
        t->result = fs_flush(t->m, FLUSH_S);
        return NULL;
}

/* Polls done(userdata) every 20 ms until it is true; fails the test with what after 60 s. */
static void poll_until(bool (*done)(void *userdata), void *userdata, const char *what) {
        int64_t deadline = now_monotonic_ns() + 60 * NSEC_PER_SEC;

        while (!done(userdata)) {
                struct timespec pace = {.tv_nsec = 20 * 1000 * 1000};
                ck_assert_msg(now_monotonic_ns() < deadline, "%s", what);
                (void)nanosleep(&pace, NULL); /* polling pace, not synchronisation */
        }
}

typedef struct DirtyBelow {
        uint64_t start, now;
} DirtyBelow;

static bool dirty_below(void *userdata) {
        DirtyBelow *d = userdata;
        CHECK_OK(fs_dirty_bytes(mnt, &d->now), "dirty_bytes mid-flush");
        return d->now < d->start;
}

static bool put_range_seen(void *userdata) {
        uint64_t *puts = userdata;
        CHECK_OK(fs_emu_counter(emu, "PutRange", false, puts), "counters");
        return *puts > 0;
}

START_TEST(test_restart_mid_flush) {
        FlushThread t = {};
        pthread_t th;
        DirtyBelow d = {};
        uint64_t puts = 0;

        /* One transfer at a time: the 21 Put Ranges end one by one, 150 ms apart, and the poll
         * below has about 3 s to see the flush between its first and its last (with 16 in
         * parallel they ended in two bursts, leaving it one window of 150 ms). */
        mount_with(NULL, "writeback=async,max_requests=1");
        CHECK_OK(fs_emu_set_faults(emu, HOLD_UPLOADS), "hold uploads");
        for (unsigned i = 0; i < 16; i++) {
                char name[32];
                (void)snprintf(name, sizeof(name), "big-%02u.bin", i);
                CHECK_OK(write_both(name, 500 + i, 4 * 1024 * 1024 - 1000 + i * 100), name);
        }
        CHECK_OK(fs_dirty_bytes(mnt, &d.start), "dirty_bytes");
        ck_assert_msg(d.start > 0, "nothing dirty with uploads held back");
        /* Slow uploads, then a flush; kill once it has made progress but is not done. */
        CHECK_OK(fs_emu_set_faults(emu, "op=PutRange:latency=150ms"), "slow uploads");
        CHECK_OK(fs_emu_counter(emu, "PutRange", true, &puts), "counters");
        t.m = mnt;
        ck_assert_int_eq(pthread_create(&th, NULL, flush_thread, &t), 0);
        /* Half done: some bytes are on the share, some are not. */
        poll_until(dirty_below, &d, "the flush uploads nothing");
        CHECK_OK(fs_emu_counter(emu, "PutRange", false, &puts), "counters");
        ck_assert_msg(
                d.now > 0,
                "the flush ended before the kill could interrupt it (%" PRIu64
                " Put Ranges): make it slower",
                puts);
        fprintf(stderr, "killing mid-flush: %" PRIu64 " of %" PRIu64 " bytes still dirty\n", d.now,
                d.start);
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        ck_assert_int_eq(pthread_join(th, NULL), 0);
        fprintf(stderr, "the interrupted flush returned %s\n", strerror(-t.result));

        remount_flush_compare();
}
END_TEST

/* ---- the mount stops while a flush waits ----------------------------------------------------- */

/* SIGTERM while a flush-all waits for slow uploads: the driver spends its stop's flush budget
 * (retry_budget + 5 s), then answers the waiting flush ECANCELED before it unmounts. Before, the
 * driver never answered it (nor released its timer): its caller got ECONNABORTED when the
 * unmount closed the connection. Nothing is lost: the next mount uploads the rest. */
START_TEST(test_stop_mid_flush) {
        _cleanup_close_ int pidfd = -EBADF;
        FlushThread t = {};
        pthread_t th;
        uint64_t puts = 0;

        /* Twenty 4 MiB pieces one at a time, at least 0.7 s each: 14 s, past the stop's 9 s
         * (retry_budget + 5 s). A request may take up to retry_budget, 4 s: far more than one
         * piece needs under the sanitizers, where a timeout would end the flush with EIO. */
        mount_with(NULL, "writeback=async,async_delay=3600,max_requests=1,retry_budget=4");
        CHECK_OK(write_both("slow.bin", 31, 80 * 1024 * 1024), "write slow.bin");
        CHECK_OK(fs_emu_set_faults(emu, "op=PutRange:latency=700ms"), "slow uploads");
        CHECK_OK(fs_emu_counter(emu, "PutRange", true, &puts), "counters");
        t.m = mnt;
        ck_assert_int_eq(pthread_create(&th, NULL, flush_thread, &t), 0);
        /* With async_delay=3600 only the flush uploads: its first Put Range says it waits. */
        poll_until(put_range_seen, &puts, "the flush uploads nothing");
        pidfd = stop_daemon();
        ck_assert_int_eq(pthread_join(th, NULL), 0);
        ck_assert_msg(
                t.result == -ECANCELED, "the flush cut short by the stop returned %s",
                strerror(-t.result));
        wait_stopped(pidfd);

        remount_flush_compare();
}
END_TEST

/* ---- a directory renamed over dirty files, then a crash (bug 5, fixed) ------------------------
 */

/* SIGTERM with more files dirty than upload at once (64) while the share does not answer: the
 * stop's flush budget runs out with uploads in flight and files waiting for a slot. The driver
 * cancels them and exits 0; it aborted before (a cancelled upload started the next waiting one
 * on the REST client being freed). Nothing is lost: the next mount uploads everything. */
START_TEST(test_stop_with_queue) {
        _cleanup_close_ int pidfd = -EBADF;

        mount_with(NULL, "writeback=async,async_delay=3600,retry_budget=3");
        for (unsigned k = 0; k < 300; k++) {
                char name[32];
                (void)snprintf(name, sizeof(name), "q%03u", k);
                CHECK_OK(write_both(name, k + 1, 100), name);
        }
        /* Create File is done at once and answered after 20 s: each upload ends with its
         * request's timeout (retry_budget), and the next 64 start. */
        CHECK_OK(fs_emu_set_faults(emu, "op=CreateFile:answer-latency=20s"), "silent share");
        pidfd = stop_daemon();
        wait_stopped(pidfd);

        remount_flush_compare();
}
END_TEST

START_TEST(test_rename_dir_dirty_kill) {
        _cleanup_free_ char *d = NULL, *sub = NULL, *x = NULL, *from = NULL, *to = NULL;
        uint64_t dirty = 0;

        mount_with(NULL, "writeback=async");
        d = fs_mount_path(mnt, "d");
        sub = fs_mount_path(mnt, "d/sub");
        x = fs_mount_path(mnt, "x");
        ck_assert_int_eq(mkdir(d, 0755), 0);
        ck_assert_int_eq(mkdir(sub, 0755), 0);
        ck_assert_int_eq(mkdir(x, 0755), 0);
        for (size_t k = 0; k < 3; k++) {
                _cleanup_free_ char *p = refp((const char *const[]){"d", "d/sub", "x"}[k]);
                ck_assert_int_eq(mkdir(p, 0755), 0);
        }
        CHECK_OK(write_both("d/sub/f", 77, 1000000), "write d/sub/f");
        {
                _cleanup_free_ char *rf = refp("d"), *rt = refp("x/e");
                ck_assert_int_eq(rename(rf, rt), 0);
        }
        from = fs_mount_path(mnt, "d");
        to = fs_mount_path(mnt, "x/e");
        ck_assert_msg(rename(from, to) == 0, "rename: %m");
        CHECK_OK(fs_dirty_bytes(mnt, &dirty), "dirty_bytes");
        fprintf(stderr, "kill -9 with %" PRIu64 " dirty bytes\n", dirty);
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        flush_and_compare();
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* ---- dirty records: not synced on the write path, made durable in the background, and not
 * trusted after a reboot unless durable ----------------------------------------------------- */

static void closedirp(DIR **d) {
        if (*d)
                (void)closedir(*d);
}

#define OTHER_BOOT "00000000-0000-4000-8000-000000000000"
#define RECORD_WAIT_NS (20 * NSEC_PER_SEC)

static void this_boot(char buf[static 64]) {
        FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
        ck_assert_ptr_nonnull(f);
        ck_assert_ptr_nonnull(fgets(buf, 64, f));
        buf[strcspn(buf, "\n")] = '\0';
        (void)fclose(f);
}

/* Whether dir/name is the record of a clean file (kept with its cache file until that goes). */
static bool record_is_clean(const char *dir, const char *name) {
        _cleanup_free_ char *path = NULL;
        char buf[16] = "";
        FILE *f;

        ck_assert_int_ge(asprintf(&path, "%s/%s", dir, name), 0);
        f = fopen(path, "re");
        if (!f)
                return false;
        (void)!fread(buf, 1, sizeof(buf) - 1, f);
        (void)fclose(f);
        return strncmp(buf, "azfilesfs-clean", 15) == 0;
}

/* The record files (<id>.dirty) in the mount's cache directory
 * (cache_dir/<account>-<share>-<hash>/): the number of those of dirty files (*ret_dirty: the
 * path of the last one) and of clean files (kept with their cache files). */
static void records_scan(FsMount *m, unsigned *ret_dirty, unsigned *ret_clean, char **ret_path) {
        _cleanup_(closedirp) DIR *top = opendir(m->cache_dir);
        struct dirent *de;

        *ret_dirty = *ret_clean = 0;
        *ret_path = NULL;
        ck_assert_ptr_nonnull(top);
        while ((de = readdir(top))) {
                _cleanup_free_ char *sub = NULL;
                _cleanup_(closedirp) DIR *d = NULL;
                struct dirent *e;
                if (de->d_name[0] == '.')
                        continue;
                ck_assert_int_ge(asprintf(&sub, "%s/%s", m->cache_dir, de->d_name), 0);
                d = opendir(sub);
                if (!d)
                        continue;
                while ((e = readdir(d))) {
                        size_t n = strlen(e->d_name);
                        if (n < 6 || strcmp(e->d_name + n - 6, ".dirty") != 0)
                                continue;
                        if (record_is_clean(sub, e->d_name)) {
                                (*ret_clean)++;
                                continue;
                        }
                        (*ret_dirty)++;
                        free(*ret_path);
                        ck_assert_int_ge(asprintf(ret_path, "%s/%s", sub, e->d_name), 0);
                }
        }
}

/* The one dirty record in the mount's cache directory, NULL when there is none (more than one
 * fails the test). */
static char *record_find(FsMount *m) {
        unsigned dirty, clean;
        char *found;

        records_scan(m, &dirty, &clean, &found);
        ck_assert_msg(dirty <= 1, "more than one dirty record in %s", m->cache_dir);
        return found;
}

/* Record files in the mount's cache directory: all of them, or only those of clean files. */
static unsigned records_count(FsMount *m, bool clean_only) {
        _cleanup_free_ char *last = NULL;
        unsigned dirty, clean;

        records_scan(m, &dirty, &clean, &last);
        return clean_only ? clean : dirty + clean;
}

static char *record_read(const char *path) {
        char *text = NULL;
        size_t size = 0;
        FILE *f = fopen(path, "re");

        ck_assert_msg(f, "%s: %m", path);
        ck_assert_int_eq(getdelim(&text, &size, '\0', f) > 0, 1);
        (void)fclose(f);
        return text;
}

/* path (a file of the cache directory) now holds text. */
static void write_text(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        ck_assert_msg(f, "%s: %m", path);
        ck_assert_int_eq(fputs(text, f) >= 0, 1);
        ck_assert_int_eq(fclose(f), 0);
}

/* Rewrites the record at path line by line: edit() writes each line (without its newline) to o
 * as it should be. Returns the new record's size. */
static size_t record_rewrite(
        const char *path,
        void (*edit)(FILE *o, const char *line, const void *userdata),
        const void *userdata) {
        _cleanup_free_ char *text = record_read(path), *out = NULL;
        size_t size = 0;
        FILE *o = open_memstream(&out, &size);

        ck_assert_ptr_nonnull(o);
        for (char *p = text, *line; (line = strsep(&p, "\n"));)
                if (*line)
                        edit(o, line, userdata);
        ck_assert_int_eq(fclose(o), 0);
        write_text(path, out);
        return size;
}

typedef struct BootEdit {
        const char *boot;
        int durable;
} BootEdit;

static void edit_boot(FILE *o, const char *line, const void *userdata) {
        const BootEdit *e = userdata;

        if (strncmp(line, "boot ", 5) == 0)
                fprintf(o, "boot %s\n", e->boot);
        else if (strncmp(line, "durable ", 8) == 0)
                fprintf(o, "durable %d\n", e->durable);
        else
                fprintf(o, "%s\n", line);
}

/* Rewrites the record's boot and durable lines, as a record written before a reboot would be. */
static void record_edit(const char *path, const char *boot, int durable) {
        (void)record_rewrite(path, edit_boot, &(BootEdit){.boot = boot, .durable = durable});
}

START_TEST(test_record_durable_later) {
        _cleanup_free_ char *p = NULL, *rec = NULL, *text = NULL, *stats = NULL;
        char boot[64], want[96];
        int64_t deadline;
        int fd;

        this_boot(boot);
        mount_with(NULL, "writeback=async,async_delay=3600");
        p = fs_mount_path(mnt, "w.txt");
        fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, "0123456789", 10), 10);
        /* Open for writing: the tick leaves its record alone for 5 s, so what the write left is
         * seen here: a record of this boot, not durable (nothing was synced for it). */
        rec = record_find(mnt);
        ck_assert_msg(rec, "no dirty record after write() returned");
        text = record_read(rec);
        (void)snprintf(want, sizeof(want), "\nboot %s\n", boot);
        ck_assert_msg(strstr(text, want), "record without this boot's id:\n%s", text);
        ck_assert_msg(strstr(text, "\ndurable 0\n"), "record durable at once:\n%s", text);
        ck_assert_int_eq(close(fd), 0);
        /* Closed: made durable in the background, within a few ticks. */
        deadline = now_monotonic_ns() + RECORD_WAIT_NS;
        for (;;) {
                struct timespec pace = {.tv_nsec = 20 * 1000 * 1000};
                free(text);
                text = record_read(rec);
                if (strstr(text, "\ndurable 1\n"))
                        break;
                ck_assert_msg(now_monotonic_ns() < deadline, "record not durable:\n%s", text);
                (void)nanosleep(&pace, NULL); /* polling pace, not synchronisation */
        }
        ck_assert_msg(strstr(text, want), "durable record without this boot's id:\n%s", text);
        CHECK_OK(fs_stats(mnt, &stats), "stats");
        ck_assert_msg(
                strstr(stats, "\"records_made_durable\":") &&
                        !strstr(stats, "\"records_made_durable\":0,"),
                "stats: %s", stats);
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* A file on the share overwritten here, azfilesfs killed before the upload, and its record made
 * to look like one of an earlier boot (durable or not); what the next mount uploads. */
static void reboot_case(int durable) {
        _cleanup_free_ char *p = NULL, *rec = NULL, *found = NULL, *share_old = NULL;
        _cleanup_free_ char *share_side = NULL, *old = NULL, *new = NULL, *tail = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        const size_t size = 300000;
        size_t n_old = 0, n_side = 0;
        struct dirent *de;
        int fd;

        mount_with(NULL, "writeback=async,async_delay=3600");
        p = fs_mount_path(mnt, "keep.txt");
        CHECK_OK(fs_write_pattern(p, 1, size, 65536), "write keep.txt");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "first flush");
        old = malloc(size);
        new = malloc(size);
        ck_assert_ptr_nonnull(old);
        ck_assert_ptr_nonnull(new);
        fs_pattern_fill(1, 0, old, size);
        memcpy(new, old, size);
        fs_pattern_fill(2, 0, new + 4096, 65536);
        fd = open(p, O_WRONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pwrite(fd, new + 4096, 65536, 4096), 65536);
        ck_assert_int_eq(close(fd), 0);
        rec = record_find(mnt);
        ck_assert_msg(rec, "no dirty record");
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        record_edit(rec, OTHER_BOOT, durable);

        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        CHECK_OK(fs_share_read(emu, SHARE, "keep.txt", &share_old, &n_old), "read keep.txt");
        d = opendir(mnt->mountpoint);
        ck_assert_ptr_nonnull(d);
        while ((de = readdir(d)))
                if (strncmp(de->d_name, "keep.txt.azfilesfs-recovered-", 29) == 0) {
                        ck_assert_msg(!found, "two recovered files: %s, %s", found, de->d_name);
                        found = strdup(de->d_name);
                }
        closedirp(&d); /* before the unmount below */
        d = NULL;
        tail = fs_mount_log_tail(mnt, 8000);
        if (durable) {
                /* Synced before the reboot: trusted, uploaded over its own name. */
                ck_assert_msg(!found, "durable record recovered aside as %s", found);
                ck_assert_msg(
                        n_old == size && memcmp(share_old, new, size) == 0,
                        "keep.txt on the share is not the new bytes (%zu bytes)", n_old);
                ck_assert_int_eq(fs_mount_stop(mnt), 0);
                return;
        }
        /* Not synced before the reboot: the share's copy stays, the bytes go beside it. */
        ck_assert_msg(
                n_old == size && memcmp(share_old, old, size) == 0,
                "keep.txt on the share changed (%zu bytes)", n_old);
        ck_assert_msg(found, "no keep.txt.azfilesfs-recovered-* on the mount; log:\n%s", tail);
        ck_assert_msg(
                strlen(found) == 29 + 16 && found[29 + 8] == 'T' && found[29 + 15] == 'Z',
                "recovered name %s is not <name>.azfilesfs-recovered-yyyymmddThhmmssZ", found);
        CHECK_OK(fs_share_read(emu, SHARE, found, &share_side, &n_side), "read recovered file");
        ck_assert_msg(
                n_side == size && memcmp(share_side, new, size) == 0,
                "%s does not hold the new bytes (%zu bytes)", found, n_side);
        ck_assert_msg(
                tail && strstr(tail, found) && strstr(tail, "/keep.txt"),
                "no warning naming /keep.txt and /%s in the log:\n%s", found, tail);
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}

START_TEST(test_reboot_not_durable) {
        reboot_case(0);
}
END_TEST

START_TEST(test_reboot_durable) {
        reboot_case(1);
}
END_TEST

/* The same for a new file whose directory is deleted on the share (from another mount) before
 * the next mount: its bytes go to the share's root. */
START_TEST(test_reboot_dir_gone) {
        _cleanup_free_ char *d = NULL, *p = NULL, *rec = NULL, *found = NULL, *side = NULL;
        _cleanup_free_ char *d2 = NULL, *buf = NULL;
        _cleanup_(closedirp) DIR *dir = NULL;
        FsMount *other = NULL;
        const size_t size = 70000;
        size_t n = 0;
        struct dirent *de;
        int r;

        mount_with(NULL, "writeback=async,async_delay=3600");
        d = fs_mount_path(mnt, "gone");
        ck_assert_int_eq(mkdir(d, 0755), 0);
        p = fs_mount_path(mnt, "gone/x.bin");
        CHECK_OK(fs_write_pattern(p, 3, size, 65536), "write gone/x.bin");
        rec = record_find(mnt);
        ck_assert_msg(rec, "no dirty record");
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        record_edit(rec, OTHER_BOOT, 0);
        r = fs_mount_new(emu, SHARE, NULL, NULL, &other);
        ck_assert_msg(r == 0, "second mount: %s", strerror(-r));
        d2 = fs_mount_path(other, "gone");
        ck_assert_msg(rmdir(d2) == 0, "rmdir gone on the share: %m");
        ck_assert_int_eq(fs_mount_stop(other), 0);
        other = fs_mount_free(other);

        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        dir = opendir(mnt->mountpoint);
        ck_assert_ptr_nonnull(dir);
        while ((de = readdir(dir))) {
                ck_assert_msg(strcmp(de->d_name, "gone") != 0, "gone is back on the share");
                if (strncmp(de->d_name, "x.bin.azfilesfs-recovered-", 26) == 0)
                        found = strdup(de->d_name);
        }
        closedirp(&dir); /* before the unmount below */
        dir = NULL;
        ck_assert_msg(found, "no x.bin.azfilesfs-recovered-* in the root");
        CHECK_OK(fs_share_read(emu, SHARE, found, &side, &n), "read recovered file");
        buf = malloc(size);
        ck_assert_ptr_nonnull(buf);
        fs_pattern_fill(3, 0, buf, size);
        ck_assert_msg(n == size && memcmp(side, buf, size) == 0, "%s holds other bytes", found);
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* Writes text to a new file rel through the mount; its path on the mount. */
static char *write_new(const char *rel, const char *text) {
        char *p = fs_mount_path(mnt, rel);
        int fd;

        ck_assert_ptr_nonnull(p);
        fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        ck_assert_int_eq(close(fd), 0);
        return p;
}

/* Mounts with cache (on its tmpfs), puts name (pattern seed, size bytes) on the share, remounts
 * (a clean cache is not kept) and reads it back: cached, clean, so without a record. Its path. */
static char *cached_clean(const char *cache, const char *name, uint64_t seed, size_t size) {
        char *p;

        mount_with(cache, NULL);
        CHECK_OK(write_both(name, seed, size), "write"); /* on the share at close */
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
        CHECK_OK(fs_mount_start(mnt), "remount");
        p = fs_mount_path(mnt, name);
        CHECK_OK(fs_check_pattern(p, seed, size), "read back");
        return p;
}

START_TEST(test_record_enospc) {
        _cleanup_free_ char *cache = NULL, *filler = NULL, *p = NULL, *share = NULL;
        const size_t size = 4 * 1024 * 1024;
        char page[4096];
        size_t got = 0;
        ssize_t n;
        int fd;

        cache = tmpfs_cache();
        p = cached_clean(cache, "old.bin", 51, size);
        /* The cache disk full (a file beside the cache, on its tmpfs). */
        filler = fill_disk(cache);
        /* A write into the cached file's own blocks: it fits; its record may not. */
        fd = open(p, O_RDWR | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        memset(page, 'N', sizeof(page));
        n = pwrite(fd, page, sizeof(page), 0);
        ck_assert_msg(
                n == (ssize_t)sizeof(page) || (n < 0 && errno == ENOSPC),
                "write with the cache disk full: %zd (%m)", n);
        fprintf(stderr, "the write %s\n", n < 0 ? "failed with ENOSPC" : "was acknowledged");
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        ck_assert_int_eq(close(fd), -1); /* the mount is gone */
        ck_assert_int_eq(unlink(filler), 0);
        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        CHECK_OK(fs_flush(mnt, 60), "flush");
        CHECK_OK(fs_share_read(emu, SHARE, "old.bin", &share, &got), "share read");
        ck_assert_uint_eq(got, size);
        if (n > 0)
                ck_assert_msg(
                        memcmp(share, page, sizeof(page)) == 0,
                        "an acknowledged write is not on the share after the crash");
        else {
                uint8_t want[4096];
                fs_pattern_fill(51, 0, want, sizeof(want));
                ck_assert_msg(
                        memcmp(share, want, sizeof(want)) == 0, "a failed write changed the share");
        }
        tmpfs_cache_done(cache);
}
END_TEST

/* A file cached by a read (clean, so without a record) made longer with the cache disk full,
 * then kill -9: the truncation failed (ENOSPC, the share keeps the file as it was) or it reaches
 * the share after a remount. It was acknowledged without its record, and the crash lost it. (A
 * cut frees the cache file's blocks before its record is written: an extension frees none.) */
START_TEST(test_truncate_enospc) {
        _cleanup_free_ char *cache = NULL, *filler = NULL, *p = NULL, *share = NULL;
        const size_t size = 4 * 1024 * 1024, longer = size + 1024 * 1024;
        static uint8_t want[4 * 1024 * 1024];
        size_t got = 0;
        int fd, r;

        cache = tmpfs_cache();
        p = cached_clean(cache, "cut.bin", 53, size);
        fd = open(p, O_RDWR | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        filler = fill_disk(cache);
        r = ftruncate(fd, (off_t)longer);
        if (r < 0)
                ck_assert_msg(errno == ENOSPC, "truncate with the cache disk full: %m");
        fprintf(stderr, "the truncation %s\n", r < 0 ? "failed with ENOSPC" : "was acknowledged");
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        (void)close(fd); /* the mount is gone */
        ck_assert_int_eq(unlink(filler), 0);
        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        CHECK_OK(fs_share_read(emu, SHARE, "cut.bin", &share, &got), "share read");
        ck_assert_msg(
                got == (r == 0 ? longer : size),
                "the share's file is %zu bytes after a%s truncation", got,
                r == 0 ? "n acknowledged" : " failed");
        fs_pattern_fill(53, 0, want, sizeof(want));
        ck_assert_msg(memcmp(share, want, size) == 0, "the share's first bytes changed");
        for (size_t k = size; k < got; k++)
                ck_assert_msg(share[k] == 0, "byte %zu past the old end is not 0", k);
        tmpfs_cache_done(cache);
}
END_TEST

/* creat() with the cache disk full: the record that says the file is to be made cannot be
 * written, so creat() fails (ENOSPC); it returned 0, and a kill -9 then lost the file. */
START_TEST(test_create_enospc) {
        _cleanup_free_ char *cache = NULL, *filler = NULL, *p = NULL, *share = NULL;
        size_t got = 0;
        int fd, r;

        cache = tmpfs_cache();
        mount_with(cache, NULL);
        filler = fill_disk(cache);
        p = fs_mount_path(mnt, "made.txt");
        fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        fprintf(stderr, "creat %s\n", fd < 0 ? "failed" : "succeeded");
        if (fd < 0)
                ck_assert_msg(errno == ENOSPC, "creat with the cache disk full: %m");
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        if (fd >= 0)
                (void)close(fd); /* the mount is gone */
        ck_assert_int_eq(unlink(filler), 0);
        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        r = fs_share_read(emu, SHARE, "made.txt", &share, &got);
        if (fd >= 0)
                ck_assert_msg(
                        r == 0, "a file creat() returned for is not on the share after a crash");
        else
                ck_assert_int_eq(r, -ENOENT);
        tmpfs_cache_done(cache);
}
END_TEST

/* A write that covers a whole small file (so no fetch) into a cache disk that is full: it fails,
 * and the file's bytes must still be the share's: the piece was taken as present before the
 * write, which left holes, so reads gave zeros and the next write uploaded them. */
START_TEST(test_covered_enospc) {
        _cleanup_free_ char *cache = NULL, *filler = NULL, *p = NULL, *share = NULL;
        const size_t size = 100 * 1024;
        static char buf[100 * 1024], want[100 * 1024];
        size_t got = 0;
        ssize_t n;
        int fd;

        cache = tmpfs_cache();
        mount_with(cache, NULL);
        CHECK_OK(write_both("small.bin", 61, size), "write small.bin"); /* on the share at close */
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
        CHECK_OK(fs_mount_start(mnt), "remount"); /* clean cache is not kept */
        p = fs_mount_path(mnt, "small.bin");
        filler = fill_disk(cache);
        fd = open(p, O_WRONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        memset(buf, 'N', sizeof(buf));
        n = pwrite(fd, buf, sizeof(buf), 0);
        ck_assert_msg(n < 0 && errno == ENOSPC, "the write into a full cache disk: %zd (%m)", n);
        ck_assert_int_eq(unlink(filler), 0);
        /* The share's bytes, not holes. */
        fs_pattern_fill(61, 0, want, sizeof(want));
        {
                int rfd = open(p, O_RDONLY | O_CLOEXEC);
                ck_assert_int_ge(rfd, 0);
                ck_assert_int_eq(pread(rfd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
                ck_assert_int_eq(close(rfd), 0);
        }
        ck_assert_msg(memcmp(buf, want, sizeof(want)) == 0, "a failed write left zeros to read");
        /* A later write of one byte: the rest of the piece goes up as the share had it. */
        ck_assert_int_eq(pwrite(fd, "Z", 1, 0), 1);
        ck_assert_int_eq(close(fd), 0);
        CHECK_OK(fs_share_read(emu, SHARE, "small.bin", &share, &got), "share read");
        ck_assert_uint_eq(got, size);
        want[0] = 'Z';
        ck_assert_msg(memcmp(share, want, size) == 0, "zeros uploaded over the share's bytes");
        tmpfs_cache_done(cache);
}
END_TEST

/* A FIFO where a record would be (someone with access to the cache directory): the next mount
 * says it cannot read it and goes on; it waited for a writer of the FIFO for ever. */
START_TEST(test_record_fifo) {
        _cleanup_free_ char *fifo = NULL, *rec = NULL;

        mount_with(NULL, "writeback=async,async_delay=3600");
        CHECK_OK(write_both("kept.bin", 71, 100000), "write kept.bin");
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        rec = record_find(mnt);
        ck_assert_msg(rec, "no dirty record after the kill");
        *strrchr(rec, '/') = '\0';
        ck_assert_int_ge(asprintf(&fifo, "%s/0000000000abcdef.dirty", rec), 0);
        ck_assert_int_eq(mkfifo(fifo, 0600), 0);
        CHECK_OK(fs_mount_start(mnt), "remount with a FIFO among the records");
        flush_and_compare();
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* 15,000 pieces past the file's end (skipped by recovery) before the record's own. */
static void edit_pieces_long(FILE *o, const char *line, const void *unused) {
        if (strncmp(line, "pieces ", 7) != 0) {
                fprintf(o, "%s\n", line);
                return;
        }
        fputs("pieces ", o);
        for (unsigned k = 0; k < 15000; k++)
                fprintf(o, "%u,", 1000000 + k);
        fprintf(o, "%s\n", line + 7);
}

START_TEST(test_long_record) {
        _cleanup_free_ char *rec = NULL;

        /* A record this long of real pieces needs some 13,000 dirty pieces of 4 MiB. */
        mount_with(NULL, "writeback=async,async_delay=3600");
        CHECK_OK(write_both("long.bin", 43, 8 * 1024 * 1024), "write long.bin");
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        rec = record_find(mnt);
        ck_assert_msg(rec, "no dirty record after the kill");
        ck_assert_uint_gt(record_rewrite(rec, edit_pieces_long, NULL), 65536 + 4096);
        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        flush_and_compare();
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* What the share holds at rel ("" when it has no such file). */
static char *share_text(const char *rel) {
        char *data = NULL;
        size_t n = 0;
        int r = fs_share_read(emu, SHARE, rel, &data, &n);

        if (r == -ENOENT)
                return strdup("");
        ck_assert_msg(r == 0, "share read %s: %s", rel, strerror(-r));
        return data;
}

/* The share holds text at rel ("": no such file). */
static void assert_share_text(const char *rel, const char *text) {
        _cleanup_free_ char *got = share_text(rel);
        ck_assert_msg(streq(got, text), "/%s on the share: \"%s\", not \"%s\"", rel, got, text);
}

START_TEST(test_replaced_open_kill) {
        _cleanup_free_ char *f = NULL, *g = NULL, *h = NULL;
        int fd_f, fd_h;

        mount_with(NULL, NULL);
        f = write_new("f", "old f");
        g = write_new("g", "new f, moved here by rename");
        h = write_new("h", "h, to be deleted");
        fd_f = open(f, O_WRONLY | O_CLOEXEC);
        fd_h = open(h, O_WRONLY | O_CLOEXEC);
        ck_assert_int_ge(fd_f, 0);
        ck_assert_int_ge(fd_h, 0);
        ck_assert_int_eq(rename(g, f), 0);
        ck_assert_int_eq(unlink(h), 0);
        /* Writes to files that have no name on the share any more. */
        ck_assert_int_eq(pwrite(fd_f, "JUNK", 4, 0), 4);
        ck_assert_int_eq(pwrite(fd_h, "JUNK", 4, 0), 4);
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        (void)close(fd_f); /* on a dead mount: ENOTCONN */
        (void)close(fd_h);
        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        assert_share_text("f", "new f, moved here by rename");
        assert_share_text("h", "");
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

START_TEST(test_record_clean) {
        _cleanup_free_ char *p = NULL, *rec = NULL;
        char buf[64];
        int fd;

        mount_with(NULL, "writeback=async,async_delay=3600");
        p = write_new("c.txt", "clean me");
        ck_assert_uint_eq(records_count(mnt, false), 1);
        ck_assert_uint_eq(records_count(mnt, true), 0);
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        rec = record_find(mnt);
        ck_assert_ptr_null(rec);
        ck_assert_uint_eq(records_count(mnt, true), 1);
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
        ck_assert_int_eq(fs_mount_start(mnt), 0);
        ck_assert_uint_eq(records_count(mnt, false), 0);
        fd = open(p, O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(read(fd, buf, sizeof(buf)), 8);
        ck_assert_int_eq(close(fd), 0);
        ck_assert_int_eq(memcmp(buf, "clean me", 8), 0);
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

static void put_file(const char *dir, const char *name, const char *text) {
        _cleanup_free_ char *p = NULL;

        ck_assert_int_ge(asprintf(&p, "%s/%s", dir, name), 0);
        write_text(p, text);
}

static bool exists_in(const char *dir, const char *name) {
        _cleanup_free_ char *p = NULL;
        ck_assert_int_ge(asprintf(&p, "%s/%s", dir, name), 0);
        return access(p, F_OK) == 0;
}

START_TEST(test_record_empty) {
        _cleanup_free_ char *p = NULL, *rec = NULL, *dir = NULL, *got = NULL;
        const char *slash;
        size_t size = 0;

        mount_with(NULL, "writeback=async,async_delay=3600");
        p = write_new("keep.txt", "kept");
        rec = record_find(mnt);
        ck_assert_msg(rec, "no dirty record");
        slash = strrchr(rec, '/');
        ck_assert_ptr_nonnull(slash);
        dir = strndup(rec, (size_t)(slash - rec)); /* the cache's directory */
        ck_assert_ptr_nonnull(dir);
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        put_file(dir, "00000000000000ff.dirty", "");
        put_file(dir, "00000000000000ff.data", "");
        put_file(dir, "00000000000000fe.dirty", "");
        put_file(dir, "00000000000000fe.data", "bytes of no known file");
        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        ck_assert(!exists_in(dir, "00000000000000ff.dirty"));
        ck_assert(!exists_in(dir, "00000000000000ff.data"));
        ck_assert(exists_in(dir, "00000000000000fe.dirty"));
        ck_assert(exists_in(dir, "00000000000000fe.data"));
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        CHECK_OK(fs_share_read(emu, SHARE, "keep.txt", &got, &size), "read keep.txt");
        ck_assert_uint_eq(size, 4);
        ck_assert_int_eq(memcmp(got, "kept", 4), 0);
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* Unmounted while the share refuses the upload: the record left for the next mount is durable
 * (the failed upload rewrote it, not durable, just before). */
START_TEST(test_unmount_durable) {
        _cleanup_free_ char *rec = NULL, *text = NULL;
        int r;

        mount_with(NULL, "writeback=async,async_delay=3600,retry_budget=2");
        CHECK_OK(write_both("u.bin", 5, 5000), "write u.bin");
        CHECK_OK(fs_emu_set_faults(emu, HOLD_UPLOADS), "hold uploads");
        rec = record_find(mnt);
        ck_assert_msg(rec, "no dirty record");
        r = fs_mount_stop(mnt);
        ck_assert_msg(r >= 0, "unmount: %s", strerror(-r));
        text = record_read(rec);
        ck_assert_msg(strstr(text, "\ndurable 1\n"), "record left by the unmount:\n%s", text);
        remount_flush_compare();
}
END_TEST

/* The same for a file still open (and written within the last 5 s, which the background pass
 * leaves for later) when azfilesfs is stopped: its record is made durable before it exits. */
START_TEST(test_unmount_durable_open) {
        _cleanup_free_ char *p = NULL, *rec = NULL, *text = NULL, *share = NULL;
        _cleanup_close_ int pidfd = -EBADF;
        size_t got = 0;
        int fd;

        mount_with(NULL, "writeback=async,async_delay=3600,retry_budget=2");
        CHECK_OK(fs_emu_set_faults(emu, HOLD_UPLOADS), "hold uploads");
        p = fs_mount_path(mnt, "open.bin");
        fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, "still open", 10), 10);
        rec = record_find(mnt);
        ck_assert_msg(rec, "no dirty record");
        pidfd = stop_daemon();
        wait_stopped(pidfd);
        (void)close(fd); /* on a mount that is gone */
        text = record_read(rec);
        ck_assert_msg(strstr(text, "\ndurable 1\n"), "record left by the stop:\n%s", text);
        CHECK_OK(fs_emu_set_faults(emu, ""), "faults off");
        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        CHECK_OK(fs_share_read(emu, SHARE, "open.bin", &share, &got), "share read");
        ck_assert_uint_eq(got, 10);
        ck_assert_int_eq(memcmp(share, "still open", 10), 0);
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* ---- kill -9 while a rename or a delete is on its way to the share -------------------------- */

#define INFLIGHT_SIZE (12 * 1024 * 1024) /* three 4 MiB pieces */
#define INFLIGHT_OFF (5 * 1024 * 1024)   /* in the second */
#define INFLIGHT_LEN 4096

typedef struct InflightOp {
        const char *from, *to; /* to NULL: unlink(from) */
        int err;
} InflightOp;

static void *inflight_thread(void *userdata) {
        InflightOp *o = userdata;
        int r = o->to ? rename(o->from, o->to) : unlink(o->from);
        o->err = r < 0 ? errno : 0;
        return NULL;
}

/* The file's bytes before (seed 9) and after the overwrite (X's at INFLIGHT_OFF). */
static char *inflight_expect(bool written) {
        char *buf = malloc(INFLIGHT_SIZE);
        ck_assert_ptr_nonnull(buf);
        fs_pattern_fill(9, 0, buf, INFLIGHT_SIZE);
        if (written)
                memset(buf + INFLIGHT_OFF, 'X', INFLIGHT_LEN);
        return buf;
}

/* What the share holds at rel, in words: "absent", "old", "new", "replacing" (the bytes of the
 * file renamed over it, seed 10), or what else. */
static const char *inflight_state(const char *rel) {
        _cleanup_free_ char *data = NULL, *old = inflight_expect(false),
                            *neu = inflight_expect(true), *repl = malloc(INFLIGHT_SIZE);
        size_t n = 0, zeros = 0;
        int r = fs_share_read(emu, SHARE, rel, &data, &n);

        if (r == -ENOENT)
                return "absent";
        ck_assert_msg(r == 0, "share read %s: %s", rel, strerror(-r));
        if (n == INFLIGHT_SIZE && memcmp(data, old, n) == 0)
                return "old";
        if (n == INFLIGHT_SIZE && memcmp(data, neu, n) == 0)
                return "new";
        ck_assert_ptr_nonnull(repl);
        fs_pattern_fill(10, 0, repl, INFLIGHT_SIZE);
        if (n == INFLIGHT_SIZE && memcmp(data, repl, n) == 0)
                return "replacing";
        for (size_t k = 0; k < n; k++)
                zeros += data[k] == 0;
        fprintf(stderr, "/%s: %zu bytes, %zu zero bytes, X's at the write: %s\n", rel, n, zeros,
                n >= INFLIGHT_OFF + INFLIGHT_LEN && data[INFLIGHT_OFF] == 'X' ? "yes" : "no");
        return "other";
}

/* Waits (bounded, 20 s) until the share has nothing at rel. */
/* Waits (20 s at most) until the emulator has counted a request of op since its counters were
 * reset. */
static void wait_request_seen(const char *op) {
        uint64_t seen = 0;

        for (unsigned k = 0; k < 2000 && seen == 0; k++) {
                (void)usleep(10000); /* polling interval; the condition is the emulator's */
                CHECK_OK(fs_emu_counter(emu, op, false, &seen), "counter");
        }
        ck_assert_msg(seen > 0, "no %s request", op);
}

static void wait_share_absent(const char *rel) {
        _cleanup_free_ char *data = NULL;
        size_t n = 0;
        int r = 0;

        for (unsigned k = 0; k < 2000 && (r = fs_share_read(emu, SHARE, rel, &data, &n)) == 0;
             k++) {
                free(data);
                data = NULL;
                (void)usleep(10000); /* polling interval; the condition is the share's */
        }
        ck_assert_msg(r == -ENOENT, "/%s still on the share: %s", rel, strerror(-r));
}

/* A file on the share (src_rel) overwritten here (4 KiB of X's, dirty: writeback=async, no
 * upload for an hour); then op (rename op_from to op_to, or an unlink of op_from) with the
 * share's answer held off by faults (op_name's request counted first; gone: a path the share
 * no longer has once it carried the request out, else NULL); kill -9 while it is in flight; a
 * remount with the same cache_dir flushes. Returns the states of the names in names[]
 * (inflight_state) after that flush. */
/* Set by a test: the write comes while the request is in flight (the file was clean when it was
 * sent), through a descriptor opened before it. */
static bool inflight_late;

static void inflight_kill(
        const char *src_rel,
        const char *op_from,
        const char *op_to,
        const char *op_name,
        const char *faults,
        const char *gone,
        const char *replacing,
        const char *const names[],
        const char *states[],
        size_t n_names) {
        _cleanup_free_ char *f = NULL, *from = NULL, *to = NULL;
        char x[INFLIGHT_LEN];
        InflightOp o = {};
        pthread_t t;
        uint64_t seen = 0, dirty = 0;
        int fd, flushed;

        mount_with(NULL, "writeback=async,async_delay=3600");
        f = fs_mount_path(mnt, src_rel);
        if (strchr(src_rel, '/')) {
                _cleanup_free_ char *dir =
                        strndup(src_rel, (size_t)(strrchr(src_rel, '/') - src_rel));
                _cleanup_free_ char *d = fs_mount_path(mnt, dir);
                ck_assert_int_eq(mkdir(d, 0755), 0);
        }
        CHECK_OK(fs_write_pattern(f, 9, INFLIGHT_SIZE, 65536), "write");
        if (replacing) {
                _cleanup_free_ char *rp = fs_mount_path(mnt, replacing);
                CHECK_OK(fs_write_pattern(rp, 10, INFLIGHT_SIZE, 65536), "write");
        }
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        ck_assert_str_eq(inflight_state(src_rel), "old");
        fd = open(f, O_WRONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        memset(x, 'X', sizeof(x));
        if (!inflight_late) {
                ck_assert_int_eq(pwrite(fd, x, sizeof(x), INFLIGHT_OFF), (ssize_t)sizeof(x));
                CHECK_OK(fs_dirty_bytes(mnt, &dirty), "dirty_bytes");
                ck_assert_msg(dirty > 0, "not dirty");
        }
        CHECK_OK(fs_emu_counter(emu, op_name, true, &seen), "counters reset");
        CHECK_OK(fs_emu_set_faults(emu, faults), "faults");
        from = fs_mount_path(mnt, op_from);
        to = op_to ? fs_mount_path(mnt, op_to) : NULL;
        o.from = from;
        o.to = to;
        o.err = -1;
        ck_assert_int_eq(pthread_create(&t, NULL, inflight_thread, &o), 0);
        wait_request_seen(op_name);
        if (gone)
                wait_share_absent(gone); /* carried out, its answer held off */
        if (inflight_late) {
                ck_assert_int_eq(pwrite(fd, x, sizeof(x), INFLIGHT_OFF), (ssize_t)sizeof(x));
                CHECK_OK(fs_dirty_bytes(mnt, &dirty), "dirty_bytes");
                ck_assert_msg(dirty > 0, "not dirty");
        }
        fprintf(stderr, "kill -9 with %s in flight (%s), %" PRIu64 " dirty bytes\n", op_name,
                faults, dirty);
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        (void)close(fd); /* open until the kill: a close() here can wait for the answer */
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        fprintf(stderr, "the %s returned: %s\n", op_to ? "rename" : "unlink", strerror(o.err));
        CHECK_OK(fs_emu_set_faults(emu, ""), "faults off");
        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        flushed = fs_flush(mnt, FLUSH_S);
        fprintf(stderr, "the remount's flush: %s\n", strerror(-flushed));
        CHECK_OK(fs_dirty_bytes(mnt, &dirty), "dirty_bytes");
        for (size_t k = 0; k < n_names; k++) {
                states[k] = inflight_state(names[k]);
                fprintf(stderr, "after the remount's flush: /%s %s\n", names[k], states[k]);
        }
        fprintf(stderr, "dirty bytes left: %" PRIu64 "\n", dirty);
        dump_log();
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
        ck_assert_msg(
                flushed == 0 && dirty == 0, "flush: %s, %" PRIu64 " bytes still dirty",
                strerror(-flushed), dirty);
}

/* The renamed file's bytes, whole and with the write ("new"), under exactly one of its two
 * names (st: their inflight_state()), nothing under the other. */
static void assert_moved_whole(const char *const names[2], const char *const st[2]) {
        ck_assert_msg(
                (streq(st[0], "absent") && streq(st[1], "new")) ||
                        (streq(st[0], "new") && streq(st[1], "absent")),
                "/%s %s, /%s %s", names[0], st[0], names[1], st[1]);
}

/* (a) the share renamed f to g, its answer never came: the written bytes must be on the share
 * under one name, whole ("new"), with nothing else left under the other. */
START_TEST(test_rename_executed_kill) {
        const char *names[] = {"f", "g"}, *st[2];

        inflight_kill(
                "f", "f", "g", "RenameFile", "op=RenameFile:answer-latency=20s", "f", NULL, names,
                st, 2);
        assert_moved_whole(names, st);
}
END_TEST

/* (b) the share did not rename (503, Retry-After 5 s; killed during the wait). */
START_TEST(test_rename_not_executed_kill) {
        const char *names[] = {"f", "g"}, *st[2];

        inflight_kill(
                "f", "f", "g", "RenameFile", "op=RenameFile:503,retry-after=5", NULL, NULL, names,
                st, 2);
        ck_assert_msg(streq(st[0], "new") && streq(st[1], "absent"), "f %s, g %s", st[0], st[1]);
}
END_TEST

/* (a) for a directory: d renamed to e on the share with d/f dirty. */
START_TEST(test_rename_dir_executed_kill) {
        const char *names[] = {"d/f", "e/f"}, *st[2];

        inflight_kill(
                "d/f", "d", "e", "RenameDirectory", "op=RenameDirectory:answer-latency=20s", "d/f",
                NULL, names, st, 2);
        assert_moved_whole(names, st);
}
END_TEST

/* (a) for an unlink: the share deleted f, its answer never came. Deleted, or (the unlink was not
 * answered) there whole; never a file that holds other bytes. */
START_TEST(test_delete_executed_kill) {
        const char *names[] = {"f"}, *st[1];

        inflight_kill(
                "f", "f", NULL, "DeleteFile", "op=DeleteFile:answer-latency=20s", "f", NULL, names,
                st, 1);
        ck_assert_msg(streq(st[0], "absent") || streq(st[0], "new"), "f %s", st[0]);
}
END_TEST

/* (b) for an unlink: not deleted (503). */
START_TEST(test_delete_not_executed_kill) {
        const char *names[] = {"f"}, *st[1];

        inflight_kill(
                "f", "f", NULL, "DeleteFile", "op=DeleteFile:503,retry-after=5", NULL, NULL, names,
                st, 1);
        ck_assert_msg(streq(st[0], "new"), "f %s", st[0]);
}
END_TEST

/* (a) for a rename over a file with unsynced data here: f renamed over g on the share, its
 * answer never came. g's unsynced bytes are void (g was replaced); never written into f's. */
START_TEST(test_rename_over_dirty_kill) {
        const char *names[] = {"f", "g"}, *st[2];

        inflight_kill(
                "g", "f", "g", "RenameFile", "op=RenameFile:answer-latency=20s", "f", "f", names,
                st, 2);
        ck_assert_msg(
                streq(st[0], "absent") && streq(st[1], "replacing"), "f %s, g %s", st[0], st[1]);
}
END_TEST

/* (a) for a directory, its file written only while the rename is on its way (clean when it was
 * sent; the kernel locks a renamed or deleted file itself against writes meanwhile, not the
 * files below a renamed directory). */
START_TEST(test_rename_dir_late_write_kill) {
        const char *names[] = {"d/f", "e/f"}, *st[2];

        inflight_late = true;
        inflight_kill(
                "d/f", "d", "e", "RenameDirectory", "op=RenameDirectory:answer-latency=20s", "d/f",
                NULL, names, st, 2);
        assert_moved_whole(names, st);
}
END_TEST

/* A clean cached file evicted while a Delete File of it is on its way (cache_size reached by
 * another file's read), the delete failing (503 beyond retry_budget): its intent must not outlive
 * the request. It did: the end of the request looked for the file among the cached ones only, so
 * the file's next record still said "void_if_gone", and after a kill -9 with the file deleted on
 * the share by another VM, the recovery dropped the bytes written here since. */
START_TEST(test_intent_evicted) {
        _cleanup_free_ char *f = NULL, *g = NULL, *rec = NULL, *text = NULL, *data = NULL,
                            *expect = malloc(INFLIGHT_LEN);
        EmuHttpResult res = {};
        InflightOp o = {};
        uint64_t seen = 0;
        size_t n = 0;
        pthread_t t;
        int fd;

        ck_assert_ptr_nonnull(expect);
        mount_with(NULL, "writeback=async,async_delay=3600,cache_size=8M,retry_budget=3");
        f = fs_mount_path(mnt, "f");
        g = fs_mount_path(mnt, "g");
        CHECK_OK(fs_write_pattern(g, 10, 12 * 1024 * 1024, 65536), "write g");
        CHECK_OK(fs_write_pattern(f, 9, INFLIGHT_LEN, 4096), "write f");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        CHECK_OK(fs_check_pattern(f, 9, INFLIGHT_LEN), "read f"); /* f has a cache file, clean */
        CHECK_OK(fs_emu_counter(emu, "DeleteFile", true, &seen), "counters reset");
        CHECK_OK(fs_emu_set_faults(emu, "op=DeleteFile:503,retry-after=1"), "faults");
        o.from = f;
        o.err = -1;
        ck_assert_int_eq(pthread_create(&t, NULL, inflight_thread, &o), 0);
        wait_request_seen("DeleteFile");
        /* g's 12 MiB through an 8 MiB cache: f, least recently used, is what eviction finds. */
        CHECK_OK(fs_check_pattern(g, 10, 12 * 1024 * 1024), "read g");
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_msg(o.err != 0, "the unlink succeeded through 503s");
        CHECK_OK(fs_emu_set_faults(emu, ""), "faults off");

        fd = open(f, O_WRONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        memset(expect, 'Y', INFLIGHT_LEN);
        ck_assert_int_eq(pwrite(fd, expect, INFLIGHT_LEN, 0), INFLIGHT_LEN);
        ck_assert_int_eq(close(fd), 0);
        rec = record_find(mnt);
        ck_assert_msg(rec, "no dirty record");
        text = record_read(rec);
        ck_assert_msg(
                !strstr(text, "\nvoid_if_gone ") && !strstr(text, "\nmoving "),
                "record of f names a request that ended:\n%s", text);

        /* Another VM deletes f, then this azfilesfs dies: the bytes written here come back. */
        CHECK_OK(
                emu_http(
                        emu, "DELETE", "/" SHARE "/f", NULL, NULL, 0, EMU_AUTH_MODE_SHARED_KEY,
                        &res),
                "Delete File");
        ck_assert_int_eq(res.status, 202);
        emu_http_result_clear(&res);
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        CHECK_OK(fs_share_read(emu, SHARE, "f", &data, &n), "share read f");
        ck_assert_uint_eq(n, INFLIGHT_LEN);
        ck_assert_msg(memcmp(data, expect, n) == 0, "f on the share is not what was written");
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* An unlink of d/f and a rename of d to e at the same time (the kernel locks d for the unlink,
 * its parent for the rename: both reach azfilesfs), the first one's answer held off by the share
 * (carried out first). f was written here since its last upload (writeback=async). Whichever
 * goes first, f is gone afterwards: here, and on the share after a flush. Each request took the
 * paths the other was changing: the unlink answered after the rename looked for d/f, found
 * nothing, and e/f stayed with its unsynced bytes, which the flush put back on the share; the
 * unlink sent after the rename was carried out found d/f gone ("deleted"), and e/f stayed on the
 * share. */
static void move_race(bool unlink_first) {
        _cleanup_free_ char *df = NULL, *d = NULL, *e = NULL, *ef = NULL;
        InflightOp del = {}, ren = {};
        const char *first_op = unlink_first ? "DeleteFile" : "RenameDirectory";
        pthread_t t1, t2;
        uint64_t seen = 0, dirty = 0;
        struct stat st;
        char x[INFLIGHT_LEN];
        int fd;

        mount_with(NULL, "writeback=async,async_delay=3600");
        d = fs_mount_path(mnt, "d");
        e = fs_mount_path(mnt, "e");
        df = fs_mount_path(mnt, "d/f");
        ef = fs_mount_path(mnt, "e/f");
        ck_assert_int_eq(mkdir(d, 0755), 0);
        CHECK_OK(fs_write_pattern(df, 9, INFLIGHT_LEN, 4096), "write d/f");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        fd = open(df, O_WRONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        memset(x, 'X', sizeof(x));
        ck_assert_int_eq(pwrite(fd, x, sizeof(x), 0), (ssize_t)sizeof(x));
        ck_assert_int_eq(close(fd), 0);
        CHECK_OK(fs_dirty_bytes(mnt, &dirty), "dirty_bytes");
        ck_assert_msg(dirty > 0, "d/f not dirty");

        CHECK_OK(fs_emu_counter(emu, first_op, true, &seen), "counters reset");
        CHECK_OK(
                fs_emu_set_faults(
                        emu, unlink_first ? "op=DeleteFile:answer-latency=3s"
                                          : "op=RenameDirectory:answer-latency=3s"),
                "faults");
        del = (InflightOp){.from = df, .err = -1};
        ren = (InflightOp){.from = d, .to = e, .err = -1};
        ck_assert_int_eq(pthread_create(&t1, NULL, inflight_thread, unlink_first ? &del : &ren), 0);
        wait_request_seen(first_op);
        wait_share_absent(unlink_first ? "d/f" : "d"); /* carried out, its answer held off */
        ck_assert_int_eq(pthread_create(&t2, NULL, inflight_thread, unlink_first ? &ren : &del), 0);
        ck_assert_int_eq(pthread_join(t1, NULL), 0);
        ck_assert_int_eq(pthread_join(t2, NULL), 0);
        ck_assert_msg(del.err == 0, "unlink d/f: %s", strerror(del.err));
        ck_assert_msg(ren.err == 0, "rename d e: %s", strerror(ren.err));
        CHECK_OK(fs_emu_set_faults(emu, ""), "faults off");

        ck_assert_msg(stat(ef, &st) < 0 && errno == ENOENT, "e/f is there after its unlink");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        ck_assert_str_eq(inflight_state("e/f"), "absent");
        ck_assert_str_eq(inflight_state("d/f"), "absent");
        ck_assert_int_eq(stat(e, &st), 0);
        ck_assert_msg(stat(d, &st) < 0 && errno == ENOENT, "d is there after its rename");
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}

START_TEST(test_unlink_then_dir_rename) {
        move_race(true);
}
END_TEST

START_TEST(test_dir_rename_then_unlink) {
        move_race(false);
}
END_TEST

/* An O_CREAT open of d/h, a file on the share, while a rename of d to e is carried out and its
 * answer held off: the open's lookup waits for the rename, then finds e/h, and the appended line
 * goes after its bytes. The lookup asked for d/h, gone from the share, the open made a new file
 * here, the rename's answer moved it to e/h, and its upload replaced e/h's bytes on the share. */
static void *mkdir_thread(void *userdata) {
        InflightOp *o = userdata;
        o->err = mkdir(o->from, 0755) < 0 ? errno : 0;
        return NULL;
}

START_TEST(test_create_during_dir_rename) {
        _cleanup_free_ char *d = NULL, *e = NULL, *dh = NULL, *eh = NULL, *ds = NULL, *es = NULL;
        InflightOp ren = {}, mk = {};
        uint64_t seen = 0;
        struct stat st;
        pthread_t t, t2;
        int fd, r;

        /* d's entry stays valid in the kernel while the rename runs: the open looks up h in d. */
        mount_with(NULL, "entry_timeout=60,attr_timeout=60");
        d = fs_mount_path(mnt, "d");
        e = fs_mount_path(mnt, "e");
        dh = fs_mount_path(mnt, "d/h");
        eh = fs_mount_path(mnt, "e/h");
        ds = fs_mount_path(mnt, "d/sub");
        es = fs_mount_path(mnt, "e/sub");
        ck_assert_int_eq(mkdir(d, 0755), 0);
        free(write_new("d/h", "important-data\n"));
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
        CHECK_OK(fs_mount_start(mnt), "remount"); /* d/h unknown to the mount */

        CHECK_OK(fs_emu_counter(emu, "RenameDirectory", true, &seen), "counters reset");
        CHECK_OK(fs_emu_set_faults(emu, "op=RenameDirectory:answer-latency=3s"), "faults");
        ren = (InflightOp){.from = d, .to = e, .err = -1};
        ck_assert_int_eq(pthread_create(&t, NULL, inflight_thread, &ren), 0);
        wait_request_seen("RenameDirectory");
        wait_share_absent("d"); /* carried out, its answer held off */
        mk = (InflightOp){.from = ds, .err = -1};
        ck_assert_int_eq(pthread_create(&t2, NULL, mkdir_thread, &mk), 0);
        fd = open(dh, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_msg(fd >= 0, "open d/h: %m");
        ck_assert_int_eq(write(fd, "appended\n", 9), 9);
        r = close(fd);
        ck_assert_msg(r == 0, "close d/h: %m");
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_int_eq(pthread_join(t2, NULL), 0);
        ck_assert_msg(ren.err == 0, "rename d e: %s", strerror(ren.err));
        ck_assert_msg(mk.err == 0, "mkdir d/sub: %s", strerror(mk.err));
        CHECK_OK(fs_emu_set_faults(emu, ""), "faults off");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        assert_share_text("e/h", "important-data\nappended\n");
        ck_assert_msg(stat(eh, &st) == 0 && st.st_size == 24, "e/h here: %m");
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
        CHECK_OK(fs_mount_start(mnt), "remount"); /* what the share has */
        ck_assert_msg(stat(es, &st) == 0 && S_ISDIR(st.st_mode), "e/sub on the share: %m");
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* A rename of a file with unsynced data whose record is durable, the cache disk full: its record
 * cannot take the rename's intent (a durable record is replaced through a temporary, which needs
 * a block), so the rename fails with ENOSPC, and after a kill -9 the data is on the share under
 * the name it has. The rename returned 0 without it, and after a kill -9 the recovery put the
 * data back under the old name (and the old bytes stayed under the new one). */
START_TEST(test_rename_enospc) {
        _cleanup_free_ char *cache = NULL, *filler = NULL, *p = NULL, *q = NULL, *share = NULL;
        int64_t deadline;
        size_t got = 0;
        int r, err;

        cache = tmpfs_cache();
        mount_with(cache, "writeback=async,async_delay=3600");
        free(write_new("a.txt", "old a\n"));
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        p = write_new("a.txt", "new a\n"); /* the same length: over the old bytes */
        q = fs_mount_path(mnt, "renamed.txt");
        deadline = now_monotonic_ns() + RECORD_WAIT_NS;
        for (;;) {
                _cleanup_free_ char *stats = NULL;
                struct timespec pace = {.tv_nsec = 20 * 1000 * 1000};
                CHECK_OK(fs_stats(mnt, &stats), "stats");
                if (!strstr(stats, "\"records_made_durable\":0,"))
                        break;
                ck_assert_msg(now_monotonic_ns() < deadline, "record not durable: %s", stats);
                (void)nanosleep(&pace, NULL); /* polling pace, not synchronisation */
        }
        filler = fill_disk(cache);
        r = rename(p, q);
        err = errno;
        fprintf(stderr, "the rename %s\n", r < 0 ? strerror(err) : "succeeded");
        if (r < 0)
                ck_assert_msg(err == ENOSPC, "rename with the cache disk full: %s", strerror(err));
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        ck_assert_int_eq(unlink(filler), 0);
        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        assert_share_text(r == 0 ? "renamed.txt" : "a.txt", "new a\n");
        ck_assert_int_eq(
                fs_share_read(emu, SHARE, r == 0 ? "a.txt" : "renamed.txt", &share, &got), -ENOENT);
        tmpfs_cache_done(cache);
}
END_TEST

/* ---- records that are not what this mount writes ------------------------------------------ */

static char *dir_of(const char *path) {
        const char *slash = strrchr(path, '/');
        char *d;

        ck_assert_ptr_nonnull(slash);
        d = strndup(path, (size_t)(slash - path));
        ck_assert_ptr_nonnull(d);
        return d;
}

/* The one <base>.azfilesfs-recovered-* file in the mount's root (NULL when there is none). */
static char *recovered_in_root(const char *base) {
        _cleanup_(closedirp) DIR *d = opendir(mnt->mountpoint);
        _cleanup_free_ char *prefix = NULL;
        struct dirent *de;
        char *found = NULL;

        ck_assert_ptr_nonnull(d);
        ck_assert_int_ge(asprintf(&prefix, "%s.azfilesfs-recovered-", base), 0);
        while ((de = readdir(d)))
                if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) {
                        ck_assert_msg(!found, "two recovered files: %s, %s", found, de->d_name);
                        found = strdup(de->d_name);
                }
        return found;
}

/* How many lines of the mount's log hold s. */
static unsigned log_count(const char *s) {
        _cleanup_free_ char *tail = fs_mount_log_tail(mnt, 200000);
        unsigned n = 0;

        for (const char *p = tail; p && (p = strstr(p, s)); p += strlen(s))
                n++;
        return n;
}

/* A stray ffffffffffffffff.data in the cache directory made the ids of new cache files wrap to 0
 * and reuse those of recovered files (their cache files opened with O_TRUNC): a.bin read the
 * bytes of a new file. */
START_TEST(test_stray_id) {
        _cleanup_free_ char *rec = NULL, *dir = NULL;

        mount_with(NULL, "writeback=async,async_delay=3600");
        CHECK_OK(write_both("a.bin", 21, 100000), "write a.bin");
        rec = record_find(mnt);
        ck_assert_msg(rec, "no record");
        dir = dir_of(rec);
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        put_file(dir, "ffffffffffffffff.data", "");
        CHECK_OK(fs_mount_start(mnt), "remount");
        CHECK_OK(write_both("n1.bin", 22, 50000), "write n1.bin");
        CHECK_OK(write_both("n2.bin", 23, 50000), "write n2.bin");
        flush_and_compare();
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* Two records of one path: the newer (written after an earlier recovery left the older one)
 * goes to the share under the path, the older beside it, never over it. The next mount uploaded
 * the older one over the newer bytes. */
START_TEST(test_two_records) {
        _cleanup_free_ char *rec = NULL, *dir = NULL, *text = NULL, *s1 = NULL, *s2 = NULL,
                            *side = NULL, *side_text = NULL, *older = NULL;

        mount_with(NULL, "writeback=async,async_delay=3600");
        free(write_new("p.txt", "NEWER bytes, written last"));
        rec = record_find(mnt);
        ck_assert_msg(rec, "no record");
        dir = dir_of(rec);
        text = record_read(rec);
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        /* The older record (a lower id) of the same path. */
        put_file(dir, "0000000000000000.data", "OLDER bytes");
        ck_assert_int_ge(asprintf(&older, "%s/0000000000000000.dirty", dir), 0);
        write_text(older, text);
        CHECK_OK(fs_mount_start(mnt), "mount 1");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush 1");
        s1 = share_text("p.txt");
        ck_assert_str_eq(s1, "NEWER bytes, written last");
        side = recovered_in_root("p.txt");
        ck_assert_msg(side, "the older bytes are not beside p.txt");
        side_text = share_text(side);
        ck_assert_str_eq(side_text, "OLDER bytes");
        ck_assert_uint_ge(log_count("Found older data of /p.txt"), 1);
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
        CHECK_OK(fs_mount_start(mnt), "mount 2");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush 2");
        s2 = share_text("p.txt");
        ck_assert_str_eq(s2, "NEWER bytes, written last");
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* A record cut short inside its pieces line (a damaged disk): taken as whole, it uploaded the
 * first piece of 12 MiB only and called the file clean. Now all of its cache file goes to a name
 * beside the file. */
START_TEST(test_cut_record) {
        _cleanup_free_ char *rec = NULL, *text = NULL, *side = NULL, *p = NULL;
        const uint64_t size = 12 * 1024 * 1024 + 5;
        char *pl;

        mount_with(NULL, "writeback=async,async_delay=3600");
        p = fs_mount_path(mnt, "big.bin");
        CHECK_OK(fs_write_pattern(p, 31, size, 65536), "write big.bin");
        rec = record_find(mnt);
        ck_assert_msg(rec, "no record");
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        text = record_read(rec);
        pl = strstr(text, "\npieces 0,");
        ck_assert_msg(pl, "record:\n%s", text);
        pl[strlen("\npieces 0,")] = '\0';
        write_text(rec, text);
        CHECK_OK(fs_mount_start(mnt), "remount");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        side = recovered_in_root("big.bin");
        ck_assert_msg(side, "no big.bin.azfilesfs-recovered-* on the share");
        free(p);
        p = fs_mount_path(mnt, side);
        CHECK_OK(fs_check_pattern(p, 31, size), "the recovered file");
        ck_assert_str_eq(inflight_state("big.bin"), "absent");
        ck_assert_uint_ge(log_count("is cut short"), 1);
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* A FIFO where a record's cache file should be: read as empty, it cut the share's file to 0. */
START_TEST(test_fifo_data) {
        _cleanup_free_ char *rec = NULL, *data = NULL, *p = NULL, *got = NULL;
        size_t n = 0;
        int fd;

        mount_with(NULL, "writeback=async,async_delay=3600");
        p = fs_mount_path(mnt, "old.bin");
        CHECK_OK(fs_write_pattern(p, 1, 300000, 65536), "write old.bin");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        fd = open(p, O_WRONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pwrite(fd, "XXXX", 4, 1000), 4);
        ck_assert_int_eq(close(fd), 0);
        rec = record_find(mnt);
        ck_assert_msg(rec, "no record");
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        ck_assert_int_ge(
                asprintf(&data, "%.*s.data", (int)(strlen(rec) - strlen(".dirty")), rec), 0);
        ck_assert_int_eq(unlink(data), 0);
        ck_assert_int_eq(mkfifo(data, 0600), 0);
        CHECK_OK(fs_mount_start(mnt), "remount");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        CHECK_OK(fs_share_read(emu, SHARE, "old.bin", &got, &n), "read");
        ck_assert_uint_eq(n, 300000);
        ck_assert_uint_ge(log_count("Cannot recover"), 1);
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* Records naming paths this mount could not have made, beside a good one: each is refused with a
 * warning naming it (they were taken, and their uploads retried for ever); the good one's data
 * is on the share after the flush. */
START_TEST(test_bad_paths) {
        static const char *const bad[] = {
                "../escape", "/abs", "dir/", "a//b", "bad\"name<>|.txt", "trailing.", "x/../y",
        };
        _cleanup_free_ char *rec = NULL, *dir = NULL, *p = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        char boot[64];

        this_boot(boot);
        mount_with(NULL, "writeback=async,async_delay=3600");
        p = fs_mount_path(mnt, "good.bin");
        CHECK_OK(fs_write_pattern(p, 41, 9 * 1024 * 1024 + 3, 65536), "write good.bin");
        rec = record_find(mnt);
        ck_assert_msg(rec, "no record");
        dir = dir_of(rec);
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        for (size_t k = 0; k <= ELEMENTSOF(bad); k++) {
                _cleanup_free_ char *text = NULL, *name = NULL, *data = NULL;
                /* The last one: a good path moving to a bad one. */
                ck_assert_int_ge(
                        asprintf(
                                &text,
                                "azfilesfs-dirty 1\nboot %s\ndurable 0\npath %s\nremote_size 0\n"
                                "fetch_limit 0\nsize_dirty 1\netag -\ncreate 0644 0\n%s%s%s"
                                "pieces 0\nend\n",
                                boot, k < ELEMENTSOF(bad) ? bad[k] : "fine.txt",
                                k < ELEMENTSOF(bad) ? "" : "moving ",
                                k < ELEMENTSOF(bad) ? "" : "..", k < ELEMENTSOF(bad) ? "" : "\n"),
                        0);
                ck_assert_int_ge(asprintf(&name, "%016zx.dirty", 0x100 + k), 0);
                ck_assert_int_ge(asprintf(&data, "%016zx.data", 0x100 + k), 0);
                put_file(dir, name, text);
                put_file(dir, data, "bytes");
        }
        CHECK_OK(fs_mount_start(mnt), "remount among bad records");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        ck_assert_uint_eq(log_count("Cannot recover"), ELEMENTSOF(bad) + 1);
        CHECK_OK(fs_check_pattern(p, 41, 9 * 1024 * 1024 + 3), "good.bin");
        d = opendir(mnt->mountpoint);
        ck_assert_ptr_nonnull(d);
        while ((de = readdir(d)))
                ck_assert_msg(
                        streq(de->d_name, ".") || streq(de->d_name, "..") ||
                                streq(de->d_name, "good.bin"),
                        "/%s on the share", de->d_name);
        closedirp(&d);
        d = NULL;
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* rename(from, to) on the mount; the share carries out its request (op_name) and holds the answer
 * off; kill -9 once from is gone from the share; a remount with the same cache_dir and a flush
 * leave nothing dirty. */
static void kill_during_rename(const char *from_rel, const char *to_rel, const char *op_name) {
        _cleanup_free_ char *from = fs_mount_path(mnt, from_rel), *to = fs_mount_path(mnt, to_rel),
                            *faults = NULL;
        InflightOp o = {.from = from, .to = to, .err = -1};
        uint64_t seen = 0, dirty = 0;
        pthread_t t;

        ck_assert_int_ge(asprintf(&faults, "op=%s:answer-latency=20s", op_name), 0);
        CHECK_OK(fs_emu_counter(emu, op_name, true, &seen), "counters reset");
        CHECK_OK(fs_emu_set_faults(emu, faults), "faults");
        ck_assert_int_eq(pthread_create(&t, NULL, inflight_thread, &o), 0);
        wait_request_seen(op_name);
        wait_share_absent(from_rel);
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        CHECK_OK(fs_emu_set_faults(emu, ""), "faults off");
        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        CHECK_OK(fs_dirty_bytes(mnt, &dirty), "dirty_bytes");
        ck_assert_uint_eq(dirty, 0);
}

/* A file created here and not on the share yet, d/f, while the share renames d to e: its record
 * named d/f only, and after the remount its Create File failed for ever (d is gone). */
START_TEST(test_rename_dir_created_kill) {
        _cleanup_free_ char *d = NULL, *f = NULL;

        mount_with(NULL, "writeback=async,async_delay=3600");
        d = fs_mount_path(mnt, "d");
        ck_assert_int_eq(mkdir(d, 0755), 0);
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        f = write_new("d/f", "bytes of d/f, created here");
        kill_during_rename("d", "e", "RenameDirectory");
        assert_share_text("e/f", "bytes of d/f, created here");
        assert_share_text("d/f", "");
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* A file created here in writeback=async (not on the share yet), its mode and time set (tar x,
 * cp -p), then kill -9: the remount's Create File carries both. The time went to memory only,
 * and the record's create line kept the time of the creat(). */
START_TEST(test_touch_created_kill) {
        _cleanup_free_ char *p = NULL;
        const struct timespec times[2] = {{.tv_sec = 981173106}, {.tv_sec = 981173106}};
        struct stat st;

        mount_with(NULL, "writeback=async,async_delay=3600");
        p = write_new("t.txt", "timed\n");
        ck_assert_int_eq(chmod(p, 0751), 0);
        ck_assert_int_eq(utimensat(AT_FDCWD, p, times, 0), 0);
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        CHECK_OK(fs_mount_start(mnt), "remount with the same cache_dir");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        assert_share_text("t.txt", "timed\n");
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
        CHECK_OK(fs_mount_start(mnt), "remount"); /* what the share has */
        ck_assert_int_eq(stat(p, &st), 0);
        ck_assert_msg(
                st.st_mtim.tv_sec == times[1].tv_sec, "the share's time is %lld, not %lld",
                (long long)st.st_mtim.tv_sec, (long long)times[1].tv_sec);
        ck_assert_uint_eq(st.st_mode & 07777, 0751);
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* A file created here and not on the share yet, g, while the share renames f over it: g's record
 * had no intent, and the remount's Create File of g put g's bytes over the renamed f. */
START_TEST(test_rename_over_created_kill) {
        _cleanup_free_ char *f = NULL, *g = NULL;

        mount_with(NULL, "writeback=async,async_delay=3600");
        f = write_new("f", "f, renamed over g");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        g = write_new("g", "g, created here, replaced");
        kill_during_rename("f", "g", "RenameFile");
        assert_share_text("g", "f, renamed over g");
        assert_share_text("f", "");
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* A record of the format before the end line (0cbf93d..fcdec6d^: a boot line, no end line),
 * whole and durable: its data goes over its file, as any whole record's. 322d9cd took it for a
 * record cut short and put the data beside the file. */
START_TEST(test_record_without_end) {
        _cleanup_free_ char *rec = NULL, *text = NULL, *side = NULL;
        char *e, *d;

        mount_with(NULL, "writeback=async,async_delay=3600");
        free(write_new("p.txt", "bytes written before the kill"));
        rec = record_find(mnt);
        ck_assert_msg(rec, "no record");
        ck_assert_int_eq(fs_mount_kill(mnt), 0);
        text = record_read(rec);
        e = strstr(text, "\nend\n");
        ck_assert_ptr_nonnull(e);
        e[1] = '\0';
        d = strstr(text, "\ndurable 0");
        ck_assert_ptr_nonnull(d);
        d[strlen("\ndurable ")] = '1';
        write_text(rec, text);
        CHECK_OK(fs_mount_start(mnt), "remount");
        CHECK_OK(fs_flush(mnt, FLUSH_S), "flush");
        side = recovered_in_root("p.txt");
        ck_assert_msg(!side, "the data went beside p.txt, as %s", side);
        assert_share_text("p.txt", "bytes written before the kill");
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* Six files of 4 MiB flushed at once through one connection slot, each Put Range answered after
 * 1 s, retry_budget 3 s: most of them wait in the HTTP client's queue longer than the budget, and
 * each transfer takes far less. Every byte reaches the share. 3927167 counted the wait in the
 * queue against every request's budget: those still queued failed unsent, and the flush with
 * them (EIO, 16 MiB still dirty). */
START_TEST(test_queued_uploads) {
        mount_with(NULL, "writeback=async,async_delay=3600,max_requests=1,retry_budget=3");
        for (unsigned k = 0; k < 6; k++) {
                char name[16];
                (void)snprintf(name, sizeof(name), "q%u.bin", k);
                CHECK_OK(write_both(name, 50 + k, 4 * 1024 * 1024), "write");
        }
        CHECK_OK(fs_emu_set_faults(emu, "op=PutRange:latency=1s"), "faults");
        flush_and_compare();
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

int main(void) {
        const struct {
                const char *name;
                const TTest *test;
        } tests[] = {
                {"faults_workload_default", test_faults_workload_default},
                {"faults_workload_async", test_faults_workload_async},
                {"kill_unsynced", test_kill_unsynced},
                {"enospc", test_enospc},
                {"restart_mid_flush", test_restart_mid_flush},
                {"rename_dir_dirty_kill", test_rename_dir_dirty_kill}, /* bug 5, fixed */
                {"record_durable_later", test_record_durable_later},
                {"reboot_not_durable", test_reboot_not_durable},
                {"reboot_durable", test_reboot_durable},
                {"reboot_dir_gone", test_reboot_dir_gone},
                {"unmount_durable", test_unmount_durable},
                {"transfer_threads", test_transfer_threads},
                {"record_clean", test_record_clean},
                {"record_empty", test_record_empty},
                {"record_enospc", test_record_enospc},
                {"covered_enospc", test_covered_enospc},
                {"create_enospc", test_create_enospc},
                {"truncate_enospc", test_truncate_enospc},
                {"rename_enospc", test_rename_enospc},
                {"record_fifo", test_record_fifo},
                {"unmount_durable_open", test_unmount_durable_open},
                {"long_record", test_long_record},
                {"replaced_open_kill", test_replaced_open_kill},
                {"dir_release_dropped", test_dir_release_dropped},
                {"stop_mid_flush", test_stop_mid_flush},
                {"stop_with_queue", test_stop_with_queue},
                {"rename_executed_kill", test_rename_executed_kill},
                {"rename_not_executed_kill", test_rename_not_executed_kill},
                {"rename_dir_executed_kill", test_rename_dir_executed_kill},
                {"delete_executed_kill", test_delete_executed_kill},
                {"delete_not_executed_kill", test_delete_not_executed_kill},
                {"rename_over_dirty_kill", test_rename_over_dirty_kill},
                {"rename_dir_late_write_kill", test_rename_dir_late_write_kill},
                {"intent_evicted", test_intent_evicted},
                {"unlink_then_dir_rename", test_unlink_then_dir_rename},
                {"dir_rename_then_unlink", test_dir_rename_then_unlink},
                {"create_during_dir_rename", test_create_during_dir_rename},
                {"touch_created_kill", test_touch_created_kill},
                {"stray_id", test_stray_id},
                {"two_records", test_two_records},
                {"cut_record", test_cut_record},
                {"fifo_data", test_fifo_data},
                {"bad_paths", test_bad_paths},
                {"rename_dir_created_kill", test_rename_dir_created_kill},
                {"rename_over_created_kill", test_rename_over_created_kill},
                {"record_without_end", test_record_without_end},
                {"queued_uploads", test_queued_uploads},
        };
        Suite *s = suite_create("fs-loss");
        SRunner *sr;
        int failed, pre = fs_harness_preflight();

        if (pre != 0)
                return pre;
        /* One case per test: CK_RUN_CASE=name runs one. */
        for (size_t i = 0; i < ELEMENTSOF(tests); i++) {
                TCase *tc;
                tc = tcase_create(tests[i].name);
                tcase_add_checked_fixture(tc, setup, teardown);
                tcase_add_test(tc, tests[i].test);
                tcase_set_timeout(tc, 600);
                suite_add_tcase(s, tc);
        }
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
