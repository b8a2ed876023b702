/* SPDX-License-Identifier: MIT */
/* The health state without I/O: the hysteresis step and whole sequences of cycles (no flapping
 * around a threshold, flips both ways after the configured counts), the overall verdict and
 * draining, sources replacing their checks, the published snapshot, the Prometheus text against a
 * golden file (tests/data/health-metrics.golden), the disk and workspace evaluations, and the
 * [Health] configuration keys. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <json-c/json.h>

#include "conf.h"
#include "disk-check.h"
#include "health.h"
#include "workspace-health.h"

static HealthCheck check(const char *name, const char *subject, HealthVerdict v, double value) {
        HealthCheck c;

        health_check_init(&c, name, subject, v);
        c.has_value = true;
        c.value = value;
        (void)snprintf(c.unit, sizeof(c.unit), "bytes");
        health_check_set_message(&c, "value %g", value);
        return c;
}

static HealthVerdict reported(Health *h, const char *name, const char *subject) {
        for (size_t i = 0; i < health_n_entries(h); i++) {
                const HealthEntry *e = health_get_entry(h, i);
                if (streq(e->check.name, name) && streq(e->check.subject, subject))
                        return e->reported;
        }
        return _HEALTH_VERDICT_INVALID;
}

/* ---- hysteresis ----------------------------------------------------------------------------- */

START_TEST(test_step) {
        /* Same verdict: nothing to do. */
        ck_assert_int_eq(health_hysteresis_step(HEALTH_OK, HEALTH_OK, 1, 2, 3), HEALTH_OK);
        /* From unknown: at once. */
        ck_assert_int_eq(
                health_hysteresis_step(HEALTH_UNKNOWN, HEALTH_UNHEALTHY, 1, 2, 3),
                HEALTH_UNHEALTHY);
        /* Worse: after unhealthy_after cycles. */
        ck_assert_int_eq(health_hysteresis_step(HEALTH_OK, HEALTH_UNHEALTHY, 1, 2, 3), HEALTH_OK);
        ck_assert_int_eq(
                health_hysteresis_step(HEALTH_OK, HEALTH_UNHEALTHY, 2, 2, 3), HEALTH_UNHEALTHY);
        ck_assert_int_eq(health_hysteresis_step(HEALTH_OK, HEALTH_UNKNOWN, 1, 2, 3), HEALTH_OK);
        /* Better: after healthy_after cycles. */
        ck_assert_int_eq(
                health_hysteresis_step(HEALTH_UNHEALTHY, HEALTH_OK, 2, 2, 3), HEALTH_UNHEALTHY);
        ck_assert_int_eq(health_hysteresis_step(HEALTH_UNHEALTHY, HEALTH_OK, 3, 2, 3), HEALTH_OK);
        ck_assert_int_eq(
                health_hysteresis_step(HEALTH_UNHEALTHY, HEALTH_WARNING, 3, 2, 3), HEALTH_WARNING);
        /* Counts of 0 act as 1. */
        ck_assert_int_eq(
                health_hysteresis_step(HEALTH_OK, HEALTH_WARNING, 1, 0, 0), HEALTH_WARNING);
}
END_TEST

/* One source's check driven through a sequence of raw verdicts; the reported ones must be as
 * expected at every cycle. */
static void run_sequence(const char *raw, const char *want) {
        Health *h = NULL;

        ck_assert_int_eq(health_new(&h), 0);
        health_set_hysteresis(h, 2, 3);
        for (size_t i = 0; raw[i]; i++) {
                HealthVerdict v = raw[i] == 'o'   ? HEALTH_OK
                                  : raw[i] == 'w' ? HEALTH_WARNING
                                  : raw[i] == 'u' ? HEALTH_UNHEALTHY
                                                  : HEALTH_UNKNOWN;
                HealthCheck c = check("disk_free_bytes", "/", v, (double)i);
                HealthVerdict r, expect = want[i] == 'o'   ? HEALTH_OK
                                          : want[i] == 'w' ? HEALTH_WARNING
                                          : want[i] == 'u' ? HEALTH_UNHEALTHY
                                                           : HEALTH_UNKNOWN;

                ck_assert_int_eq(health_set_checks(h, "disk", &c, 1), 0);
                r = reported(h, "disk_free_bytes", "/");
                ck_assert_msg(
                        r == expect, "raw %s: cycle %zu reported %s, expected %c", raw, i,
                        health_verdict_to_string(r), want[i]);
        }
        health_free(h);
}

