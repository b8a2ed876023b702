/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "emu-store.h"

static char data_dir[64];
static EmuStore *store;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void)st;
        (void)flag;
        (void)ftw;
        (void)remove(path);
        return 0;
}

static void setup(void) {
        snprintf(data_dir, sizeof(data_dir), "/tmp/test-emu-store.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(data_dir));
        ck_assert_int_eq(emu_store_open(data_dir, "acct", &store), 0);
        ck_assert_int_eq(emu_store_share_create(store, "share", 0, NULL), 0);
}

static void teardown(void) {
        store = emu_store_free(store);
        (void)nftw(data_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void reopen(void) {
        store = emu_store_free(store);
        ck_assert_int_eq(emu_store_open(data_dir, "acct", &store), 0);
}

static EmuCreateArgs create_args(uint64_t size) {
        return (EmuCreateArgs){
                .size = size,
                .smb = {.creation_ns = EMU_TIME_NOW,
                        .last_write_ns = EMU_TIME_NOW,
                        .change_ns = EMU_TIME_NOW},
        };
}

static EmuEntry mk(char *const *path, size_t n, bool dir, uint64_t size) {
        EmuCreateArgs a = create_args(size);
        EmuEntry e = {};
        ck_assert_int_eq(emu_store_create(store, "share", path, n, dir, &a, &e), 0);
        return e;
}

START_TEST(test_shares) {
        EmuShareInfo i = {};
        ck_assert_int_eq(emu_store_share_create(store, "share", 0, NULL), -EEXIST);
        ck_assert_int_eq(emu_store_share_get(store, "nope", &i), -ENOMEDIUM);
        ck_assert_int_eq(emu_store_share_set(store, "share", 42, NULL, &i), 0);
        ck_assert_uint_eq(i.quota_gib, 42);
        emu_share_info_clear(&i);
        reopen();
        ck_assert_int_eq(emu_store_share_get(store, "share", &i), 0);
        ck_assert_uint_eq(i.quota_gib, 42);
        emu_share_info_clear(&i);
        ck_assert_int_eq(emu_store_share_delete(store, "share"), 0);
        ck_assert_int_eq(emu_store_share_delete(store, "share"), -ENOMEDIUM);
        ck_assert_int_eq(emu_store_share_create(store, "share", 0, NULL), 0);
}
END_TEST

START_TEST(test_case_insensitive) {
        char *d[] = {(char *)"Dir"}, *dl[] = {(char *)"DIR"};
        char *f[] = {(char *)"dir", (char *)"File.TXT"},
             *fl[] = {(char *)"dIR", (char *)"file.txt"};
        EmuEntry e = mk(d, 1, true, 0), g = {};
        EmuCreateArgs a = create_args(0);

        ck_assert_uint_ne(e.id, 0);
        ck_assert_int_eq(emu_store_create(store, "share", dl, 1, true, &a, &g), -EEXIST);
        emu_entry_clear(&e);
        e = mk(f, 2, false, 10);
        ck_assert_int_eq(emu_store_get(store, "share", fl, 2, false, &g), 0);
        ck_assert_str_eq(g.name, "File.TXT");
        ck_assert_uint_eq(g.id, e.id);
        ck_assert_uint_eq(g.size, 10);
        emu_entry_clear(&g);
        /* Wrong type and missing parents. */
        ck_assert_int_eq(emu_store_get(store, "share", fl, 2, true, &g), -ENOTDIR);
        ck_assert_int_eq(emu_store_get(store, "share", dl, 1, false, &g), -EISDIR);
        char *missing[] = {(char *)"nope", (char *)"x"};
        ck_assert_int_eq(emu_store_get(store, "share", missing, 2, false, &g), -ESRCH);
        ck_assert_int_eq(emu_store_get(store, "share", missing, 1, true, &g), -ENOENT);
        ck_assert_int_eq(emu_store_get(store, "other", missing, 1, true, &g), -ENOMEDIUM);
        /* A file as a parent is a missing parent. */
        char *under_file[] = {(char *)"dir", (char *)"file.txt", (char *)"x"};
        ck_assert_int_eq(emu_store_get(store, "share", under_file, 3, false, &g), -ESRCH);
        /* Create File replaces and keeps the id. */
        EmuEntry r = mk(fl, 2, false, 3);
        ck_assert_uint_eq(r.id, e.id);
        ck_assert_uint_eq(r.size, 3);
        ck_assert_str_eq(r.name, "file.txt");
        emu_entry_clear(&r);
        emu_entry_clear(&e);
        ck_assert_int_eq(emu_store_delete(store, "share", d, 1, true, NULL), -ENOTEMPTY);
        ck_assert_int_eq(emu_store_delete(store, "share", f, 2, true, NULL), -ENOTDIR);
        ck_assert_int_eq(emu_store_delete(store, "share", f, 2, false, NULL), 0);
        ck_assert_int_eq(emu_store_delete(store, "share", d, 1, true, NULL), 0);
}
END_TEST

static void read_back(char *const *p, size_t n, uint64_t off, const char *want, size_t len) {
        EmuEntry e = {};
        char buf[64];
        int fd = -1;
        ck_assert_int_eq(emu_store_open_file(store, "share", p, n, &e, &fd), 0);
        ck_assert_int_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
        ck_assert_int_eq(memcmp(buf, want, len), 0);
        close(fd);
        emu_entry_clear(&e);
}

START_TEST(test_write_and_ranges) {
        char *f[] = {(char *)"f"};
        EmuEntry e = mk(f, 1, false, 2048), w = {};
        EmuRange *r = NULL;
        size_t n = 0;
        uint64_t etag = e.etag;

        ck_assert_int_eq(
                emu_store_write(
                        store, "share", f, 1, 2040, "0123456789", 10, NULL, EMU_TIME_NOW, &w),
                -ERANGE);
        ck_assert_int_eq(
                emu_store_write(store, "share", f, 1, 0, "hello", 5, NULL, EMU_TIME_NOW, &w), 0);
        ck_assert_uint_gt(w.etag, etag);
        emu_entry_clear(&w);
        ck_assert_int_eq(
                emu_store_write(store, "share", f, 1, 1024, "world", 5, NULL, EMU_TIME_NOW, &w), 0);
        emu_entry_clear(&w);
        read_back(f, 1, 0, "hello", 5);
        ck_assert_int_eq(emu_store_ranges(store, "share", f, 1, 0, UINT64_MAX, &w, &r, &n), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_uint_eq(r[0].start, 0);
        ck_assert_uint_eq(r[0].end, 4);
        ck_assert_uint_eq(r[1].start, 1024);
        ck_assert_uint_eq(r[1].end, 1028);
        free(r);
        emu_entry_clear(&w);
        /* Adjacent writes merge; a clear splits. */
        ck_assert_int_eq(
                emu_store_write(store, "share", f, 1, 5, "HELLO", 5, NULL, EMU_TIME_NOW, &w), 0);
        emu_entry_clear(&w);
        ck_assert_int_eq(
                emu_store_write(store, "share", f, 1, 2, NULL, 2, NULL, EMU_TIME_NOW, &w), 0);
        emu_entry_clear(&w);
        read_back(f, 1, 0, "he\0\0oHELLO", 10);
        ck_assert_int_eq(emu_store_ranges(store, "share", f, 1, 0, 1025, &w, &r, &n), 0);
        ck_assert_uint_eq(n, 3);
        ck_assert_uint_eq(r[0].end, 1);
        ck_assert_uint_eq(r[1].start, 4);
        ck_assert_uint_eq(r[1].end, 9);
        ck_assert_uint_eq(r[2].start, 1024);
        ck_assert_uint_eq(r[2].end, 1025);
        free(r);
        emu_entry_clear(&w);
        /* Resize clips ranges. */
        uint64_t size = 8;
        EmuSetArgs sa = {
                .size = &size,
                .smb = {.creation_ns = EMU_TIME_PRESERVE,
                        .last_write_ns = EMU_TIME_PRESERVE,
                        .change_ns = EMU_TIME_PRESERVE}};
        ck_assert_int_eq(emu_store_set(store, "share", f, 1, false, &sa, &w), 0);
        ck_assert_uint_eq(w.size, 8);
        emu_entry_clear(&w);
        ck_assert_int_eq(emu_store_ranges(store, "share", f, 1, 0, UINT64_MAX, &w, &r, &n), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_uint_eq(r[1].end, 7);
        free(r);
        emu_entry_clear(&w);
        emu_entry_clear(&e);
}
END_TEST

START_TEST(test_lease) {
        char *f[] = {(char *)"f"};
        EmuEntry e = mk(f, 1, false, 16), w = {};
        const char *other = "11111111-1111-1111-1111-111111111111";
        char id[EMU_LEASE_ID_MAX];

        ck_assert_int_eq(
                emu_store_lease(store, "share", f, 1, EMU_LEASE_ACQUIRE, NULL, NULL, &w), 0);
        ck_assert_int_eq(w.lease_state, EMU_LEASE_LEASED);
        ck_assert_uint_eq(w.etag, e.etag); /* lease ops keep the ETag */
        snprintf(id, sizeof(id), "%s", w.lease_id);
        emu_entry_clear(&w);
        ck_assert_int_eq(
                emu_store_lease(store, "share", f, 1, EMU_LEASE_ACQUIRE, NULL, other, &w),
                -EALREADY);
        ck_assert_int_eq(
                emu_store_write(store, "share", f, 1, 0, "x", 1, NULL, EMU_TIME_NOW, &w), -ENOLCK);
        ck_assert_int_eq(
                emu_store_write(store, "share", f, 1, 0, "x", 1, other, EMU_TIME_NOW, &w), -EPERM);
        ck_assert_int_eq(emu_store_delete(store, "share", f, 1, false, NULL), -ENOLCK);
        ck_assert_int_eq(emu_store_write(store, "share", f, 1, 0, "x", 1, id, EMU_TIME_NOW, &w), 0);
        emu_entry_clear(&w);
        ck_assert_int_eq(emu_store_lease(store, "share", f, 1, EMU_LEASE_CHANGE, id, other, &w), 0);
        ck_assert_str_eq(w.lease_id, other);
        emu_entry_clear(&w);
        ck_assert_int_eq(
                emu_store_lease(store, "share", f, 1, EMU_LEASE_RELEASE, id, NULL, &w), -EPERM);
        ck_assert_int_eq(
                emu_store_lease(store, "share", f, 1, EMU_LEASE_RELEASE, other, NULL, &w), 0);
        emu_entry_clear(&w);
        ck_assert_int_eq(
                emu_store_write(store, "share", f, 1, 0, "x", 1, other, EMU_TIME_NOW, &w),
                -ENOLINK);
        ck_assert_int_eq(
                emu_store_lease(store, "share", f, 1, EMU_LEASE_BREAK, NULL, NULL, &w), -ENOLINK);
        ck_assert_int_eq(emu_store_delete(store, "share", f, 1, false, NULL), 0);
        emu_entry_clear(&e);
}
END_TEST

START_TEST(test_rename) {
        char *a[] = {(char *)"a"}, *ab[] = {(char *)"a", (char *)"B"};
        char *c[] = {(char *)"c"}, *cd[] = {(char *)"c", (char *)"d"};
        EmuEntry da = mk(a, 1, true, 0), fb = mk(ab, 2, false, 4), dc = mk(c, 1, true, 0);
        EmuEntry fd = mk(cd, 2, false, 1), w = {};
        EmuRenameArgs ra = {
                .smb = {.creation_ns = EMU_TIME_PRESERVE,
                        .last_write_ns = EMU_TIME_PRESERVE,
                        .change_ns = EMU_TIME_PRESERVE}};

        /* File onto an existing file: refused, then replaced. */
        ck_assert_int_eq(emu_store_rename(store, "share", ab, 2, cd, 2, false, &ra, &w), -EEXIST);
        ra.replace_if_exists = true;
        ck_assert_int_eq(emu_store_rename(store, "share", ab, 2, cd, 2, false, &ra, &w), 0);
        ck_assert_uint_eq(w.id, fb.id);
        ck_assert_uint_eq(w.parent_id, dc.id);
        ck_assert_uint_eq(w.creation_ns, fb.creation_ns);
        emu_entry_clear(&w);
        /* Directory into its own subtree. */
        char *inside[] = {(char *)"c", (char *)"sub"};
        ck_assert_int_eq(emu_store_rename(store, "share", c, 1, inside, 2, true, &ra, &w), -EINVAL);
        /* Case-only rename of a directory; the id survives a restart. */
        char *C[] = {(char *)"C"};
        ck_assert_int_eq(emu_store_rename(store, "share", c, 1, C, 1, true, &ra, &w), 0);
        emu_entry_clear(&w);
        reopen();
        ck_assert_int_eq(emu_store_get(store, "share", C, 1, true, &w), 0);
        ck_assert_str_eq(w.name, "C");
        ck_assert_uint_eq(w.id, dc.id);
        emu_entry_clear(&w);
        ck_assert_int_eq(emu_store_get(store, "share", cd, 2, false, &w), 0);
        ck_assert_uint_eq(w.id, fb.id);
        ck_assert_str_eq(w.name, "d");
        emu_entry_clear(&w);
        /* New ids keep counting after the restart. */
        char *e1[] = {(char *)"e"};
        EmuEntry ne = mk(e1, 1, false, 0);
        ck_assert_uint_gt(ne.id, fd.id);
        emu_entry_clear(&ne);
        emu_entry_clear(&da);
        emu_entry_clear(&fb);
        emu_entry_clear(&dc);
        emu_entry_clear(&fd);
}
END_TEST

START_TEST(test_list) {
        static const char *const names[] = {"b", "A", "c", "ListFiles", "file0", "Zed", "_x"};
        EmuListPage p = {};
        char long_name[300];

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                char *path[] = {(char *)names[i]};
                EmuEntry e = mk(path, 1, i % 2 == 0, 0);
                emu_entry_clear(&e);
        }
        memset(long_name, 'L', 250);
        long_name[250] = '\0';
        char *lp[] = {long_name};
        EmuEntry le = mk(lp, 1, false, 1);
        emu_entry_clear(&le);

        ck_assert_int_eq(emu_store_list(store, "share", NULL, 0, NULL, NULL, 5000, &p), 0);
        ck_assert_uint_eq(p.n_items, 8);
        ck_assert_str_eq(p.items[0].name, "_x");
        ck_assert_str_eq(p.items[1].name, "A");
        ck_assert_str_eq(p.items[4].name, "file0");
        ck_assert_str_eq(p.items[5].name, "ListFiles");
        ck_assert_str_eq(p.items[6].name, long_name); /* stored hashed, listed by name */
        ck_assert_str_eq(p.items[7].name, "Zed");
        ck_assert_ptr_null(p.next_marker);
        emu_list_page_clear(&p);

        /* Paging: 3 + 3 + 2 with markers. */
        size_t total = 0, pages = 0;
        char *marker = NULL;
        do {
                ck_assert_int_eq(emu_store_list(store, "share", NULL, 0, NULL, marker, 3, &p), 0);
                free(marker);
                marker = p.next_marker ? strdup(p.next_marker) : NULL;
                total += p.n_items;
                pages++;
                emu_list_page_clear(&p);
        } while (marker);
        ck_assert_uint_eq(total, 8);
        ck_assert_uint_eq(pages, 3);

        ck_assert_int_eq(emu_store_list(store, "share", NULL, 0, "LI", NULL, 10, &p), 0);
        ck_assert_uint_eq(p.n_items, 1);
        ck_assert_str_eq(p.items[0].name, "ListFiles");
        emu_list_page_clear(&p);
        ck_assert_int_eq(
                emu_store_list(store, "share", NULL, 0, NULL, "garbage", 10, &p), -EBADMSG);
}
END_TEST

int main(void) {
        Suite *s = suite_create("emu-store");
        TCase *tc = tcase_create("store");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_shares);
        tcase_add_test(tc, test_case_insensitive);
        tcase_add_test(tc, test_write_and_ranges);
        tcase_add_test(tc, test_lease);
        tcase_add_test(tc, test_rename);
        tcase_add_test(tc, test_list);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
