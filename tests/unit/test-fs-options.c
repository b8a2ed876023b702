/* SPDX-License-Identifier: MIT */
/* azfilesfs's pure parts: the command line and -o options, SOURCE, the credentials file rules,
 * and the inode table (numbers, case-insensitive paths, renames of directories). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "fs-inode.h"
#include "fs-options.h"
#include "macro.h"

static FsOptions o;
static char *err;

static void setup(void) {
        fs_options_init(&o);
        err = NULL;
}

static void teardown(void) {
        fs_options_done(&o);
        free(err);
}

static int parse(const char *const *argv) {
        int argc = 0;
        while (argv[argc])
                argc++;
        return fs_options_parse(&o, argc, (char *const *)argv, &err);
}

START_TEST(test_source_host_style) {
        ck_assert_int_eq(
                parse((const char *[]){
                        "azfilesfs", "https://acct.file.core.windows.net/team/sub/dir/", "/mnt/x",
                        "-o", "credentials=/etc/c", NULL}),
                0);
        ck_assert_str_eq(o.endpoint, "https://acct.file.core.windows.net");
        ck_assert_str_eq(o.account, "acct");
        ck_assert_str_eq(o.share, "team");
        ck_assert_str_eq(o.subdir, "sub/dir");
        ck_assert_str_eq(o.users_dir, "Users");
        ck_assert_str_eq(o.cache_dir, FS_DEFAULT_CACHE_DIR);
}
END_TEST

START_TEST(test_source_path_style) {
        ck_assert_int_eq(
                fs_parse_source(&o, "http://127.0.0.1:10000/devstoreaccount1/share", &err), 0);
        ck_assert_str_eq(o.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        ck_assert_str_eq(o.account, "devstoreaccount1");
        ck_assert_str_eq(o.share, "share");
        ck_assert_str_eq(o.subdir, "");
        ck_assert_int_eq(fs_parse_source(&o, "ftp://h/a/s", &err), -EINVAL);
        ck_assert_int_eq(fs_parse_source(&o, "http://h/acct", &err), -EINVAL);
        ck_assert_int_eq(fs_parse_source(&o, "http://h/acct/share/../x", &err), -EINVAL);
        ck_assert_int_eq(
                fs_parse_source(&o, "https://a.file.core.windows.net/s?sig=x", &err), -EINVAL);
}
END_TEST

START_TEST(test_options) {
        ck_assert_int_eq(
                parse((const char *[]){
                        "azfilesfs", "http://h:1/a/s", "/m", "-f", "-o",
                        "rw,nosuid,_netdev,nofail,x-systemd.automount,credentials=/c,uid=1000,"
                        "gid=100,file_mode=0640,dir_mode=750,users_dir=Home,users_mode=0750,"
                        "cache_dir=/var/cache/az,cache_size=2G,max_dirty=64M,writeback=async,"
                        "async_delay=2.5,attr_timeout=3,entry_timeout=0,dir_timeout=10,"
                        "imds=http://127.0.0.1:9,retry_budget=30,retry_delay=0.05,max_requests=8,"
                        "transfer_threads=0",
                        NULL}),
                0);
        ck_assert(o.foreground);
        ck_assert_uint_eq(o.uid, 1000);
        ck_assert_uint_eq(o.gid, 100);
        ck_assert_uint_eq(o.file_mode, 0640);
        ck_assert_uint_eq(o.dir_mode, 0750);
        ck_assert_str_eq(o.users_dir, "Home");
        ck_assert_uint_eq(o.users_mode, 0750);
        ck_assert_str_eq(o.cache_dir, "/var/cache/az");
        ck_assert_uint_eq(o.cache_size, UINT64_C(2) << 30);
        ck_assert_uint_eq(o.max_dirty, UINT64_C(64) << 20);
        ck_assert(o.writeback_async);
        ck_assert_uint_eq(o.async_delay_ms, 2500);
        ck_assert_uint_eq(o.retry_budget_ms, 30000);
        ck_assert_uint_eq(o.retry_delay_ms, 50);
        ck_assert_uint_eq(o.max_requests, 8);
        ck_assert_uint_eq(o.transfer_threads, 0);
        ck_assert_str_eq(o.imds, "http://127.0.0.1:9");
        ck_assert_str_eq(o.fuse_opts, "rw,nosuid"); /* the rest is mount(8)'s and systemd's */
}
END_TEST

