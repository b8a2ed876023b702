/* SPDX-License-Identifier: MIT */
/* Scale tests of azfilesfs ($AZFILESFS) against a real azfiles-emu:
 *
 *   big_file          a FS_SCALE_BIG_MIB (default 256) MiB file written through the mount in
 *                     1 MiB writes; after a remount its SHA-256 read back through the mount, and
 *                     read from the share over REST, equal that of the bytes written (OpenSSL).
 *   tree              a tree as tar x or git clone makes it: FS_SCALE_FILES (default 10,000;
 *                     .ci/check runs fewer under ASan) small files (some empty, names with
 *                     spaces and non-ASCII letters) in nested directories, written in the
 *                     default mode: exactly Create File + Put Range per file (Create File for
 *                     an empty one), the per-directory requests bounded per directory (emulator
 *                     counters); every file's bytes read back from the share over REST; after a
 *                     remount an ls -lR equals the reference, one List per directory.
 *   tree_async        the same tree in writeback=async mode, flushed: every file read back
 *                     through a second mount (another VM); after a remount the same ls -lR.
 *   concurrent        16 threads, each writing its own 8 MiB file in uneven writes with fsyncs
 *                     between, at the same time; every file right on the mount and the share.
 *   two_mounts        two mounts of one share (two VMs): a file written and closed on A is seen
 *                     with its new content at the next open on B, B having read the old content
 *                     before (its cache must be revalidated); the same the other way; a file
 *                     created on A, after B looked for it in vain, is found by an open on B.
 *
 * Runs in a private mount namespace per test; needs root and /dev/fuse (else 77); fails when
 * $AZFILESFS is missing. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <json-c/json.h>
#include <openssl/evp.h>

#include "fs-harness.h"
#include "macro.h"
#include "time-util.h"

#define SHARE "scale"
#define MIB (1024u * 1024u)
#define WRITERS 16
#define WRITER_SIZE (8u * MIB)
/* Issue 3's acceptance size, run by the gcc build in CI (.ci/check runs fewer under ASan). */
#define FILES_DEFAULT 10000

static EmuInstance *emu;
static FsMount *mnt, *mnt_b;
static char ref[64];

