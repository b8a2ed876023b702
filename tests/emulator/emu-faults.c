/* SPDX-License-Identifier: MIT */
#include "emu-faults.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "macro.h"

#define FAULTS_SPEC_MAX 4096
#define FAULTS_RULES_MAX 32
#define FAULTS_LATENCY_MAX_MS 60000u
#define FAULTS_RETRY_AFTER_MAX 3600u
#define FAULTS_EVERY_MAX 1000000u
#define FAULTS_DEFAULT_RETRY_AFTER 1u

typedef struct FaultRule {
        uint64_t ops; /* bit per EmuOp */
        bool all_ops;
        double prob[_EMU_FAULT_KIND_MAX]; /* by kind; [EMU_FAULT_NONE] unused */
        bool has_kind[_EMU_FAULT_KIND_MAX];
        bool has_latency;
        unsigned latency_ms;
        unsigned jitter_ms;
        bool has_answer_latency;
        unsigned answer_latency_ms;
        bool has_retry_after;
        unsigned retry_after_s;
        unsigned every;   /* 0: every match */
        unsigned count;   /* 0: unlimited */
        uint64_t matches; /* protected by FaultSet.lock */
        uint64_t acted;   /* protected by FaultSet.lock */
} FaultRule;

typedef struct FaultSet {
        FaultRule rules[FAULTS_RULES_MAX];
        size_t n_rules;
        uint64_t seed;
        pthread_mutex_t lock; /* protects rules[].matches, rules[].acted, prng */
        uint64_t prng;
} FaultSet;

struct EmuFaults {
        pthread_rwlock_t lock; /* write: emu_faults_set(); read: decide, describe */
        FaultSet *set;         /* protected by lock */
};

static const struct {
        const char *name;
        const char *alias;
        EmuFaultKind kind;
} kind_names[] = {
        {"503", "busy", EMU_FAULT_BUSY},
        {"500", "internal", EMU_FAULT_INTERNAL},
        {"reset", NULL, EMU_FAULT_RESET},
        {"truncate", NULL, EMU_FAULT_TRUNCATE},
        {"stale-marker", NULL, EMU_FAULT_STALE_MARKER},
};

