/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "emu-faults.h"
#include "macro.h"

static EmuFaults *new_ok(const char *spec) {
        EmuFaults *f = NULL;
        char *err = NULL;
        int r = emu_faults_new(spec, &f, &err);
        ck_assert_msg(r == 0, "spec '%s' rejected: %s", spec, err ? err : "?");
        free(err);
        return f;
}

/* Returns the error text (caller frees) of a spec that must be refused. */
static char *new_bad(const char *spec) {
        EmuFaults *f = NULL;
        char *err = NULL;
        int r = emu_faults_new(spec, &f, &err);
        ck_assert_msg(r == -EINVAL, "spec '%s' accepted", spec);
        ck_assert_ptr_null(f);
        ck_assert_ptr_nonnull(err);
        return err;
}

START_TEST(test_empty_spec_never_faults) {
        static const char *const specs[] = {NULL, "", "  ", "seed=7"};
        for (size_t s = 0; s < ELEMENTSOF(specs); s++) {
                EmuFaults *f = new_ok(specs[s]);
                for (int i = 0; i < 1000; i++) {
                        EmuFaultDecision d = emu_faults_decide(f, EMU_OP_PUT_RANGE);
                        ck_assert_int_eq(d.kind, EMU_FAULT_NONE);
                        ck_assert_uint_eq(d.latency_ms, 0);
                }
                emu_faults_free(f);
        }
}
END_TEST

START_TEST(test_grammar_normalised) {
        static const struct {
                const char *in;
                const char *out;
        } cases[] = {
                {"503=0.1,500=0.05,reset=0.02,truncate=0.01,latency=20ms,retry-after=1,seed=42",
                 "503=0.10000000000000001,500=0.050000000000000003,reset=0.02,truncate=0.01,"
                 "latency=20ms,retry-after=1;seed=42"},
                {"op=PutRange+GetFile:503=0.5;reset=0.01;seed=1",
                 "op=GetFile+PutRange:503=0.5,retry-after=1;reset=0.01;seed=1"},
                {" busy , every=3 ; seed=5 ", "503=1,retry-after=1,every=3;seed=5"},
                {"internal,count=2,seed=9", "500=1,count=2;seed=9"},
                {"latency=2s~10,seed=3", "latency=2000ms~10ms;seed=3"},
                {"op=putrange:truncate=0,seed=4", "op=PutRange:truncate=0;seed=4"},
                {"op=ListDirectoriesAndFiles:stale-marker,count=1;seed=2",
                 "op=ListDirectoriesAndFiles:stale-marker=1,count=1;seed=2"},
                {"op=renamefile:answer-latency=2s,count=1;seed=8",
                 "op=RenameFile:answer-latency=2000ms,count=1;seed=8"},
                {"op=imds:503,retry-after=7;seed=6",
                 "op=ImdsInstance+ImdsScheduledEvents+ImdsApproveEvents+ImdsToken:503=1,"
                 "retry-after=7;seed=6"},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                EmuFaults *f = new_ok(cases[i].in);
                char *d = emu_faults_describe(f);
                EmuFaults *g;

                ck_assert_str_eq(d, cases[i].out);
                /* The description parses back to itself. */
                g = new_ok(d);
                char *d2 = emu_faults_describe(g);
                ck_assert_str_eq(d2, d);
                free(d);
                free(d2);
                emu_faults_free(f);
                emu_faults_free(g);
        }
}
END_TEST

START_TEST(test_errors_name_the_token) {
        static const struct {
                const char *spec;
                const char *needle;
        } cases[] = {
                {"503=1.5", "'1.5'"},
                {"503=-0.1", "'-0.1'"},
                {"503=nan", "'nan'"},
                {"503=0.5x", "'0.5x'"},
                {"bogus=1", "'bogus'"},
                {"bogus", "'bogus'"},
                {"latency=20q", "'20q'"},
                {"latency=61s", "'61s'"},
                {"latency=20ms~abc", "'abc'"},
                {"answer-latency=61s", "'61s'"},
                {"answer-latency=1s,answer-latency=2s", "answer-latency given twice"},
                {"every=0,503", "'0'"},
                {"count=-1,503", "'-1'"},
                {"retry-after=9999,503", "'9999'"},
                {"seed=x", "'x'"},
                {"seed=1;seed=2", "seed given twice"},
                {"op=NoSuchOp:503", "'NoSuchOp'"},
                {"op=Admin:503", "'Admin'"},
                {"op=PutRange", "op= needs ':'"},
                {"op=:503", "empty operation list"},
                {"503=0.6,500=0.6", "more than 1"},
                {"503,503=0.1", "'503' given twice"},
                {"every=3", "injects nothing"},
                {"503;;500", "empty rule"},
                {"503,,500", "empty fault item"},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *err = new_bad(cases[i].spec);
                ck_assert_msg(
                        strstr(err, cases[i].needle), "spec '%s': error '%s' lacks '%s'",
                        cases[i].spec, err, cases[i].needle);
                free(err);
        }
}
END_TEST