START_TEST(test_sequences) {
        /* The first result at once; bad after 2, good after 3. */
        run_sequence("ouuuoooo", "oouuuuoo");
        /* Flapping around a threshold never flips the reported verdict. */
        run_sequence("ououououou", "oooooooooo");
        run_sequence("uuouoouooou", "uuuuuuuuuoo");
        /* A warning then unhealthy: each streak counts its own verdict. */
        run_sequence("owwuuwwwo", "oowwuuuww");
        /* Losing sight (unknown) needs the bad count too; regaining counts at once. */
        run_sequence("o??o", "oo?o");
}
END_TEST

START_TEST(test_overall_draining_sources) {
        Health *h = NULL;
        HealthCheck a = check("disk_free_bytes", "/", HEALTH_OK, 1),
                    b = check("gpu_count", "", HEALTH_UNKNOWN, 0), c[2];
        HealthSnapshot *s;
        size_t len;

        ck_assert_int_eq(health_new(&h), 0);
        health_set_hysteresis(h, 1, 1);
        ck_assert(health_is_healthy(h));
        ck_assert_int_eq(health_set_checks(h, "disk", &a, 1), 0);
        ck_assert_int_eq(health_set_checks(h, "gpu", &b, 1), 0);
        /* unknown alone does not make the VM unhealthy */
        ck_assert_int_eq(health_overall(h), HEALTH_OK);
        ck_assert(health_is_healthy(h));

        c[0] = check("disk_free_bytes", "/", HEALTH_WARNING, 1);
        c[1] = check("disk_free_bytes", "/tmp", HEALTH_UNHEALTHY, 1);
        ck_assert_int_eq(health_set_checks(h, "disk", c, 2), 0);
        ck_assert_int_eq(health_overall(h), HEALTH_UNHEALTHY);
        ck_assert(!health_is_healthy(h));
        ck_assert_ptr_nonnull(strstr(health_summary(h), "UNHEALTHY: disk_free_bytes /tmp"));
        /* sources keep their order; the disk source's checks come first */
        ck_assert_uint_eq(health_n_entries(h), 3);
        ck_assert_str_eq(health_get_entry(h, 2)->source, "gpu");

        s = health_snapshot_acquire(h);
        ck_assert(!health_snapshot_healthy(s));
        ck_assert_str_eq(
                health_snapshot_health_json(s, &len),
                "{\"ApplicationHealthState\":\"Unhealthy\"}\n");
        /* A later change does not alter a snapshot a reader holds. */
        ck_assert_int_eq(health_set_checks(h, "disk", &a, 1), 0);
        ck_assert(!health_snapshot_healthy(s));
        health_snapshot_release(s);
        ck_assert(health_is_healthy(h));

        /* Draining: not healthy whatever the checks say, and back. */
        health_set_draining(h, true);
        ck_assert(!health_is_healthy(h));
        s = health_snapshot_acquire(h);
        ck_assert(!health_snapshot_healthy(s));
        ck_assert_ptr_nonnull(strstr(health_snapshot_metrics(s, &len), "poolagent_draining 1\n"));
        health_snapshot_release(s);
        health_set_draining(h, false);
        ck_assert(health_is_healthy(h));

        /* A source with no checks is gone from the list. */
        ck_assert_int_eq(health_set_checks(h, "gpu", NULL, 0), 0);
        ck_assert_uint_eq(health_n_entries(h), 1);

        /* Bad input */
        ck_assert_int_eq(health_set_checks(h, "Bad Source", &a, 1), -EINVAL);
        a.name[0] = 'X';
        ck_assert_int_eq(health_set_checks(h, "disk", &a, 1), -EINVAL);
        ck_assert_int_eq(health_set_checks(h, "disk", &a, HEALTH_CHECKS_MAX + 1), -E2BIG);
        health_free(h);
}
END_TEST