START_TEST(test_options_refused) {
        static const char *const bad[] = {
                "colour=blue",
                "uid=-1",
                "file_mode=999",
                "file_mode=4755",
                "dir_mode=2775",
                "writeback=later",
                "cache_dir=rel",
                "max_dirty=1M",
                "cache_size=5X",
                "attr_timeout=-1",
                "imds=ftp://x",
                "users_dir=a/b",
                "retry_budget=0",
                "retry_delay=0",
                "retry_delay=61",
                "max_requests=0",
                "transfer_threads=17",
                "transfer_threads=-1",
                "bogus"};
        for (size_t k = 0; k < ELEMENTSOF(bad); k++) {
                fs_options_done(&o);
                fs_options_init(&o);
                free(err);
                err = NULL;
                ck_assert_msg(
                        parse((const char *[]){
                                "azfilesfs", "http://h/a/s", "/m", "-o", bad[k], NULL}) == -EINVAL,
                        "%s accepted", bad[k]);
                ck_assert_ptr_nonnull(err);
        }
        fs_options_done(&o);
        fs_options_init(&o);
        ck_assert_int_eq(parse((const char *[]){"azfilesfs", "http://h/a/s", "/m", NULL}), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "credentials"));
        ck_assert_int_eq(parse((const char *[]){"azfilesfs", "http://h/a/s", NULL}), -EINVAL);
        ck_assert_int_eq(parse((const char *[]){"azfilesfs", "--help", NULL}), 0);
        ck_assert(o.help);
}
END_TEST

START_TEST(test_credentials) {
        FsCredentials c = {};

        ck_assert_int_eq(
                fs_credentials_parse(
                        "/c", "[storage]\naccount_key = Zm9vYmFy\n", 0, 0100600, 0, &c, &err),
                0);
        ck_assert_int_eq(c.auth, REST_AUTH_SHARED_KEY);
        ck_assert_uint_eq(c.key_size, 6);
        ck_assert(memcmp(c.key, "foobar", 6) == 0);
        fs_credentials_done(&c);

        ck_assert_int_eq(
                fs_credentials_parse(
                        "/c", "[storage]\nsas_token = ?sv=1&sig=2\n", 1000, 0100400, 1000, &c,
                        &err),
                0);
        ck_assert_int_eq(c.auth, REST_AUTH_SAS);
        ck_assert_str_eq(c.sas_token, "sv=1&sig=2");
        fs_credentials_done(&c);

        /* A token longer than the INI reader's line (198 bytes), over indented lines. */
        {
                char part[151], text[512], whole[2 * 150 + 1];
                memset(part, 'x', 150);
                part[150] = '\0';
                (void)snprintf(
                        text, sizeof(text), "[storage]\nsas_token = ?%s\n  %s\n", part, part);
                (void)snprintf(whole, sizeof(whole), "%s%s", part, part);
                ck_assert_int_eq(fs_credentials_parse("/c", text, 0, 0100600, 0, &c, &err), 0);
                ck_assert_str_eq(c.sas_token, whole);
                fs_credentials_done(&c);
                /* On one line: refused, saying why and where. */
                (void)snprintf(text, sizeof(text), "[storage]\nsas_token = %s%s\n", part, part);
                ck_assert_int_eq(
                        fs_credentials_parse("/c", text, 0, 0100600, 0, &c, &err), -EINVAL);
                ck_assert_msg(strstr(err, "/c:2: line longer than 198 bytes"), "%s", err);
                ck_assert_ptr_null(strstr(err, part));
        }

        ck_assert_int_eq(
                fs_credentials_parse(
                        "/c", "[storage]\nmanaged_identity = yes\nclient_id = abc\n", 0, 0100600, 0,
                        &c, &err),
                0);
        ck_assert_int_eq(c.auth, REST_AUTH_BEARER);
        ck_assert_str_eq(c.client_id, "abc");
        fs_credentials_done(&c);
}
END_TEST

