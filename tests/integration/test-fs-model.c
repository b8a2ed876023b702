/* SPDX-License-Identifier: MIT */
/* Model-based random test of azfilesfs (fs-model.h): for each seed, a fresh share on one real
 * azfiles-emu, a real mount of $AZFILESFS (odd seeds in the default mode, even seeds with
 * writeback=async), FS_MODEL_OPS seeded operations compared with a local reference directory,
 * unmount/remount at random points (in writeback=async half of them a kill -9 of the daemon), and
 * at the end a flush and a byte-for-byte compare of the share itself (over REST) with the
 * reference.
 *
 *   FS_MODEL_SEEDS=N        seeds 1..N (default 3: the CI budget)
 *   FS_MODEL_SEED=S         only seed S (reproduce a failure)
 *   FS_MODEL_OPS=N          operations per seed (default 1500)
 *   FS_MODEL_MODE=default|async   force one write mode for every seed
 *   FS_MODEL_STANDIN=1      no mount: a plain local directory stands for it (case-sensitive);
 *                           validates the model and the tree compare themselves
 *   FS_MODEL_CASE_SENSITIVE=1  no case variants (for a case-sensitive stand-in driver,
 *                           fs-standin.sh)
 *
 * Runs in a private mount namespace; needs root and /dev/fuse (else 77); fails when $AZFILESFS
 * is missing. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "fs-harness.h"
#include "fs-model.h"
#include "macro.h"

static bool standin(void) {
        const char *v = getenv("FS_MODEL_STANDIN");
        return v && streq(v, "1");
}

static int run_seed(EmuInstance *emu, uint64_t seed, unsigned ops, char **reterr_msg) {
        _cleanup_(fs_mount_freep) FsMount *mnt = NULL;
        const char *mode = getenv("FS_MODEL_MODE");
        bool async = mode ? streq(mode, "async") : seed % 2 == 0;
        char ref[] = "/tmp/fs-model-ref.XXXXXX", root[] = "/tmp/fs-model-root.XXXXXX";
        char share[64];
        FsModelConfig cfg = {
                .seed = seed,
                .ops = ops,
                .case_insensitive = !standin() && !getenv("FS_MODEL_CASE_SENSITIVE"),
                .remount_every = 400,
                .crash_remounts = async, /* half of them a kill -9 of the daemon */
                .checkpoint_every = 250,
                .compare_exec_bit = true, /* bug 2 (fs-model.c) is fixed */
                .ref = ref,
        };
        int r;

        if (!mkdtemp(ref))
                return -errno;
        if (standin()) {
                if (!mkdtemp(root)) {
                        fs_rm_rf(ref);
                        return -errno;
                }
                cfg.root = root;
        } else {
                (void)snprintf(share, sizeof(share), "model-%" PRIu64, seed);
                r = fs_share_create(emu, share);
                if (r < 0) {
                        fs_rm_rf(ref);
                        return r;
                }
                r = fs_mount_new(emu, share, NULL, fs_model_mount_options(async), &mnt);
                if (r < 0) {
                        fs_rm_rf(ref);
                        (void)asprintf(reterr_msg, "mount failed: %s", strerror(-r));
                        return -EBADMSG;
                }
                cfg.mount = mnt;
                cfg.root = mnt->mountpoint;
        }
        fprintf(stderr, "seed %" PRIu64 ": %u ops, %s mode%s\n", seed, ops,
                async ? "writeback=async" : "default", standin() ? " (stand-in directory)" : "");
        r = fs_model_run(&cfg, reterr_msg);
        if (r < 0 && mnt) {
                _cleanup_free_ char *tail = fs_mount_log_tail(mnt, 4000);
                fprintf(stderr, "--- azfilesfs log (tail) ---\n%s\n", tail ? tail : "");
        }
        if (r == 0 && mnt) {
                int s = fs_mount_stop(mnt);
                if (s != 0) {
                        (void)asprintf(reterr_msg, "seed %" PRIu64 ": final unmount: %d", seed, s);
                        r = -EBADMSG;
                }
        }
        fs_rm_rf(ref);
        if (standin())
                fs_rm_rf(root);
        return r;
}

START_TEST(test_model) {
        _cleanup_(emu_instance_freep) EmuInstance *emu = NULL;
        unsigned long seeds = fs_env_ulong("FS_MODEL_SEEDS", 3),
                      only = fs_env_ulong("FS_MODEL_SEED", 0);
        unsigned ops = (unsigned)fs_env_ulong("FS_MODEL_OPS", 1500);
        unsigned failed = 0;

        umask(022);
        ck_assert_int_eq(fs_harness_enter_namespace(), 0);
        if (!standin())
                ck_assert_int_eq(emu_instance_start(NULL, NULL, &emu), 0);
        for (unsigned long s = only ? only : 1; s <= (only ? only : seeds); s++) {
                _cleanup_free_ char *msg = NULL;
                int r = run_seed(emu, s, ops, &msg);
                if (r < 0) {
                        fprintf(stderr, "FAILED: %s\n", msg ? msg : strerror(-r));
                        failed++;
                        /* One failing seed is enough to report; more on demand. */
                        if (!getenv("FS_MODEL_KEEP_GOING"))
                                break;
                }
        }
        ck_assert_msg(failed == 0, "%u seed(s) failed; the op log and the seed are above", failed);
}
END_TEST

int main(void) {
        Suite *s = suite_create("fs-model");
        TCase *tc = tcase_create("model");
        SRunner *sr;
        int failed, pre;

        pre = standin() ? (geteuid() == 0 ? 0 : 77) : fs_harness_preflight();
        if (pre != 0)
                return pre;
        tcase_add_test(tc, test_model);
        tcase_set_timeout(tc, 3600);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