START_TEST(test_status_json) {
        Health *h = NULL;
        HealthCheck a = check("disk_free_bytes", "/", HEALTH_OK, 5368709120.0);
        json_object *o = json_object_new_object(), *c;

        a.has_threshold = true;
        a.threshold_unhealthy = 5368709120.0;
        a.threshold_warning = 10737418240.0;
        ck_assert_int_eq(health_new(&h), 0);
        ck_assert_int_eq(health_set_checks(h, "disk", &a, 1), 0);
        ck_assert_int_eq(health_status_json(h, o), 0);
        c = json_object_array_get_idx(json_object_object_get(o, "checks"), 0);
        ck_assert_int_eq(json_object_get_int64(json_object_object_get(c, "value")), 5368709120);
        ck_assert_int_eq(
                json_object_get_int64(json_object_object_get(c, "threshold_warning")), 10737418240);
        ck_assert_str_eq(json_object_get_string(json_object_object_get(c, "verdict")), "ok");
        ck_assert_str_eq(json_object_get_string(json_object_object_get(o, "verdict")), "ok");
        json_object_put(o);
        health_free(h);
}
END_TEST

/* ---- metrics -------------------------------------------------------------------------------- */

static char *read_data(const char *name) {
        const char *dir = getenv("TEST_DATA_DIR");
        char path[1024], *buf;
        FILE *f;
        long n;

        ck_assert_ptr_nonnull(dir);
        (void)snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "re");
        ck_assert_msg(f != NULL, "cannot open %s", path);
        ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
        n = ftell(f);
        rewind(f);
        buf = calloc(1, (size_t)n + 1);
        ck_assert_ptr_nonnull(buf);
        ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
        (void)fclose(f);
        return buf;
}

START_TEST(test_metrics_golden) {
        HealthEntry e[5] = {};
        char *text = NULL, *golden;

        (void)snprintf(e[0].source, sizeof(e[0].source), "disk");
        e[0].check = check("disk_free_bytes", "/", HEALTH_WARNING, 7516192768.0);
        e[0].reported = HEALTH_WARNING;
        (void)snprintf(e[1].source, sizeof(e[1].source), "gpu");
        health_check_init(&e[1].check, "gpu_temperature_celsius", "GPU 0 \"a\\b\"\nc", HEALTH_OK);
        e[1].check.has_value = true;
        e[1].check.value = 61.5;
        e[1].reported = HEALTH_OK;
        (void)snprintf(e[2].source, sizeof(e[2].source), "disk");
        e[2].check = check("disk_free_bytes", "/tmp", HEALTH_OK, 1024);
        e[2].reported = HEALTH_OK;
        (void)snprintf(e[3].source, sizeof(e[3].source), "units");
        health_check_init(&e[3].check, "unit_active", "ssh.service", HEALTH_UNKNOWN);
        e[3].reported = HEALTH_UNKNOWN;
        (void)snprintf(e[4].source, sizeof(e[4].source), "disk");
        e[4].check = check("disk_free_inodes_ratio", "/", HEALTH_UNHEALTHY, 0.03125);
        (void)snprintf(e[4].check.unit, sizeof(e[4].check.unit), "ratio");
        e[4].reported = HEALTH_UNHEALTHY;

        ck_assert_int_eq(health_format_metrics(e, ELEMENTSOF(e), false, true, &text), 0);
        golden = read_data("health-metrics.golden");
        ck_assert_msg(streq(text, golden), "metrics differ from the golden file:\n%s", text);
        free(golden);
        free(text);
}
END_TEST

/* ---- disks and workspace -------------------------------------------------------------------- */