START_TEST(test_credentials_refused) {
        FsCredentials c = {};

        /* readable by group or others, owned by someone else: named in the message */
        ck_assert_int_eq(
                fs_credentials_parse(
                        "/etc/c1", "[storage]\naccount_key = Zm9v\n", 0, 0100644, 0, &c, &err),
                -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "/etc/c1"));
        ck_assert_int_eq(
                fs_credentials_parse(
                        "/etc/c2", "[storage]\naccount_key = Zm9v\n", 0, 0100660, 0, &c, &err),
                -EINVAL);
        ck_assert_int_eq(
                fs_credentials_parse(
                        "/etc/c3", "[storage]\naccount_key = Zm9v\n", 1234, 0100600, 0, &c, &err),
                -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "/etc/c3"));
        /* none, two, unknown keys and sections, a bad key */
        static const char *const bad[] = {
                "[storage]\n",
                "[storage]\naccount_key = Zm9v\nsas_token = sv=1\n",
                "[storage]\naccount_key = Zm9v\naccount_key = Zm9v\n",
                "[storage]\naccount_key = Zm9v\ncolour = blue\n",
                /* a key pasted without its name, or without its "=": never in the message */
                "[storage]\nZm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4==\n",
                "[storage]\naccount_key Zm9vYmFy==\n",
                "[other]\naccount_key = Zm9v\n",
                "[storage]\naccount_key = not base64!\n",
                "[storage]\nmanaged_identity = maybe\n",
                "[storage]\naccount_key = Zm9v\nclient_id = x\n",
                "no section\n",
        };
        for (size_t k = 0; k < ELEMENTSOF(bad); k++) {
                ck_assert_msg(
                        fs_credentials_parse("/c", bad[k], 0, 0100600, 0, &c, &err) == -EINVAL,
                        "accepted: %s", bad[k]);
                ck_assert_ptr_nonnull(err);
                /* never the secret in the message */
                ck_assert_ptr_null(strstr(err, "Zm9v"));
        }
}
END_TEST

/* What stands in the credentials file's place: a FIFO is refused at once (opening it blocked
 * the mount for ever, waiting for a writer), a symbolic link with a message that says so. */
