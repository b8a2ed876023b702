/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <check.h>

#include "conf.h"

/* ---- helpers -------------------------------------------------------------------------------- */

/* Parses text as file "t.conf" on top of the defaults; returns the result and the error text. */
static int parse(const char *text, Config **ret_config, char **ret_error) {
        Config *c = NULL;
        char *error = NULL;
        int r;

        ck_assert_int_eq(config_new(&c), 0);
        r = config_parse_text(c, text, "t.conf", &error);
        if (r >= 0)
                r = config_verify(c, &error);
        if (ret_config)
                *ret_config = c;
        else
                config_free(c);
        if (ret_error)
                *ret_error = error;
        else
                free(error);
        return r;
}

/* Asserts that text fails and that the error text contains want. */
static void expect_error(const char *text, const char *want) {
        char *error = NULL;
        int r = parse(text, NULL, &error);

        ck_assert_msg(r == -EINVAL, "accepted:\n%s", text);
        ck_assert_ptr_nonnull(error);
        ck_assert_msg(strstr(error, want), "error '%s' lacks '%s'", error, want);
        free(error);
}

static char *make_tmpdir(void) {
        char *d = strdup("/tmp/test-conf-XXXXXX");

        ck_assert_ptr_nonnull(d);
        ck_assert_ptr_nonnull(mkdtemp(d));
        return d;
}

static void write_file(const char *dir, const char *name, const char *text) {
        char path[512];
        FILE *f;

        (void)snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(fputs(text, f) >= 0, 1);
        ck_assert_int_eq(fclose(f), 0);
}