START_TEST(test_set_keeps_old_rules_on_error) {
        EmuFaults *f = new_ok("503,seed=1");
        char *err = NULL, *d;

        ck_assert_int_eq(emu_faults_set(f, "503=2", &err), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "'2'"));
        free(err);
        ck_assert_int_eq(emu_faults_decide(f, EMU_OP_GET_FILE).kind, EMU_FAULT_BUSY);
        ck_assert_int_eq(emu_faults_set(f, "", &err), 0);
        ck_assert_int_eq(emu_faults_decide(f, EMU_OP_GET_FILE).kind, EMU_FAULT_NONE);
        d = emu_faults_describe(f);
        ck_assert_ptr_eq(strstr(d, "seed="), d);
        free(d);
        emu_faults_free(f);
}
END_TEST

START_TEST(test_every_is_exact) {
        EmuFaults *f = new_ok("503,every=3,retry-after=4");
        for (int i = 1; i <= 30; i++) {
                EmuFaultDecision d = emu_faults_decide(f, EMU_OP_GET_FILE);
                if (i % 3 == 0) {
                        ck_assert_int_eq(d.kind, EMU_FAULT_BUSY);
                        ck_assert_uint_eq(d.retry_after_s, 4);
                } else
                        ck_assert_int_eq(d.kind, EMU_FAULT_NONE);
        }
        /* The admin API is never faulted and does not count as a match. */
        ck_assert_int_eq(emu_faults_decide(f, EMU_OP_ADMIN).kind, EMU_FAULT_NONE);
        emu_faults_free(f);
}
END_TEST

START_TEST(test_count_limits_faults) {
        EmuFaults *f = new_ok("reset,count=2");
        ck_assert_int_eq(emu_faults_decide(f, EMU_OP_PUT_RANGE).kind, EMU_FAULT_RESET);
        ck_assert_int_eq(emu_faults_decide(f, EMU_OP_LIST_RANGES).kind, EMU_FAULT_RESET);
        for (int i = 0; i < 100; i++)
                ck_assert_int_eq(emu_faults_decide(f, EMU_OP_PUT_RANGE).kind, EMU_FAULT_NONE);
        emu_faults_free(f);

        /* every= and count= together: the 2nd and 4th match, then spent. */
        f = new_ok("500,every=2,count=2");
        for (int i = 1; i <= 10; i++)
                ck_assert_int_eq(
                        emu_faults_decide(f, EMU_OP_GET_FILE).kind,
                        (i == 2 || i == 4) ? EMU_FAULT_INTERNAL : EMU_FAULT_NONE);
        emu_faults_free(f);
}
END_TEST

START_TEST(test_op_scoping_and_first_rule_wins) {
        EmuFaults *f = new_ok("op=PutRange:503;op=PutRange+GetFile:500;latency=5ms");
        EmuFaultDecision d;

        d = emu_faults_decide(f, EMU_OP_PUT_RANGE);
        ck_assert_int_eq(d.kind, EMU_FAULT_BUSY);
        ck_assert_uint_eq(d.latency_ms, 5);
        d = emu_faults_decide(f, EMU_OP_GET_FILE);
        ck_assert_int_eq(d.kind, EMU_FAULT_INTERNAL);
        d = emu_faults_decide(f, EMU_OP_CREATE_FILE);
        ck_assert_int_eq(d.kind, EMU_FAULT_NONE);
        ck_assert_uint_eq(d.latency_ms, 5);
        emu_faults_free(f);

        /* The answer's latency is its own: the request itself is not delayed. */
        f = new_ok("op=RenameFile:answer-latency=30ms;latency=5ms");
        d = emu_faults_decide(f, EMU_OP_RENAME_FILE);
        ck_assert_int_eq(d.kind, EMU_FAULT_NONE);
        ck_assert_uint_eq(d.latency_ms, 5);
        ck_assert_uint_eq(d.answer_latency_ms, 30);
        ck_assert_uint_eq(emu_faults_decide(f, EMU_OP_PUT_RANGE).answer_latency_ms, 0);
        emu_faults_free(f);

        f = new_ok("op=write:truncate");
        ck_assert_int_eq(emu_faults_decide(f, EMU_OP_CREATE_FILE).kind, EMU_FAULT_TRUNCATE);
        ck_assert_int_eq(emu_faults_decide(f, EMU_OP_GET_FILE).kind, EMU_FAULT_NONE);
        ck_assert_int_eq(emu_faults_decide(f, EMU_OP_IMDS_TOKEN).kind, EMU_FAULT_NONE);
        emu_faults_free(f);
}
END_TEST