START_TEST(test_disk_evaluate) {
        DiskSpec spec = {"root", "/", UINT64_C(5) << 30, UINT64_C(10) << 30};
        struct statvfs st = {
                .f_frsize = 4096,
                .f_bavail = (UINT64_C(4) << 30) / 4096,
                .f_files = 1000,
                .f_favail = 80};
        HealthCheck c[2];

        ck_assert_uint_eq(disk_check_evaluate(&spec, 5, 10, &st, 0, c), 2);
        ck_assert_str_eq(c[0].name, "disk_free_bytes");
        ck_assert_int_eq(c[0].verdict, HEALTH_UNHEALTHY);
        ck_assert(c[0].value == 4294967296.0);
        ck_assert_str_eq(c[1].name, "disk_free_inodes_ratio");
        ck_assert_int_eq(c[1].verdict, HEALTH_WARNING); /* 8% */
        ck_assert_ptr_nonnull(strstr(c[0].message, "4.0 GiB free"));

        st.f_bavail = (UINT64_C(7) << 30) / 4096;
        st.f_files = 0; /* no inode count: no inode check */
        ck_assert_uint_eq(disk_check_evaluate(&spec, 5, 10, &st, 0, c), 1);
        ck_assert_int_eq(c[0].verdict, HEALTH_WARNING);
        st.f_bavail = (UINT64_C(10) << 30) / 4096; /* exactly at the warning limit: ok */
        ck_assert_uint_eq(disk_check_evaluate(&spec, 5, 10, &st, 0, c), 1);
        ck_assert_int_eq(c[0].verdict, HEALTH_OK);

        ck_assert_uint_eq(disk_check_evaluate(&spec, 5, 10, NULL, -ENOENT, c), 1);
        ck_assert_int_eq(c[0].verdict, HEALTH_UNKNOWN);
        ck_assert(!c[0].has_value);
}
END_TEST

START_TEST(test_workspace_evaluate) {
        WorkspaceStats s = {
                .dirty_bytes = 100,
                .dirty_files = 1,
                .requests_total = 50,
                .requests_failed = 3,
                .last_error = "503 ServerBusy"};
        HealthCheck c[3];

        ck_assert_uint_eq(
                workspace_health_evaluate("/w", WORKSPACE_OK, "fine", 0, &s, false, c), 3);
        ck_assert_int_eq(c[0].verdict, HEALTH_OK);
        ck_assert_int_eq(c[1].verdict, HEALTH_OK);
        ck_assert(c[1].value == 100);
        ck_assert_int_eq(c[2].verdict, HEALTH_OK);
        ck_assert_uint_eq(workspace_health_evaluate("/w", WORKSPACE_OK, "fine", 0, &s, true, c), 3);
        ck_assert_int_eq(c[2].verdict, HEALTH_WARNING);
        ck_assert_ptr_nonnull(strstr(c[2].message, "503 ServerBusy"));

        ck_assert_uint_eq(
                workspace_health_evaluate("/w", WORKSPACE_HUNG, "stuck", -ESTALE, NULL, false, c),
                3);
        ck_assert_int_eq(c[0].verdict, HEALTH_UNHEALTHY);
        ck_assert_str_eq(c[0].signal, "hung");
        ck_assert_int_eq(c[1].verdict, HEALTH_UNKNOWN);
        ck_assert_uint_eq(
                workspace_health_evaluate("/w", WORKSPACE_OK, "fine", -ENODATA, NULL, false, c), 3);
        ck_assert_int_eq(c[1].verdict, HEALTH_UNKNOWN);
        ck_assert_ptr_nonnull(strstr(c[1].message, "no user.azfilesfs.stats"));

        ck_assert_int_eq(workspace_stats_parse("{\"dirty_bytes\":7}", 17, &s), 0);
        ck_assert_int_eq(s.dirty_bytes, 7);
        ck_assert_int_eq(s.requests_failed, -1);
        ck_assert_int_eq(workspace_stats_parse("[1]", 3, &s), -EBADMSG);
        ck_assert_int_eq(workspace_stats_parse("{\"dirty", 7, &s), -EBADMSG);
}
END_TEST

/* ---- configuration -------------------------------------------------------------------------- */