static void rm_rf(const char *dir) {
        char cmd[600];

        (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
}

/* ---- value parsers -------------------------------------------------------------------------- */

START_TEST(test_parse_bool) {
        const char *why = NULL;
        bool b = false;

        ck_assert_int_eq(conf_parse_bool("yes", &b, NULL, &why), 0);
        ck_assert(b);
        ck_assert_int_eq(conf_parse_bool("OFF", &b, NULL, &why), 0);
        ck_assert(!b);
        ck_assert_int_eq(conf_parse_bool("1", &b, NULL, &why), 0);
        ck_assert(b);
        ck_assert_int_eq(conf_parse_bool("yess", &b, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_bool("", &b, NULL, &why), -EINVAL);
        ck_assert_ptr_nonnull(why);
        ck_assert(b);
}
END_TEST

START_TEST(test_parse_uint) {
        static const ConfRange range = {1, 100};
        const char *why = NULL;
        uint64_t v = 7;

        ck_assert_int_eq(conf_parse_uint("100", &v, &range, &why), 0);
        ck_assert_uint_eq(v, 100);
        ck_assert_int_eq(conf_parse_uint("101", &v, &range, &why), -ERANGE);
        ck_assert_int_eq(conf_parse_uint("0", &v, &range, &why), -ERANGE);
        ck_assert_int_eq(conf_parse_uint("-1", &v, &range, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_uint("+5", &v, &range, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_uint("5 ", &v, &range, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_uint("0x10", &v, &range, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_uint("99999999999999999999", &v, NULL, &why), -ERANGE);
        ck_assert_int_eq(conf_parse_uint("18446744073709551615", &v, NULL, &why), 0);
        ck_assert_uint_eq(v, UINT64_MAX);
}
END_TEST

START_TEST(test_parse_size) {
        const char *why = NULL;
        uint64_t v = 0;

        ck_assert_int_eq(conf_parse_size("512", &v, NULL, &why), 0);
        ck_assert_uint_eq(v, 512);
        ck_assert_int_eq(conf_parse_size("5G", &v, NULL, &why), 0);
        ck_assert_uint_eq(v, UINT64_C(5) << 30);
        ck_assert_int_eq(conf_parse_size("100M", &v, NULL, &why), 0);
        ck_assert_uint_eq(v, UINT64_C(100) << 20);
        ck_assert_int_eq(conf_parse_size("4K", &v, NULL, &why), 0);
        ck_assert_uint_eq(v, 4096);
        ck_assert_int_eq(conf_parse_size("1.5G", &v, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_size("5X", &v, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_size("G", &v, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_size("1G 1M", &v, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_size("99999999999T", &v, NULL, &why), -ERANGE);
        ck_assert_uint_eq(v, 4096);
}
END_TEST

START_TEST(test_parse_duration) {
        static const ConfRange range = {USEC_PER_SEC, 3600 * USEC_PER_SEC};
        const char *why = NULL;
        uint64_t v = 0;

        ck_assert_int_eq(conf_parse_duration("30s", &v, NULL, &why), 0);
        ck_assert_uint_eq(v, 30 * USEC_PER_SEC);
        ck_assert_int_eq(conf_parse_duration("5min", &v, NULL, &why), 0);
        ck_assert_uint_eq(v, 300 * USEC_PER_SEC);
        ck_assert_int_eq(conf_parse_duration("1min 30s", &v, NULL, &why), 0);
        ck_assert_uint_eq(v, 90 * USEC_PER_SEC);
        ck_assert_int_eq(conf_parse_duration("250ms", &v, NULL, &why), 0);
        ck_assert_uint_eq(v, 250000);
        ck_assert_int_eq(conf_parse_duration("12", &v, NULL, &why), 0);
        ck_assert_uint_eq(v, 12 * USEC_PER_SEC);
        ck_assert_int_eq(conf_parse_duration("1h", &v, &range, &why), 0);
        ck_assert_int_eq(conf_parse_duration("2d", &v, &range, &why), -ERANGE);
        ck_assert_int_eq(conf_parse_duration("500ms", &v, &range, &why), -ERANGE);
        ck_assert_int_eq(conf_parse_duration("5 minutes", &v, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_duration("", &v, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_duration("-5s", &v, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_duration("s", &v, NULL, &why), -EINVAL);
        ck_assert_uint_eq(v, 3600 * USEC_PER_SEC);
}
END_TEST

START_TEST(test_parse_paths) {
        static const char *const bad_abs[] = {"",        "/",    "relative", "/a//b", "/a/",
                                              "/a/../b", "/./a", "//a",      "/a\tb"};
        static const char *const bad_rel[] = {"", "/abs", "a/../b", "..", "a//b", "a/"};
        static const char *const bad_name[] = {"", "a/b", ".", ".."};
        const char *why = NULL;
        char *s = NULL;

        ck_assert_int_eq(conf_parse_path("/srv/workspace", &s, NULL, &why), 0);
        ck_assert_str_eq(s, "/srv/workspace");
        for (size_t i = 0; i < ELEMENTSOF(bad_abs); i++)
                ck_assert_msg(
                        conf_parse_path(bad_abs[i], &s, NULL, &why) == -EINVAL, "accepted '%s'",
                        bad_abs[i]);
        ck_assert_int_eq(conf_parse_relative_path("work/notebooks", &s, NULL, &why), 0);
        ck_assert_str_eq(s, "work/notebooks");
        for (size_t i = 0; i < ELEMENTSOF(bad_rel); i++)
                ck_assert_msg(
                        conf_parse_relative_path(bad_rel[i], &s, NULL, &why) == -EINVAL,
                        "accepted '%s'", bad_rel[i]);
        ck_assert_int_eq(conf_parse_filename("remote", &s, NULL, &why), 0);
        ck_assert_str_eq(s, "remote");
        for (size_t i = 0; i < ELEMENTSOF(bad_name); i++)
                ck_assert_msg(
                        conf_parse_filename(bad_name[i], &s, NULL, &why) == -EINVAL,
                        "accepted '%s'", bad_name[i]);
        ck_assert_str_eq(s, "remote");
        free(s);
}
END_TEST

START_TEST(test_parse_url) {
        const char *why = NULL;
        char *s = NULL;

        ck_assert_int_eq(
                conf_parse_url("https://acct.file.core.windows.net/share", &s, NULL, &why), 0);
        ck_assert_str_eq(s, "https://acct.file.core.windows.net/share");
        ck_assert_int_eq(
                conf_parse_url("http://127.0.0.1:10000/devstoreaccount1/share/dir", &s, NULL, &why),
                0);
        ck_assert_int_eq(conf_parse_url("ftp://x/share", &s, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_url("https://", &s, NULL, &why), -EINVAL);
        ck_assert_int_eq(
                conf_parse_url("https://acct.file.core.windows.net", &s, NULL, &why), -EINVAL);
        ck_assert_int_eq(
                conf_parse_url("https://acct.file.core.windows.net/", &s, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_url("https://a b/share", &s, NULL, &why), -EINVAL);
        ck_assert_str_eq(s, "http://127.0.0.1:10000/devstoreaccount1/share/dir");
        ck_assert_int_eq(conf_parse_url("", &s, NULL, &why), 0);
        ck_assert_ptr_null(s);
}
END_TEST

START_TEST(test_parse_users_groups) {
        const char *why = NULL;
        char **l = calloc(1, sizeof(char *));
        char *g = NULL;
        UidRange range = {};

        ck_assert_int_eq(conf_parse_user_list("alice bob.smith  svc-backup", &l, NULL, &why), 0);
        ck_assert_str_eq(l[0], "alice");
        ck_assert_str_eq(l[1], "bob.smith");
        ck_assert_str_eq(l[2], "svc-backup");
        ck_assert_ptr_null(l[3]);
        ck_assert_int_eq(conf_parse_user_list("alice ../etc", &l, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_user_list("alice 1234", &l, NULL, &why), -EINVAL);
        ck_assert_str_eq(l[0], "alice");
        ck_assert_int_eq(conf_parse_user_list("", &l, NULL, &why), 0);
        ck_assert_ptr_null(l[0]);
        free(l);

        ck_assert_int_eq(conf_parse_group_name("pool-admins", &g, NULL, &why), 0);
        ck_assert_str_eq(g, "pool-admins");
        ck_assert_int_eq(conf_parse_group_name("bad group", &g, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_group_name("-x", &g, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_group_name("", &g, NULL, &why), 0);
        ck_assert_ptr_null(g);

        ck_assert_int_eq(conf_parse_uid_range("1000-59999", &range, NULL, &why), 0);
        ck_assert_uint_eq(range.min, 1000);
        ck_assert_uint_eq(range.max, 59999);
        ck_assert_int_eq(conf_parse_uid_range("5000-5000", &range, NULL, &why), 0);
        ck_assert_int_eq(conf_parse_uid_range("0-100", &range, NULL, &why), -ERANGE);
        ck_assert_int_eq(conf_parse_uid_range("200-100", &range, NULL, &why), -ERANGE);
        ck_assert_int_eq(conf_parse_uid_range("1000-4294967295", &range, NULL, &why), -ERANGE);
        ck_assert_int_eq(conf_parse_uid_range("1000", &range, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_uid_range("1000 - 2000", &range, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_uid_range("-2000", &range, NULL, &why), -EINVAL);
        ck_assert_uint_eq(range.min, 5000);

        ck_assert(conf_valid_user_name("a"));
        ck_assert(conf_valid_user_name("machine$"));
        ck_assert(!conf_valid_user_name("$"));
        ck_assert(!conf_valid_user_name("a/b"));
        ck_assert(!conf_valid_user_name("0123"));
        ck_assert(!conf_valid_user_name("a23456789012345678901234567890123"));
        ck_assert(!conf_valid_user_name("ü"));
}
END_TEST

START_TEST(test_parse_enum_mode) {
        const char *why = NULL;
        int level = -1;
        mode_t m = 0;

        ck_assert_int_eq(conf_parse_log_level("debug", &level, NULL, &why), 0);
        ck_assert_int_eq(level, LOG_DEBUG);
        ck_assert_int_eq(conf_parse_log_level("Warning", &level, NULL, &why), 0);
        ck_assert_int_eq(level, LOG_WARNING);
        ck_assert_int_eq(conf_parse_log_level("verbose", &level, NULL, &why), -EINVAL);
        ck_assert_int_eq(level, LOG_WARNING);

        ck_assert_int_eq(conf_parse_mode("0750", &m, NULL, &why), 0);
        ck_assert_uint_eq(m, 0750);
        ck_assert_int_eq(conf_parse_mode("700", &m, NULL, &why), 0);
        ck_assert_uint_eq(m, 0700);
        ck_assert_int_eq(conf_parse_mode("4755", &m, NULL, &why), -ERANGE);
        ck_assert_int_eq(conf_parse_mode("0780", &m, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_mode("u+rwx", &m, NULL, &why), -EINVAL);
        ck_assert_uint_eq(m, 0700);
}
END_TEST

/* ---- files: values and every error path ----------------------------------------------------- */

START_TEST(test_defaults_and_values) {
        Config *c = NULL;
        char *error = NULL;

        ck_assert_int_eq(parse("", &c, &error), 0);
        ck_assert_ptr_null(error);
        ck_assert_int_eq(c->log_level, LOG_INFO);
        ck_assert_str_eq(c->control_socket, "/run/poolagent/control.sock");
        ck_assert_ptr_null(c->source);
        ck_assert_str_eq(c->notebooks_directory, "notebooks");
        ck_assert_str_eq(c->link_name, "remote");
        ck_assert_uint_eq(c->stat_timeout_usec, 5 * USEC_PER_SEC);
        ck_assert_uint_eq(c->user_directory_mode, 0700);
        config_free(c);

        ck_assert_int_eq(
                parse("# comment\n; comment\n[Agent]\n  LogLevel = debug ; why not\n"
                      "AdminGroup=pool-admins\r\n"
                      "[Workspace]\nSource=https://a.file.core.windows.net/s\nCredentials=/etc/poolagent/s.cred\n"
                      "StatTimeout=2s\n[Users]\nDeny=alice bob\nUIDRange=2000-3000\n[Agent]\nStateDirectory=/var/lib/x\n",
                      &c, &error),
                0);
        ck_assert_ptr_null(error);
        ck_assert_int_eq(c->log_level, LOG_DEBUG);
        ck_assert_str_eq(c->admin_group, "pool-admins");
        ck_assert_str_eq(c->source, "https://a.file.core.windows.net/s");
        ck_assert_uint_eq(c->stat_timeout_usec, 2 * USEC_PER_SEC);
        ck_assert_str_eq(c->deny[1], "bob");
        ck_assert_uint_eq(c->uid_range.min, 2000);
        ck_assert_str_eq(c->state_directory, "/var/lib/x");
        config_free(c);
}
END_TEST

START_TEST(test_errors_name_file_and_line) {
        expect_error(
                "[Workspace]\n\nMountpoint=/x\n",
                "t.conf:3: unknown key 'Mountpoint' in [Workspace] (did you mean 'MountPoint'?)");
        expect_error(
                "[Workspace]\nStatTimeOut=5s\n",
                "t.conf:2: unknown key 'StatTimeOut' in [Workspace] (did you mean 'StatTimeout'?)");
        expect_error("[Agent]\nFrobnicate=1\n", "t.conf:2: unknown key 'Frobnicate' in [Agent]");
        expect_error(
                "[Agnet]\nLogLevel=info\n",
                "t.conf:2: unknown section [Agnet] (did you mean [Agent]?)");
        expect_error("[Nope]\nX=1\n", "t.conf:2: unknown section [Nope]");
        expect_error("LogLevel=info\n", "t.conf:1: key 'LogLevel' outside of any [Section]");
        expect_error(
                "[Agent]\nLogLevel=info\n#\nLogLevel=debug\n",
                "t.conf:4: duplicate key 'LogLevel' in [Agent] (first set on line 2)");
        expect_error(
                "[Agent]\nLogLevel=info\n[Users]\n[Agent]\nLogLevel=debug\n",
                "t.conf:5: duplicate key 'LogLevel'");
        expect_error(
                "[Agent]\nLogLevel=loud\n",
                "t.conf:2: invalid value 'loud' for key 'LogLevel' in [Agent]: expected one of");
        expect_error(
                "[Workspace]\nStatTimeout=1h\n",
                "t.conf:2: invalid value '1h' for key 'StatTimeout' in [Workspace]: value out of range");
        expect_error(
                "[Workspace]\nMountPoint=relative\n",
                "t.conf:2: invalid value 'relative' for key 'MountPoint'");
        expect_error(
                "[Users]\nUIDRange=0-100\n",
                "t.conf:2: invalid value '0-100' for key 'UIDRange' in [Users]: UID range must not include root");
        expect_error("[Users]\nLinkName=\n", "t.conf:2: invalid value '' for key 'LinkName'");
        expect_error(
                "[Agent]\nLogLevel=debug # not a comment\n",
                "t.conf:2: invalid value 'debug # not a comment'");
        expect_error("[Agent\nLogLevel=info\n", "t.conf:1: syntax error");
        expect_error("[Agent]\nLogLevel=info\njust words\n", "t.conf:3: syntax error");
        /* An indented line is not a continuation of the previous value. */
        expect_error("[Users]\nDeny=alice\n  bob\n", "t.conf:3: syntax error");
        expect_error(
                "[Workspace]\nSource=https://a.file.core.windows.net/s\n",
                "t.conf:2: missing required key 'Credentials' in [Workspace]");
        expect_error(
                "[Workspace]\nMountPoint=/srv/ws\nCacheDirectory=/srv/ws/cache\n",
                "t.conf:3: [Workspace] CacheDirectory=/srv/ws/cache and MountPoint=/srv/ws overlap");
        expect_error(
                "[Workspace]\nCacheDirectory=/srv\n",
                "t.conf:2: [Workspace] CacheDirectory=/srv and MountPoint=/srv/workspace overlap");
        expect_error(
                "[Workspace]\nSource=https://a.file.core.windows.net/s\nMountPoint=/srv/ws\nCredentials=/srv/ws/key\n",
                "t.conf:4: [Workspace] Credentials=/srv/ws/key lies inside MountPoint=/srv/ws");
}
END_TEST

START_TEST(test_all_errors_reported) {
        char *error = NULL;

        ck_assert_int_eq(parse("[Agent]\nA=1\nB=2\n[Users]\nC=3\n", NULL, &error), -EINVAL);
        ck_assert_ptr_nonnull(strstr(error, "t.conf:2: unknown key 'A'"));
        ck_assert_ptr_nonnull(strstr(error, "t.conf:3: unknown key 'B'"));
        ck_assert_ptr_nonnull(strstr(error, "t.conf:5: unknown key 'C' in [Users]"));
        free(error);
}
END_TEST

START_TEST(test_error_cap) {
        char text[8192] = "[Agent]\n";
        char *error = NULL;
        size_t n = strlen(text);

        for (int i = 0; i < 100; i++)
                n += (size_t)snprintf(text + n, sizeof(text) - n, "K%d=1\n", i);
        ck_assert_int_eq(parse(text, NULL, &error), -EINVAL);
        ck_assert_msg(strstr(error, "(68 more errors not shown)"), "%s", error);
        ck_assert_ptr_null(strstr(error, "K40"));
        free(error);
}
END_TEST

START_TEST(test_long_line) {
        char text[1024] = "[Agent]\nLogLevel=info\nAdminGroup=";
        char *error = NULL;
        size_t n = strlen(text);

        memset(text + n, 'a', 300);
        memcpy(text + n + 300, "\n", 2);
        ck_assert_int_eq(parse(text, NULL, &error), -EINVAL);
        ck_assert_msg(strstr(error, "t.conf:3: line too long"), "%s", error);
        free(error);
}
END_TEST

START_TEST(test_files_and_dropins) {
        _cleanup_free_ char *dir = make_tmpdir();
        char main_path[512], dropins[512], *error = NULL;
        Config *c = NULL;

        (void)snprintf(main_path, sizeof(main_path), "%s/poolagent.conf", dir);
        (void)snprintf(dropins, sizeof(dropins), "%s/poolagent.conf.d", dir);

        /* No files at all: defaults, unless the main file was asked for explicitly. */
        ck_assert_int_eq(config_load(main_path, false, dropins, &c, &error), 0);
        ck_assert_ptr_null(c->files[0]);
        config_free(c);
        c = NULL;
        ck_assert_int_eq(config_load(main_path, true, dropins, &c, &error), -EINVAL);
        ck_assert_msg(
                strstr(error, "poolagent.conf: cannot read: No such file or directory"), "%s",
                error);
        ck_assert_ptr_null(c);
        free(error);
        error = NULL;

        write_file(
                dir, "poolagent.conf",
                "[Agent]\nLogLevel=info\nAdminGroup=wheel\n[Users]\nDeny=alice\n");
        ck_assert_int_eq(mkdir(dropins, 0755), 0);
        write_file(dropins, "20-b.conf", "[Agent]\nLogLevel=debug\n");
        write_file(dropins, "10-a.conf", "[Agent]\nLogLevel=warning\n[Users]\nDeny=\n");
        write_file(dropins, "30-c.conf.disabled", "garbage\n");
        write_file(dropins, ".hidden.conf", "garbage\n");
        ck_assert_int_eq(config_load(main_path, true, dropins, &c, &error), 0);
        ck_assert_ptr_null(error);
        ck_assert_int_eq(c->log_level, LOG_DEBUG); /* 20-b wins over 10-a wins over main */
        ck_assert_str_eq(c->admin_group, "wheel");
        ck_assert_ptr_null(c->deny[0]); /* cleared by 10-a */
        ck_assert_ptr_nonnull(strstr(c->files[1], "10-a.conf"));
        ck_assert_ptr_nonnull(strstr(c->files[2], "20-b.conf"));
        ck_assert_ptr_null(c->files[3]);
        config_free(c);
        c = NULL;

        /* An error in a drop-in names the drop-in and the line. */
        write_file(dropins, "15-x.conf", "# team settings\n[Workspace]\nMountpoint=/x\n");
        ck_assert_int_eq(config_load(main_path, true, dropins, &c, &error), -EINVAL);
        ck_assert_msg(
                strstr(error,
                       "poolagent.conf.d/15-x.conf:3: unknown key 'Mountpoint' in [Workspace] (did you mean 'MountPoint'?)"),
                "%s", error);
        ck_assert_ptr_null(c);
        free(error);
        error = NULL;

        /* A key may appear once per file but again in a later file. */
        write_file(dropins, "15-x.conf", "[Agent]\nAdminGroup=\n");
        ck_assert_int_eq(config_load(main_path, true, dropins, &c, &error), 0);
        ck_assert_ptr_null(c->admin_group);
        config_free(c);
        c = NULL;

        /* Unreadable content. */
        {
                char big[CONF_FILE_MAX + 2];
                memset(big, '#', sizeof(big) - 1);
                big[sizeof(big) - 1] = '\0';
                write_file(dropins, "15-x.conf", big);
        }
        ck_assert_int_eq(config_load(main_path, true, dropins, &c, &error), -EINVAL);
        ck_assert_msg(strstr(error, "15-x.conf: cannot read: file too large"), "%s", error);
        free(error);
        error = NULL;
        {
                char path[600];
                int fd;
                (void)snprintf(path, sizeof(path), "%s/15-x.conf", dropins);
                fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
                ck_assert_int_ge(fd, 0);
                ck_assert_int_eq(write(fd, "[Agent]\0\n", 9), 9);
                ck_assert_int_eq(close(fd), 0);
        }
        ck_assert_int_eq(config_load(main_path, true, dropins, &c, &error), -EINVAL);
        ck_assert_msg(
                strstr(error, "15-x.conf: cannot read: file contains a NUL byte"), "%s", error);
        free(error);
        error = NULL;

        rm_rf(dir);
}
END_TEST

/* ---- the shipped file ----------------------------------------------------------------------- */

static char *read_shipped(void) {
        const char *data = getenv("TEST_DATA_DIR");
        char path[1024], *text;
        FILE *f;
        long n;

        ck_assert_ptr_nonnull(data);
        (void)snprintf(path, sizeof(path), "%s/../../conf/poolagent.conf", data);
        f = fopen(path, "re");
        ck_assert_msg(f != NULL, "cannot open %s", path);
        ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
        n = ftell(f);
        ck_assert_int_gt(n, 0);
        rewind(f);
        text = calloc(1, (size_t)n + 1);
        ck_assert_ptr_nonnull(text);
        ck_assert_uint_eq(fread(text, 1, (size_t)n, f), (size_t)n);
        ck_assert_int_eq(fclose(f), 0);
        return text;
}

START_TEST(test_shipped_file_parses) {
        _cleanup_free_ char *text = read_shipped();
        Config *c = NULL;
        char *error = NULL;

        ck_assert_int_eq(parse(text, &c, &error), 0);
        ck_assert_ptr_null(error);
        config_free(c);
}
END_TEST

/* Every key in the table appears as "#Key=" in its section, and uncommenting all of them gives
 * exactly the built-in defaults. */
START_TEST(test_shipped_file_documents_every_key_at_default) {
        _cleanup_free_ char *text = read_shipped();
        _cleanup_free_ char *uncommented = calloc(1, strlen(text) + 1);
        const char *section, *key;
        Config *defaults = NULL, *c = NULL;
        char *error = NULL, *line, *state = NULL, *out = uncommented;
        _cleanup_free_ char *copy = strdup(text);

        for (unsigned i = 0; config_table_get(i, &section, &key); i++) {
                char header[64], entry[64];
                const char *h, *e;
                (void)snprintf(header, sizeof(header), "\n[%s]\n", section);
                (void)snprintf(entry, sizeof(entry), "\n#%s=", key);
                h = strstr(text, header);
                ck_assert_msg(h, "section [%s] missing from conf/poolagent.conf", section);
                e = strstr(h, entry);
                ck_assert_msg(e, "key %s= missing from [%s] in conf/poolagent.conf", key, section);
                /* ... and before the next section */
                ck_assert_msg(
                        !strstr(h + 1, "\n[") || strstr(h + 1, "\n[") > e,
                        "key %s= documented outside [%s]", key, section);
        }

        for (line = strtok_r(copy, "\n", &state); line; line = strtok_r(NULL, "\n", &state)) {
                bool setting =
                        line[0] == '#' && line[1] >= 'A' && line[1] <= 'Z' && strchr(line, '=');
                size_t n = strlen(line + setting);
                memcpy(out, line + setting, n);
                out[n] = '\n';
                out += n + 1;
        }
        ck_assert_int_eq(config_new(&defaults), 0);
        ck_assert_msg(parse(uncommented, &c, &error) == 0, "%s", error);
        ck_assert_uint_eq(config_diff(defaults, c, NULL, NULL), 0);
        config_free(defaults);
        config_free(c);
}
END_TEST

/* [Jobs]: the defaults, values, and refusals naming file and line. */
START_TEST(test_jobs_section) {
        Config *c = NULL;

        ck_assert_int_eq(parse("", &c, NULL), 0);
        ck_assert(c->jobs_enabled);
        ck_assert_uint_eq(c->jobs_slots, 0);
        ck_assert_int_eq(c->jobs_gpus, CONF_JOBS_GPUS_AUTO);
        ck_assert_uint_eq(c->jobs_stop_grace_usec, 30 * USEC_PER_SEC);
        config_free(c);

        ck_assert_int_eq(
                parse("[Jobs]\nEnabled=no\nSlots=8\nGPUs=2\nStopGrace=1min 30s\n", &c, NULL), 0);
        ck_assert(!c->jobs_enabled);
        ck_assert_uint_eq(c->jobs_slots, 8);
        ck_assert_int_eq(c->jobs_gpus, 2);
        ck_assert_uint_eq(c->jobs_stop_grace_usec, 90 * USEC_PER_SEC);
        config_free(c);
        ck_assert_int_eq(parse("[Jobs]\nGPUs=none\n", &c, NULL), 0);
        ck_assert_int_eq(c->jobs_gpus, 0);
        config_free(c);

        expect_error(
                "[Jobs]\nSlots=-1\n", "t.conf:2: invalid value '-1' for key 'Slots' in [Jobs]");
        expect_error(
                "[Jobs]\nSlots=65537\n",
                "t.conf:2: invalid value '65537' for key 'Slots' in [Jobs]: value out of range");
        expect_error(
                "[Jobs]\n\nGPUs=65\n", "t.conf:3: invalid value '65' for key 'GPUs' in [Jobs]");
        expect_error(
                "[Jobs]\nStopGrace=0\n",
                "t.conf:2: invalid value '0' for key 'StopGrace' in [Jobs]: value out of range");
        expect_error(
                "[Jobs]\nSlot=4\n",
                "t.conf:2: unknown key 'Slot' in [Jobs] (did you mean 'Slots'?)");
        expect_error(
                "[Jobs]\nEnabled=maybe\n", "t.conf:2: invalid value 'maybe' for key 'Enabled'");
}
END_TEST

static void on_change(const char *section, const char *key, bool needs_restart, void *userdata) {
        char *seen = userdata;
        size_t n = strlen(seen);

        (void)snprintf(seen + n, 256 - n, "%s.%s%s ", section, key, needs_restart ? "!" : "");
}

START_TEST(test_diff) {
        Config *a = NULL, *b = NULL;
        char seen[256] = "";

        ck_assert_int_eq(parse("[Users]\nDeny=alice\n", &a, NULL), 0);
        ck_assert_int_eq(
                parse("[Agent]\nLogLevel=debug\nControlSocket=/run/x.sock\n[Users]\nDeny=alice bob\n",
                      &b, NULL),
                0);
        ck_assert_uint_eq(config_diff(a, b, on_change, seen), 3);
        ck_assert_str_eq(seen, "Agent.LogLevel Agent.ControlSocket! Users.Deny ");
        ck_assert_uint_eq(config_diff(a, a, on_change, seen), 0);
        config_free(a);
        config_free(b);
}
END_TEST

int main(void) {
        Suite *s = suite_create("conf");
        TCase *tc_values = tcase_create("values");
        TCase *tc_files = tcase_create("files");
        TCase *tc_shipped = tcase_create("shipped");
        SRunner *sr;
        int failed;

        tcase_add_test(tc_values, test_parse_bool);
        tcase_add_test(tc_values, test_parse_uint);
        tcase_add_test(tc_values, test_parse_size);
        tcase_add_test(tc_values, test_parse_duration);
        tcase_add_test(tc_values, test_parse_paths);
        tcase_add_test(tc_values, test_parse_url);
        tcase_add_test(tc_values, test_parse_users_groups);
        tcase_add_test(tc_values, test_parse_enum_mode);
        tcase_add_test(tc_files, test_defaults_and_values);
        tcase_add_test(tc_files, test_errors_name_file_and_line);
        tcase_add_test(tc_files, test_all_errors_reported);
        tcase_add_test(tc_files, test_error_cap);
        tcase_add_test(tc_files, test_long_line);
        tcase_add_test(tc_files, test_files_and_dropins);
        tcase_add_test(tc_files, test_diff);
        tcase_add_test(tc_files, test_jobs_section);
        tcase_add_test(tc_shipped, test_shipped_file_parses);
        tcase_add_test(tc_shipped, test_shipped_file_documents_every_key_at_default);
        suite_add_tcase(s, tc_values);
        suite_add_tcase(s, tc_files);
        suite_add_tcase(s, tc_shipped);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