START_TEST(test_latency_jitter_bounds) {
        EmuFaults *f = new_ok("latency=20ms~10ms,seed=11");
        unsigned lo = 1000, hi = 0;
        for (int i = 0; i < 2000; i++) {
                EmuFaultDecision d = emu_faults_decide(f, EMU_OP_GET_FILE);
                ck_assert_int_eq(d.kind, EMU_FAULT_NONE);
                lo = MIN(lo, d.latency_ms);
                hi = MAX(hi, d.latency_ms);
        }
        ck_assert_uint_ge(lo, 20);
        ck_assert_uint_le(hi, 30);
        ck_assert_uint_lt(lo, hi); /* it does vary */
        emu_faults_free(f);
}
END_TEST

START_TEST(test_probabilities_within_bounds) {
        /* 20000 draws with a fixed seed: each kind within 5 sigma of its expectation. */
        EmuFaults *f = new_ok("503=0.1,500=0.05,reset=0.02,truncate=0.01,seed=42");
        unsigned n[_EMU_FAULT_KIND_MAX] = {0};
        const unsigned N = 20000;

        for (unsigned i = 0; i < N; i++)
                n[emu_faults_decide(f, EMU_OP_GET_FILE).kind]++;
        ck_assert_uint_ge(n[EMU_FAULT_BUSY], 2000 - 212);
        ck_assert_uint_le(n[EMU_FAULT_BUSY], 2000 + 212);
        ck_assert_uint_ge(n[EMU_FAULT_INTERNAL], 1000 - 154);
        ck_assert_uint_le(n[EMU_FAULT_INTERNAL], 1000 + 154);
        ck_assert_uint_ge(n[EMU_FAULT_RESET], 400 - 99);
        ck_assert_uint_le(n[EMU_FAULT_RESET], 400 + 99);
        ck_assert_uint_ge(n[EMU_FAULT_TRUNCATE], 200 - 70);
        ck_assert_uint_le(n[EMU_FAULT_TRUNCATE], 200 + 70);
        emu_faults_free(f);
}
END_TEST

START_TEST(test_seed_reproducible) {
        EmuFaults *a = new_ok("503=0.3,reset=0.3,latency=1ms~50ms,seed=1234");
        EmuFaults *b = new_ok("503=0.3,reset=0.3,latency=1ms~50ms,seed=1234");
        EmuFaults *c = new_ok("503=0.3,reset=0.3,latency=1ms~50ms,seed=1235");
        bool differs = false;

        for (int i = 0; i < 500; i++) {
                EmuFaultDecision x = emu_faults_decide(a, EMU_OP_PUT_RANGE);
                EmuFaultDecision y = emu_faults_decide(b, EMU_OP_PUT_RANGE);
                EmuFaultDecision z = emu_faults_decide(c, EMU_OP_PUT_RANGE);
                ck_assert_int_eq(x.kind, y.kind);
                ck_assert_uint_eq(x.latency_ms, y.latency_ms);
                if (x.kind != z.kind || x.latency_ms != z.latency_ms)
                        differs = true;
        }
        ck_assert(differs);
        emu_faults_free(a);
        emu_faults_free(b);
        emu_faults_free(c);
}
END_TEST

START_TEST(test_extremes) {
        EmuFaults *f = new_ok("503=0,500=1");
        for (int i = 0; i < 1000; i++)
                ck_assert_int_eq(emu_faults_decide(f, EMU_OP_GET_FILE).kind, EMU_FAULT_INTERNAL);
        emu_faults_free(f);
        ck_assert_int_eq(emu_faults_decide(NULL, EMU_OP_GET_FILE).kind, EMU_FAULT_NONE);
}
END_TEST

int main(void) {
        Suite *s = suite_create("emu-faults");
        TCase *grammar = tcase_create("grammar"), *modes = tcase_create("modes");
        SRunner *sr;
        int failed;

        tcase_add_test(grammar, test_empty_spec_never_faults);
        tcase_add_test(grammar, test_grammar_normalised);
        tcase_add_test(grammar, test_errors_name_the_token);
        tcase_add_test(grammar, test_set_keeps_old_rules_on_error);
        suite_add_tcase(s, grammar);
        tcase_add_test(modes, test_every_is_exact);
        tcase_add_test(modes, test_count_limits_faults);
        tcase_add_test(modes, test_op_scoping_and_first_rule_wins);
        tcase_add_test(modes, test_latency_jitter_bounds);
        tcase_add_test(modes, test_probabilities_within_bounds);
        tcase_add_test(modes, test_seed_reproducible);
        tcase_add_test(modes, test_extremes);
        suite_add_tcase(s, modes);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