static void setup(void) {
        umask(022);
        ck_assert_int_eq(fs_harness_enter_namespace(), 0);
        ck_assert_int_eq(emu_instance_start(NULL, NULL, &emu), 0);
        ck_assert_int_eq(fs_share_create(emu, SHARE), 0);
        (void)snprintf(ref, sizeof(ref), "/tmp/fs-scale-ref.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(ref));
}

static void teardown(void) {
        mnt = fs_mount_free(mnt);
        mnt_b = fs_mount_free(mnt_b);
        emu = emu_instance_free(emu);
        fs_rm_rf(ref);
}

static void dump_log(FsMount *m) {
        _cleanup_free_ char *tail = m ? fs_mount_log_tail(m, 4000) : NULL;
        if (tail)
                fprintf(stderr, "--- azfilesfs log (tail) ---\n%s\n", tail);
}

#define CHECK_OK(m, expr, what)                                                                    \
        do {                                                                                       \
                int _r = (expr);                                                                   \
                if (_r < 0)                                                                        \
                        dump_log(m);                                                               \
                ck_assert_msg(_r >= 0, "%s: %s", what, strerror(-_r));                             \
        } while (0)

static FsMount *mount_with(const char *options) {
        FsMount *m = NULL;
        int r = fs_mount_new(emu, SHARE, NULL, options, &m);
        ck_assert_msg(r == 0, "mount: %s", strerror(-r));
        return m;
}

static void remount(FsMount *m) {
        int r = fs_mount_stop(m);
        if (r != 0)
                dump_log(m);
        ck_assert_msg(r == 0, "unmount: %d", r);
        CHECK_OK(m, fs_mount_start(m), "remount");
}

/* Informational: how long each phase took (never asserted). */
static void phase(const char *what) {
        static int64_t last;
        int64_t now = now_monotonic_ns();
        if (last && what)
                fprintf(stderr, "  %s: %.1f s\n", what, (double)(now - last) / 1e9);
        last = now;
}

static void hex(const uint8_t d[32], char out[65]) {
        for (int i = 0; i < 32; i++)
                (void)snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* ---- one big file ---------------------------------------------------------------------------- */

START_TEST(test_big_file) {
        uint64_t size = (uint64_t)fs_env_ulong("FS_SCALE_BIG_MIB", 256) * MIB;
        _cleanup_free_ char *path = NULL;
        _cleanup_free_ uint8_t *buf = malloc(MIB);
        uint8_t want[32], got[32], share[32];
        char hw[65], hg[65];
        unsigned len = 32;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        int fd;

        ck_assert_ptr_nonnull(buf);
        ck_assert_ptr_nonnull(ctx);
        ck_assert_int_eq(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
        mnt = mount_with(NULL);
        path = fs_mount_path(mnt, "big file.bin");
        phase(NULL);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ck_assert_msg(fd >= 0, "create: %m");
        for (uint64_t off = 0; off < size; off += MIB) {
                fs_pattern_fill(42, off, buf, MIB);
                ck_assert_int_eq(EVP_DigestUpdate(ctx, buf, MIB), 1);
                ck_assert_msg(write(fd, buf, MIB) == (ssize_t)MIB, "write at %" PRIu64 ": %m", off);
        }
        ck_assert_msg(close(fd) == 0, "close: %m");
        ck_assert_int_eq(EVP_DigestFinal_ex(ctx, want, &len), 1);
        EVP_MD_CTX_free(ctx);
        phase("write through close");

        remount(mnt);
        CHECK_OK(mnt, fs_file_sha256(path, got), "read back");
        phase("remount, read back");
        hex(want, hw);
        hex(got, hg);
        ck_assert_msg(
                memcmp(want, got, 32) == 0, "SHA-256 through the mount %s, written %s", hg, hw);
        CHECK_OK(mnt, fs_share_sha256(emu, SHARE, "big file.bin", share), "read the share");
        hex(share, hg);
        ck_assert_msg(memcmp(want, share, 32) == 0, "SHA-256 on the share %s, written %s", hg, hw);
        phase("read the share over REST");
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* ---- a tree of 10,000 small files ------------------------------------------------------------ */

/* The tree a `tar x` or a `git clone` makes: FS_SCALE_FILES files in files/FILES_PER_DIR
 * directories nested up to five deep (directory k lives in directory (k - 1) / 4), each
 * directory made and then filled before the next (as tar does), sizes from 0 to 6,000 bytes
 * (every 13th file empty), names with spaces and non-ASCII letters. */
#define FILES_PER_DIR 50
/* Requests per directory besides its Create Directory while the tree is written in the default
 * mode: the lookup of a non-ASCII name (Get File Properties + Get Directory Properties), Set
 * Metadata of a chmod. Measured: 1.05 on average, at most 2; a request more per file would be
 * FILES_PER_DIR more. The renewals of names and attributes (one List or Get Directory
 * Properties per directory per dir_timeout or attr_timeout, 1 s by default) depend on how long
 * the machine takes to write a directory: the tree's mounts keep them for TREE_TIMEOUTS, so
 * that what is counted is per file and per directory only (bench-fs.sh figure 4 counts them
 * with the defaults). */
#define OTHER_PER_DIR 3
#define TREE_TIMEOUTS "dir_timeout=600,attr_timeout=600"

typedef struct Tree {
        unsigned long files, dirs, empty, non_ascii;
} Tree;

/* Size of file i: 0 to 5,999 bytes, every 13th file empty. */
static uint64_t tree_size(unsigned long i) {
        return i % 13 == 0 ? 0 : (i * 7919) % 6000;
}

static Tree tree_shape(void) {
        Tree t = {.files = fs_env_ulong("FS_SCALE_FILES", FILES_DEFAULT)};
        t.dirs = MAX(t.files / FILES_PER_DIR, 1ul);
        for (unsigned long i = 0; i < t.files; i++) {
                t.empty += tree_size(i) == 0;
                t.non_ascii += i % 4 == 1;
        }
        return t;
}

/* Relative path of directory k (caller frees). */
static char *tree_dir(unsigned long k) {
        static const char *const names[] = {"dir ", "Ünïcødé ñ ", "src_", "日本語 "};
        _cleanup_free_ char *parent = k == 0 ? strdup("tree") : tree_dir((k - 1) / 4);
        char name[64], *p = NULL;

        ck_assert_ptr_nonnull(parent);
        (void)snprintf(name, sizeof(name), "%s%lu", names[k % 4], k);
        ck_assert_int_ge(asprintf(&p, "%s/%s", parent, name), 0);
        return p;
}

/* Writes the tree below root (a mount or the reference) the way tar does. */
static void tree_write(FsMount *m, const char *root, const Tree *t) {
        /* One name in four with non-ASCII letters (see tree_write_checked) */
        static const char *const names[][2] = {
                {"file ", ".txt"}, {"naïve café ", ".c"}, {"README-", ""}, {"data ", ".json"}};
        _cleanup_free_ char *top = NULL;
        unsigned long per = (t->files + t->dirs - 1) / t->dirs;

        ck_assert_int_ge(asprintf(&top, "%s/tree", root), 0);
        ck_assert_msg(mkdir(top, 0755) == 0, "mkdir %s: %m", top);
        for (unsigned long k = 0; k < t->dirs; k++) {
                _cleanup_free_ char *rel = tree_dir(k), *dir = NULL;

                ck_assert_int_ge(asprintf(&dir, "%s/%s", root, rel), 0);
                ck_assert_msg(mkdir(dir, 0755) == 0, "mkdir %s: %m", dir);
                for (unsigned long i = k * per; i < MIN((k + 1) * per, t->files); i++) {
                        char name[64];
                        _cleanup_free_ char *path = NULL;

                        (void)snprintf(
                                name, sizeof(name), "%s%05lu%s", names[i % 4][0], i,
                                names[i % 4][1]);
                        ck_assert_int_ge(asprintf(&path, "%s/%s", dir, name), 0);
                        CHECK_OK(m, fs_write_pattern(path, i, tree_size(i), 4096), path);
                }
        }
}

/* The emulator's non-zero counters, "Op n, Op n" (for the messages; caller frees). */
static char *counters_text(void) {
        EmuHttpResult res;
        json_object *o = NULL, *c;
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(
                emu_http(
                        emu, "GET", "imds:/__emu/counters", NULL, NULL, 0, EMU_AUTH_MODE_NONE,
                        &res),
                0);
        if (res.status == 200)
                o = json_tokener_parse(res.body);
        emu_http_result_clear(&res);
        if (o && json_object_object_get_ex(o, "counters", &c)) {
                json_object_object_foreach(c, op, v) {
                        json_object *n;
                        if (json_object_object_get_ex(v, "requests", &n) &&
                            json_object_get_int64(n) > 0 && !streq(op, "Admin"))
                                fprintf(f, "%s%s %" PRId64, ftell(f) > 0 ? ", " : "", op,
                                        json_object_get_int64(n));
                }
        }
        json_object_put(o);
        ck_assert_int_eq(fclose(f), 0);
        return text;
}

static uint64_t counter(const char *op) {
        uint64_t v = 0;
        ck_assert_int_eq(fs_emu_counter(emu, op, false, &v), 0);
        return v;
}

/* The tree written through a mount with options, flushed; dirty_bytes 0. In the default mode,
 * the requests, from the emulator's counters. Per file: exactly Create File + Put Range for a
 * non-empty file, Create File for an empty one, and for a name with non-ASCII letters its
 * negative lookup (Get File Properties, then Get Directory Properties: azfilesfs folds only
 * ASCII when it answers a lookup from a directory's known names, SEMANTICS.md). Per directory:
 * its Create Directory, and at most OTHER_PER_DIR others (the same lookups of non-ASCII
 * directory names, List renewals after dir_timeout, Set Metadata of a chmod). */
static void tree_write_checked(const char *options, const Tree *t) {
        uint64_t dirty = UINT64_MAX, total, create, put, mkdirs, lookups, per_dir;
        _cleanup_free_ char *text = NULL;

        mnt = mount_with(options);
        phase(NULL);
        ck_assert_int_eq(fs_emu_counter(emu, NULL, true, &total), 0);
        tree_write(mnt, mnt->mountpoint, t);
        phase("write the tree");
        CHECK_OK(mnt, fs_flush(mnt, 300), "flush");
        CHECK_OK(mnt, fs_dirty_bytes(mnt, &dirty), "dirty_bytes");
        ck_assert_msg(dirty == 0, "dirty_bytes %" PRIu64 " after a flush", dirty);
        phase("flush");
        tree_write(NULL, ref, t);
        if (strstr(options, "writeback=async"))
                return;
        total = counter(NULL);
        create = counter("CreateFile");
        put = counter("PutRange");
        mkdirs = counter("CreateDirectory");
        /* The non-ASCII names' lookups are counted per file; what is left is per directory. */
        lookups = MIN(counter("GetFileProperties"), t->non_ascii) +
                  MIN(counter("GetDirectoryProperties"), t->non_ascii);
        per_dir = total - create - put - lookups;
        text = counters_text();
        fprintf(stderr,
                "  requests: %" PRIu64 " (%s) for %lu files (%lu empty, %lu with non-ASCII "
                "names) in %lu directories: per file %.3f (Create File, Put Range, the "
                "non-ASCII names' lookups), per directory %.2f (Create Directory and the rest)\n",
                total, text, t->files, t->empty, t->non_ascii, t->dirs + 1,
                (double)(create + put + lookups) / (double)t->files,
                (double)per_dir / (double)(t->dirs + 1));
        ck_assert_uint_eq(create, t->files);
        ck_assert_uint_eq(put, t->files - t->empty);
        ck_assert_uint_eq(mkdirs, t->dirs + 1);
        ck_assert_msg(
                per_dir - mkdirs <= OTHER_PER_DIR * (t->dirs + 1),
                "%" PRIu64 " requests besides Create File, Put Range, Create Directory and the "
                "lookups of %lu non-ASCII names, for %lu directories (%s)",
                per_dir - mkdirs, t->non_ascii, t->dirs + 1, text);
}

/* After a remount: an ls -lR of the tree (names, types, sizes) equals the reference, with one
 * List per directory (each holds fewer than a List page), no request per file, and at most one
 * other request per directory (the lookup of its name as the walk enters it). */
static void tree_ls_after_remount(const Tree *t) {
        _cleanup_free_ char *msg = NULL, *top = fs_mount_path(mnt, "tree"), *rtop = NULL;
        uint64_t total, lists;
        int r;

        remount(mnt);
        phase(NULL);
        ck_assert_int_ge(asprintf(&rtop, "%s/tree", ref), 0);
        ck_assert_int_eq(fs_emu_counter(emu, NULL, true, &total), 0);
        r = fs_tree_compare(top, rtop, FS_TREE_NO_DATA, &msg);
        if (r < 0)
                dump_log(mnt);
        ck_assert_msg(r == 0, "ls -lR after a remount: %s", msg ? msg : strerror(-r));
        total = counter(NULL);
        lists = counter("ListDirectoriesAndFiles");
        phase("remount, ls -lR");
        fprintf(stderr, "  ls -lR of %lu entries: %" PRIu64 " requests, %" PRIu64 " of them List\n",
                t->files + t->dirs, total, lists);
        ck_assert_uint_le(lists, t->dirs + 2);
        ck_assert_uint_le(total - lists, 2 * (t->dirs + 1));
}

/* In the default mode: the requests counted, every file's bytes read back from the share over
 * REST, an ls -lR after a remount. */
START_TEST(test_tree) {
        Tree t = tree_shape();
        _cleanup_free_ char *msg = NULL;
        int r;

        tree_write_checked(TREE_TIMEOUTS, &t);
        r = fs_share_compare(emu, SHARE, "", ref, &msg);
        ck_assert_msg(r == 0, "share vs reference: %s", msg ? msg : strerror(-r));
        phase("compare the share over REST");
        tree_ls_after_remount(&t);
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* In writeback=async mode: flushed, every file read back through a second mount (another VM,
 * empty cache), an ls -lR after a remount. */
START_TEST(test_tree_async) {
        Tree t = tree_shape();
        _cleanup_free_ char *msg = NULL;
        int r;

        tree_write_checked("writeback=async," TREE_TIMEOUTS, &t);
        mnt_b = mount_with(NULL);
        r = fs_tree_compare(mnt_b->mountpoint, ref, 0, &msg);
        if (r < 0)
                dump_log(mnt_b);
        ck_assert_msg(r == 0, "second mount vs reference: %s", msg ? msg : strerror(-r));
        phase("read every file through a second mount");
        ck_assert_int_eq(fs_mount_stop(mnt_b), 0);
        tree_ls_after_remount(&t);
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* ---- concurrent writers ---------------------------------------------------------------------- */

typedef struct Writer {
        unsigned id;
        char *path;
        int result;
} Writer;

static void *writer_thread(void *p) {
        Writer *w = p;
        _cleanup_free_ uint8_t *buf = malloc(300 * 1024);
        uint64_t off = 0;
        unsigned step = 0;
        int fd;

        w->result = -ENOMEM;
        if (!buf)
                return NULL;
        fd = open(w->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
                w->result = -errno;
                return NULL;
        }
        w->result = 0;
        while (off < WRITER_SIZE && w->result == 0) {
                /* Uneven writes: 1 byte to 300 KiB, crossing every kind of boundary. */
                size_t n = (size_t)MIN(
                        (uint64_t)(1 + (step * 7727 + w->id * 131) % (300 * 1024)),
                        WRITER_SIZE - off);
                fs_pattern_fill(2000 + w->id, off, buf, n);
                if (write(fd, buf, n) != (ssize_t)n)
                        w->result = -errno ?: -EIO;
                off += n;
                if (++step % 16 == 0 && fsync(fd) < 0)
                        w->result = -errno;
        }
        if (close(fd) < 0 && w->result == 0)
                w->result = -errno;
        return NULL;
}

START_TEST(test_concurrent) {
        Writer w[WRITERS] = {};
        pthread_t th[WRITERS];

        mnt = mount_with(NULL);
        for (unsigned i = 0; i < WRITERS; i++) {
                char name[32];
                (void)snprintf(name, sizeof(name), "writer-%02u.bin", i);
                w[i].id = i;
                w[i].path = fs_mount_path(mnt, name);
                ck_assert_int_eq(pthread_create(&th[i], NULL, writer_thread, &w[i]), 0);
        }
        for (unsigned i = 0; i < WRITERS; i++)
                ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        for (unsigned i = 0; i < WRITERS; i++) {
                char name[32], rp[128];
                (void)snprintf(name, sizeof(name), "writer-%02u.bin", i);
                if (w[i].result < 0)
                        dump_log(mnt);
                ck_assert_msg(w[i].result == 0, "writer %u: %s", i, strerror(-w[i].result));
                CHECK_OK(mnt, fs_check_pattern(w[i].path, 2000 + i, WRITER_SIZE), name);
                (void)snprintf(rp, sizeof(rp), "%s/%s", ref, name);
                ck_assert_int_eq(fs_write_pattern(rp, 2000 + i, WRITER_SIZE, MIB), 0);
                free(w[i].path);
        }
        {
                _cleanup_free_ char *msg = NULL;
                int r = fs_share_compare(emu, SHARE, "", ref, &msg);
                ck_assert_msg(r == 0, "share vs reference: %s", msg ? msg : strerror(-r));
        }
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

/* ---- two mounts: close-to-open --------------------------------------------------------------- */

static void write_text(FsMount *m, const char *name, const char *text) {
        _cleanup_free_ char *p = fs_mount_path(m, name);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        size_t n = strlen(text);

        ck_assert_msg(fd >= 0, "open %s for writing: %m", p);
        ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
        ck_assert_msg(close(fd) == 0, "close %s: %m", p);
}

/* Opens, reads everything, closes; the content must be want. */
static void expect_text(FsMount *m, const char *name, const char *want, const char *what) {
        _cleanup_free_ char *p = fs_mount_path(m, name);
        char buf[256];
        ssize_t n;
        int fd = open(p, O_RDONLY | O_CLOEXEC);

        ck_assert_msg(fd >= 0, "%s: open %s: %m", what, p);
        n = read(fd, buf, sizeof(buf) - 1);
        (void)close(fd);
        ck_assert_msg(n >= 0, "%s: read: %m", what);
        buf[n] = '\0';
        ck_assert_msg(streq(buf, want), "%s: read \"%s\", want \"%s\"", what, buf, want);
}

START_TEST(test_two_mounts) {
        _cleanup_free_ char *newb = NULL;
        struct stat st;

        mnt = mount_with(NULL);
        mnt_b = mount_with(NULL);
        write_text(mnt, "shared.txt", "version one from A\n");
        expect_text(mnt_b, "shared.txt", "version one from A\n", "B after A wrote v1");
        /* B has it in its caches now; A changes it (same size, then another size). */
        write_text(mnt, "shared.txt", "version TWO from A\n");
        expect_text(mnt_b, "shared.txt", "version TWO from A\n", "B after A wrote v2 (same size)");
        write_text(mnt, "shared.txt", "v3, shorter\n");
        expect_text(mnt_b, "shared.txt", "v3, shorter\n", "B after A wrote v3 (shorter)");
        /* And back: B writes, A sees it at its next open. */
        write_text(mnt_b, "shared.txt", "version four, written on B, longer than before\n");
        expect_text(
                mnt, "shared.txt", "version four, written on B, longer than before\n",
                "A after B wrote v4");
        /* A file B looked for in vain, then A created: B's next open finds it (bug 4, fixed: B
         * once kept the negative lookup for entry_timeout). */
        newb = fs_mount_path(mnt_b, "created later.txt");
        ck_assert_int_eq(stat(newb, &st), -1);
        ck_assert_int_eq(errno, ENOENT);
        write_text(mnt, "created later.txt", "new on A\n");
        expect_text(mnt_b, "created later.txt", "new on A\n", "B opens a file A created");
        ck_assert_int_eq(fs_mount_stop(mnt_b), 0);
        ck_assert_int_eq(fs_mount_stop(mnt), 0);
}
END_TEST

int main(void) {
        const struct {
                const char *name;
                const TTest *test;
        } tests[] = {
                {"big_file", test_big_file},     {"tree", test_tree},
                {"tree_async", test_tree_async}, {"concurrent", test_concurrent},
                {"two_mounts", test_two_mounts},
        };
        Suite *s = suite_create("fs-scale");
        SRunner *sr;
        int failed, pre = fs_harness_preflight();

        if (pre != 0)
                return pre;
        /* One case per test: CK_RUN_CASE=name runs one. */
        for (size_t i = 0; i < ELEMENTSOF(tests); i++) {
                TCase *tc = tcase_create(tests[i].name);
                tcase_add_checked_fixture(tc, setup, teardown);
                tcase_add_test(tc, tests[i].test);
                tcase_set_timeout(tc, 900);
                suite_add_tcase(s, tc);
        }
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