static FaultSet *fault_set_free(FaultSet *s) {
        if (!s)
                return NULL;
        (void)pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(FaultSet *, fault_set_free);

static uint64_t splitmix64(uint64_t *state) {
        uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 bits. */
static double draw_unit(uint64_t *state) {
        return (double)(splitmix64(state) >> 11) * 0x1.0p-53;
}

_printf_(2, 3) static int fail(char **reterr, const char *format, ...) {
        va_list ap;

        if (!reterr)
                return -EINVAL;
        va_start(ap, format);
        if (vasprintf(reterr, format, ap) < 0)
                *reterr = NULL;
        va_end(ap);
        return -EINVAL;
}

static char *trim(char *s) {
        char *e;
        while (isspace((unsigned char)*s))
                s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1]))
                *--e = '\0';
        return s;
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *ret) {
        unsigned long long v;
        char *end;

        if (!isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0' || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_probability(const char *s, double *ret) {
        char *end;
        double v;

        if (!isdigit((unsigned char)*s) && *s != '.')
                return -EINVAL;
        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || *end != '\0' || !isfinite(v) || v < 0.0 || v > 1.0)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* "20", "20ms", "2s". */
static int parse_duration_ms(const char *s, unsigned *ret) {
        _cleanup_free_ char *num = NULL;
        unsigned long long v, mult = 1;
        size_t len = strlen(s);

        if (len > 2 && streq(s + len - 2, "ms"))
                len -= 2;
        else if (len > 1 && s[len - 1] == 's') {
                len -= 1;
                mult = 1000;
        }
        num = strndup(s, len);
        if (!num)
                return -ENOMEM;
        if (parse_uint(num, FAULTS_LATENCY_MAX_MS, &v) < 0 || v * mult > FAULTS_LATENCY_MAX_MS)
                return -EINVAL;
        *ret = (unsigned)(v * mult);
        return 0;
}

static int parse_ops(char *list, FaultRule *rule, char **reterr) {
        char *p = list, *name;

        if (isempty(trim(list)))
                return fail(reterr, "empty operation list in 'op=%s'", list);
        while ((name = strsep(&p, "+"))) {
                EmuOp op;

                name = trim(name);
                if (strcaseeq(name, "write") || strcaseeq(name, "imds") ||
                    strcaseeq(name, "files")) {
                        for (int i = 0; i < _EMU_OP_MAX; i++) {
                                bool imds = i >= EMU_OP_IMDS_INSTANCE && i <= EMU_OP_IMDS_TOKEN;
                                bool files = i < EMU_OP_IMDS_INSTANCE;
                                if ((strcaseeq(name, "write") && emu_op_is_write((EmuOp)i)) ||
                                    (strcaseeq(name, "imds") && imds) ||
                                    (strcaseeq(name, "files") && files))
                                        rule->ops |= UINT64_C(1) << i;
                        }
                        continue;
                }
                op = emu_op_from_string(name);
                if (op < 0 || op == EMU_OP_ADMIN)
                        return fail(reterr, "unknown operation '%s' in op=", name);
                rule->ops |= UINT64_C(1) << op;
        }
        return 0;
}

static int parse_item(char *item, FaultRule *rule, FaultSet *set, bool *seen_seed, char **reterr) {
        char *key = trim(item), *value = strchr(key, '=');
        unsigned long long v;

        if (isempty(key))
                return fail(reterr, "empty fault item");
        if (value) {
                *value++ = '\0';
                key = trim(key);
                value = trim(value);
        }

        for (size_t i = 0; i < ELEMENTSOF(kind_names); i++) {
                EmuFaultKind k = kind_names[i].kind;
                double p = 1.0;

                if (!streq(key, kind_names[i].name) &&
                    !(kind_names[i].alias && streq(key, kind_names[i].alias)))
                        continue;
                if (rule->has_kind[k])
                        return fail(reterr, "fault kind '%s' given twice in one rule", key);
                if (value && parse_probability(value, &p) < 0)
                        return fail(reterr, "invalid probability '%s' (want 0..1)", value);
                rule->has_kind[k] = true;
                rule->prob[k] = p;
                return 0;
        }

        if (!value)
                return fail(reterr, "unknown fault '%s'", key);

        if (streq(key, "latency")) {
                char *tilde = strchr(value, '~');
                if (rule->has_latency)
                        return fail(reterr, "latency given twice in one rule");
                if (tilde) {
                        *tilde++ = '\0';
                        if (parse_duration_ms(trim(tilde), &rule->jitter_ms) < 0)
                                return fail(reterr, "invalid latency jitter '%s'", tilde);
                }
                if (parse_duration_ms(trim(value), &rule->latency_ms) < 0)
                        return fail(
                                reterr, "invalid latency '%s' (want N, Nms or Ns, <= 60s)", value);
                if (rule->latency_ms + rule->jitter_ms > FAULTS_LATENCY_MAX_MS)
                        return fail(reterr, "latency '%s' plus jitter exceeds 60 s", value);
                rule->has_latency = true;
        } else if (streq(key, "answer-latency")) {
                if (rule->has_answer_latency)
                        return fail(reterr, "answer-latency given twice in one rule");
                if (parse_duration_ms(trim(value), &rule->answer_latency_ms) < 0)
                        return fail(
                                reterr, "invalid answer-latency '%s' (want N, Nms or Ns, <= 60s)",
                                value);
                rule->has_answer_latency = true;
        } else if (streq(key, "retry-after")) {
                if (parse_uint(value, FAULTS_RETRY_AFTER_MAX, &v) < 0)
                        return fail(
                                reterr, "invalid retry-after '%s' (want 0..3600 seconds)", value);
                rule->has_retry_after = true;
                rule->retry_after_s = (unsigned)v;
        } else if (streq(key, "every")) {
                if (parse_uint(value, FAULTS_EVERY_MAX, &v) < 0 || v == 0)
                        return fail(reterr, "invalid every '%s' (want 1..1000000)", value);
                rule->every = (unsigned)v;
        } else if (streq(key, "count")) {
                if (parse_uint(value, UINT32_MAX, &v) < 0 || v == 0)
                        return fail(reterr, "invalid count '%s' (want a positive number)", value);
                rule->count = (unsigned)v;
        } else if (streq(key, "seed")) {
                if (*seen_seed)
                        return fail(reterr, "seed given twice");
                if (parse_uint(value, UINT64_MAX, &v) < 0)
                        return fail(reterr, "invalid seed '%s'", value);
                *seen_seed = true;
                set->seed = v;
        } else
                return fail(reterr, "unknown fault '%s'", key);
        return 0;
}

static bool rule_has_any_kind(const FaultRule *rule) {
        for (int k = 1; k < _EMU_FAULT_KIND_MAX; k++)
                if (rule->has_kind[k])
                        return true;
        return false;
}

static int parse_rule(char *text, FaultSet *set, bool *seen_seed, char **reterr) {
        FaultRule rule = {.retry_after_s = FAULTS_DEFAULT_RETRY_AFTER};
        char *p = trim(text), *item;
        double sum = 0.0;
        bool only_seed = true;
        int r;

        if (isempty(p))
                return fail(reterr, "empty rule (stray ';')");
        if (strncmp(p, "op=", 3) == 0) {
                char *colon = strchr(p, ':');
                if (!colon)
                        return fail(reterr, "'%s': op= needs ':' before the faults", p);
                *colon = '\0';
                r = parse_ops(p + 3, &rule, reterr);
                if (r < 0)
                        return r;
                p = colon + 1;
        } else {
                rule.all_ops = true;
                rule.ops = ~UINT64_C(0) & ~(UINT64_C(1) << EMU_OP_ADMIN);
        }

        while ((item = strsep(&p, ","))) {
                bool was_seen = *seen_seed;
                r = parse_item(item, &rule, set, seen_seed, reterr);
                if (r < 0)
                        return r;
                if (*seen_seed == was_seen)
                        only_seed = false;
        }

        for (int k = 1; k < _EMU_FAULT_KIND_MAX; k++)
                sum += rule.has_kind[k] ? rule.prob[k] : 0.0;
        if (sum > 1.0 + 1e-9)
                return fail(reterr, "probabilities of one rule add up to more than 1");
        if (only_seed && rule.all_ops)
                return 0; /* "seed=N" on its own */
        if (!rule_has_any_kind(&rule) && !rule.has_latency && !rule.has_answer_latency)
                return fail(reterr, "rule '%s' injects nothing (no fault kind, no latency)", text);
        if (set->n_rules >= FAULTS_RULES_MAX)
                return fail(reterr, "too many rules (at most 32)");
        set->rules[set->n_rules++] = rule;
        return 0;
}

static int fault_set_parse(const char *spec, FaultSet **ret, char **reterr) {
        _cleanup_(fault_set_freep) FaultSet *set = NULL;
        _cleanup_free_ char *copy = NULL;
        bool seen_seed = false;
        char *p, *rule;
        int r;

        if (reterr)
                *reterr = NULL;
        if (spec && strlen(spec) > FAULTS_SPEC_MAX)
                return fail(reterr, "fault spec longer than 4096 characters");
        set = calloc(1, sizeof(FaultSet));
        if (!set)
                return -ENOMEM;
        if (pthread_mutex_init(&set->lock, NULL) != 0) {
                free(TAKE_PTR(set));
                return -ENOMEM;
        }
        if (spec) {
                copy = strdup(spec);
                if (!copy)
                        return -ENOMEM;
                p = trim(copy);
                while (!isempty(p) && (rule = strsep(&p, ";"))) {
                        r = parse_rule(rule, set, &seen_seed, reterr);
                        if (r < 0)
                                return r;
                }
        }
        if (!seen_seed && getrandom(&set->seed, sizeof(set->seed), 0) != sizeof(set->seed))
                set->seed = (uint64_t)(uintptr_t)set ^ (uint64_t)getpid();
        set->prng = set->seed;
        *ret = TAKE_PTR(set);
        return 0;
}

int emu_faults_new(const char *spec, EmuFaults **ret, char **reterr) {
        _cleanup_free_ EmuFaults *f = NULL;
        FaultSet *set = NULL;
        int r;

        r = fault_set_parse(spec, &set, reterr);
        if (r < 0)
                return r;
        f = calloc(1, sizeof(EmuFaults));
        if (!f || pthread_rwlock_init(&f->lock, NULL) != 0) {
                fault_set_free(set);
                return -ENOMEM;
        }
        f->set = set;
        *ret = TAKE_PTR(f);
        return 0;
}

EmuFaults *emu_faults_free(EmuFaults *f) {
        if (!f)
                return NULL;
        fault_set_free(f->set);
        (void)pthread_rwlock_destroy(&f->lock);
        free(f);
        return NULL;
}

int emu_faults_set(EmuFaults *f, const char *spec, char **reterr) {
        FaultSet *set = NULL, *old;
        int r;

        r = fault_set_parse(spec, &set, reterr);
        if (r < 0)
                return r;
        (void)pthread_rwlock_wrlock(&f->lock);
        old = f->set;
        f->set = set;
        (void)pthread_rwlock_unlock(&f->lock);
        fault_set_free(old);
        return 0;
}

static void describe_rule(FILE *out, const FaultRule *rule) {
        static const char *const names[_EMU_FAULT_KIND_MAX] = {
                [EMU_FAULT_BUSY] = "503",
                [EMU_FAULT_INTERNAL] = "500",
                [EMU_FAULT_RESET] = "reset",
                [EMU_FAULT_TRUNCATE] = "truncate",
                [EMU_FAULT_STALE_MARKER] = "stale-marker",
        };
        bool first = true;

        if (!rule->all_ops) {
                fputs("op=", out);
                for (int i = 0; i < _EMU_OP_MAX; i++)
                        if (rule->ops & (UINT64_C(1) << i)) {
                                fprintf(out, "%s%s", first ? "" : "+", emu_op_to_string((EmuOp)i));
                                first = false;
                        }
                fputc(':', out);
                first = true;
        }
#define SEP() (first ? (first = false, "") : ",")
        for (int k = 1; k < _EMU_FAULT_KIND_MAX; k++)
                if (rule->has_kind[k])
                        fprintf(out, "%s%s=%.17g", SEP(), names[k], rule->prob[k]);
        if (rule->has_latency) {
                fprintf(out, "%slatency=%ums", SEP(), rule->latency_ms);
                if (rule->jitter_ms > 0)
                        fprintf(out, "~%ums", rule->jitter_ms);
        }
        if (rule->has_answer_latency)
                fprintf(out, "%sanswer-latency=%ums", SEP(), rule->answer_latency_ms);
        if (rule->has_kind[EMU_FAULT_BUSY] || rule->has_retry_after)
                fprintf(out, "%sretry-after=%u", SEP(), rule->retry_after_s);
        if (rule->every > 0)
                fprintf(out, "%severy=%u", SEP(), rule->every);
        if (rule->count > 0)
                fprintf(out, "%scount=%u", SEP(), rule->count);
#undef SEP
}

char *emu_faults_describe(EmuFaults *f) {
        char *buf = NULL;
        size_t size = 0;
        FILE *out = open_memstream(&buf, &size);

        if (!out)
                return NULL;
        (void)pthread_rwlock_rdlock(&f->lock);
        for (size_t i = 0; i < f->set->n_rules; i++) {
                describe_rule(out, &f->set->rules[i]);
                fputc(';', out);
        }
        fprintf(out, "seed=%llu", (unsigned long long)f->set->seed);
        (void)pthread_rwlock_unlock(&f->lock);
        if (fclose(out) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

EmuFaultDecision emu_faults_decide(EmuFaults *f, EmuOp op) {
        EmuFaultDecision d = {.kind = EMU_FAULT_NONE};
        FaultSet *set;

        if (!f || op < 0 || op >= _EMU_OP_MAX || op == EMU_OP_ADMIN)
                return d;
        (void)pthread_rwlock_rdlock(&f->lock);
        set = f->set;
        if (set->n_rules == 0) {
                (void)pthread_rwlock_unlock(&f->lock);
                return d;
        }
        (void)pthread_mutex_lock(&set->lock);
        for (size_t i = 0; i < set->n_rules; i++) {
                FaultRule *rule = &set->rules[i];
                bool acted = false;

                if (!(rule->ops & (UINT64_C(1) << op)))
                        continue;
                rule->matches++;
                if (rule->every > 0 && rule->matches % rule->every != 0)
                        continue;
                if (rule->count > 0 && rule->acted >= rule->count)
                        continue;
                if (rule->has_latency) {
                        unsigned ms = rule->latency_ms;
                        if (rule->jitter_ms > 0)
                                ms += (unsigned)(splitmix64(&set->prng) % (rule->jitter_ms + 1u));
                        d.latency_ms = MIN(d.latency_ms + ms, FAULTS_LATENCY_MAX_MS);
                        acted = true;
                }
                if (rule->has_answer_latency) {
                        d.answer_latency_ms =
                                MIN(d.answer_latency_ms + rule->answer_latency_ms,
                                    FAULTS_LATENCY_MAX_MS);
                        acted = true;
                }
                if (d.kind == EMU_FAULT_NONE && rule_has_any_kind(rule)) {
                        double u = draw_unit(&set->prng), acc = 0.0;
                        for (int k = 1; k < _EMU_FAULT_KIND_MAX; k++) {
                                if (!rule->has_kind[k])
                                        continue;
                                acc += rule->prob[k];
                                /* p=1 must always hit, p=0 never. */
                                if (rule->prob[k] > 0.0 && (u < acc || rule->prob[k] >= 1.0)) {
                                        d.kind = (EmuFaultKind)k;
                                        d.retry_after_s = rule->retry_after_s;
                                        acted = true;
                                        break;
                                }
                        }
                }
                if (acted)
                        rule->acted++;
        }
        (void)pthread_mutex_unlock(&set->lock);
        (void)pthread_rwlock_unlock(&f->lock);
        return d;
}