START_TEST(test_conf_keys) {
        const char *reason = NULL;
        char *s = NULL, **l = NULL, *error = NULL;
        uint64_t v = 0;
        Config *c = NULL;

        ck_assert_int_eq(conf_parse_listen_address("0.0.0.0:8470", &s, NULL, &reason), 0);
        ck_assert_str_eq(s, "0.0.0.0:8470");
        ck_assert_int_eq(conf_parse_listen_address("[::1]:0", &s, NULL, &reason), 0);
        ck_assert_int_eq(conf_parse_listen_address("", &s, NULL, &reason), 0);
        ck_assert_ptr_null(s);
        ck_assert_int_eq(conf_parse_listen_address("localhost:80", &s, NULL, &reason), -EINVAL);
        ck_assert_int_eq(conf_parse_listen_address("1.2.3.4:65536", &s, NULL, &reason), -EINVAL);
        ck_assert_int_eq(conf_parse_listen_address("::1:80", &s, NULL, &reason), -EINVAL);
        ck_assert_int_eq(conf_parse_listen_address("1.2.3.4", &s, NULL, &reason), -EINVAL);

        ck_assert_int_eq(conf_parse_percent("5%", &v, NULL, &reason), 0);
        ck_assert_int_eq(v, 5);
        ck_assert_int_eq(conf_parse_percent("100", &v, NULL, &reason), 0);
        ck_assert_int_eq(conf_parse_percent("101%", &v, NULL, &reason), -EINVAL);
        ck_assert_int_eq(conf_parse_percent("%", &v, NULL, &reason), -EINVAL);

        ck_assert_int_eq(
                conf_parse_unit_list("ssh.service jupyterhub.service", &l, NULL, &reason), 0);
        ck_assert_str_eq(l[1], "jupyterhub.service");
        ck_assert_int_eq(conf_parse_unit_list("ssh", &l, NULL, &reason), -EINVAL);
        ck_assert_int_eq(conf_parse_unit_list("a.service b;c.service", &l, NULL, &reason), -EINVAL);
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);

        ck_assert_int_eq(conf_parse_disk_path("/", &s, NULL, &reason), 0);
        ck_assert_str_eq(s, "/");
        free(s);
        s = NULL;

        /* Sizes with units; a warning limit below the unhealthy one is refused. */
        ck_assert_int_eq(config_new(&c), 0);
        ck_assert_int_eq(
                config_parse_text(
                        c,
                        "[Health]\nRootMinFree=5G\nRootWarnFree=10G\nRequiredUnits=ssh.service\n",
                        "t.conf", &error),
                0);
        ck_assert_int_eq(c->root_min_free, UINT64_C(5) << 30);
        ck_assert_str_eq(c->required_units[0], "ssh.service");
        ck_assert_int_eq(config_verify(c, &error), 0);
        config_free(c);
        ck_assert_int_eq(config_new(&c), 0);
        ck_assert_int_eq(
                config_parse_text(c, "[Health]\nTmpMinFree=3G\nTmpWarnFree=2G\n", "t.conf", &error),
                0);
        ck_assert_int_eq(config_verify(c, &error), -EINVAL);
        ck_assert_msg(strstr(error, "TmpWarnFree= is below TmpMinFree="), "%s", error);
        free(error);
        error = NULL;
        config_free(c);
        ck_assert_int_eq(config_new(&c), 0);
        ck_assert_int_eq(
                config_parse_text(c, "[Health]\nUnhealthyAfter=0\n", "t.conf", &error), -EINVAL);
        free(error);
        config_free(c);
}
END_TEST

int main(void) {
        Suite *s = suite_create("health");
        TCase *tc = tcase_create("health");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_step);
        tcase_add_test(tc, test_sequences);
        tcase_add_test(tc, test_overall_draining_sources);
        tcase_add_test(tc, test_status_json);
        tcase_add_test(tc, test_metrics_golden);
        tcase_add_test(tc, test_disk_evaluate);
        tcase_add_test(tc, test_workspace_evaluate);
        tcase_add_test(tc, test_conf_keys);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