START_TEST(test_credentials_not_a_file) {
        char dir[] = "/tmp/test-fs-options.XXXXXX";
        _cleanup_free_ char *fifo = NULL, *link = NULL;
        FsCredentials c = {};

        ck_assert_ptr_nonnull(mkdtemp(dir));
        ck_assert_int_ge(asprintf(&fifo, "%s/fifo", dir), 0);
        ck_assert_int_ge(asprintf(&link, "%s/link", dir), 0);
        ck_assert_int_eq(mkfifo(fifo, 0600), 0);
        ck_assert_int_eq(fs_credentials_load(fifo, &c, &err), -EINVAL);
        ck_assert_msg(strstr(err, "not a regular file"), "%s", err);
        free(err);
        err = NULL;
        ck_assert_int_eq(symlink(fifo, link), 0);
        ck_assert_int_eq(fs_credentials_load(link, &c, &err), -EINVAL);
        ck_assert_msg(strstr(err, "symbolic link"), "%s", err);
        ck_assert_int_eq(unlink(link), 0);
        ck_assert_int_eq(unlink(fifo), 0);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(test_inode_table) {
        InodeTable *t = NULL;
        Inode *root, *dir, *f, *g, *displaced = NULL;
        char name[32];

        ck_assert_int_eq(inode_table_new(&t), 0);
        ck_assert_int_eq(inode_table_add(t, "", true, &root), 0);
        ck_assert_uint_eq(root->ino, FS_ROOT_INO);
        ck_assert_int_eq(inode_table_add(t, "Dir", true, &dir), 0);
        ck_assert_int_eq(inode_table_add(t, "Dir/File.txt", false, &f), 0);
        ck_assert_int_eq(inode_table_add(t, "other", false, &g), 0);
        /* case-insensitive lookup, case-preserving paths */
        ck_assert_ptr_eq(inode_table_find(t, "dir/FILE.TXT"), f);
        ck_assert_str_eq(f->path, "Dir/File.txt");
        ck_assert_ptr_eq(inode_table_get(t, f->ino), f);
        /* renaming a directory moves everything below */
        ck_assert_int_eq(inode_table_rename(t, dir, "New", &displaced), 0);
        ck_assert_ptr_null(displaced);
        ck_assert_str_eq(f->path, "New/File.txt");
        ck_assert_ptr_eq(inode_table_find(t, "new/file.txt"), f);
        ck_assert_ptr_null(inode_table_find(t, "Dir/File.txt"));
        /* renaming over an entry displaces it (no longer found by path, still by number) */
        ck_assert_int_eq(inode_table_rename(t, g, "New/file.TXT", &displaced), 0);
        ck_assert_ptr_eq(displaced, f);
        ck_assert(f->unlinked);
        ck_assert_ptr_eq(inode_table_find(t, "new/file.txt"), g);
        ck_assert_ptr_eq(inode_table_get(t, f->ino), f);
        /* growth keeps everything findable */
        for (unsigned k = 0; k < 5000; k++) {
                Inode *x;
                (void)snprintf(name, sizeof(name), "n%u", k);
                ck_assert_int_eq(inode_table_add(t, name, false, &x), 0);
        }
        ck_assert_ptr_eq(
                inode_table_find(t, "N4999"),
                inode_table_get(t, inode_table_find(t, "n4999")->ino));
        ck_assert_ptr_eq(inode_table_find(t, "NEW/FILE.TXT"), g);
        ck_assert_ptr_null(inode_table_find(t, "Dir/File.txt"));
        ck_assert_uint_eq(inode_table_size(t), 5004);
        inode_table_remove(t, f);
        inode_free(f);
        ck_assert_uint_eq(inode_table_size(t), 5003);
        t = inode_table_free(t);
}
END_TEST

START_TEST(test_paths) {
        char *p = NULL;
        ck_assert_int_eq(fs_path_join("", "a", &p), 0);
        ck_assert_str_eq(p, "a");
        free(p);
        ck_assert_int_eq(fs_path_join("a/b", "c d", &p), 0);
        ck_assert_str_eq(p, "a/b/c d");
        free(p);
        ck_assert(fs_path_has_prefix("Users/alice/x", "users", false));
        ck_assert(!fs_path_has_prefix("Usersx/alice", "Users", false));
        ck_assert(!fs_path_has_prefix("Users", "Users", false));
        ck_assert(fs_path_has_prefix("Users", "users", true));
        ck_assert_uint_eq(fs_path_hash("ABC"), fs_path_hash("abc"));
}
END_TEST

int main(void) {
        Suite *s = suite_create("fs-options");
        TCase *tc = tcase_create("options");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_source_host_style);
        tcase_add_test(tc, test_source_path_style);
        tcase_add_test(tc, test_options);
        tcase_add_test(tc, test_options_refused);
        tcase_add_test(tc, test_credentials);
        tcase_add_test(tc, test_credentials_refused);
        tcase_add_test(tc, test_credentials_not_a_file);
        suite_add_tcase(s, tc);
        tc = tcase_create("inodes");
        tcase_add_test(tc, test_inode_table);
        tcase_add_test(tc, test_paths);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
