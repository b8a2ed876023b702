/* SPDX-License-Identifier: MIT */
#pragma once

/* The agent's configuration: /etc/poolagent/poolagent.conf, then poolagent.conf.d/ *.conf in
 * lexical order; a key set in a later file wins. Within one file a key may be set once.
 *
 * Every key lives in one static table (conf.c) of {section, key, parser, offset}. The parsers are
 * pure (no I/O, no NSS lookups) so they can be tested on strings. All errors are collected as
 * "FILE:LINE: message" lines into *reterr (newline-separated, capped); nothing is logged here. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

#define CONF_DEFAULT_PATH "/etc/poolagent/poolagent.conf"
#define CONF_DEFAULT_DROPIN_DIR "/etc/poolagent/poolagent.conf.d"
#define CONF_FILE_MAX (256U * 1024U) /* bytes per configuration file */
#define CONF_DROPINS_MAX 128U        /* *.conf files in the drop-in directory */
#define CONF_LIST_MAX 256U           /* entries in a string list */
#define CONF_ERRORS_MAX 32U          /* error lines reported per load */
#define USEC_PER_SEC UINT64_C(1000000)
#define CONF_GPUS_MAX 64             /* ExpectedGPUs= at most */
#define CONF_EXPECTED_GPUS_AUTO (-1) /* ExpectedGPUs=auto: from the VM size */
#define CONF_JOBS_GPUS_AUTO (-1)     /* [Jobs] GPUs=auto: ExpectedGPUs= or the GPUs NVML finds */
#define CONF_JOBS_SLOTS_MAX 65536U

typedef struct UidRange {
        uid_t min, max; /* min <= max */
} UidRange;

typedef struct Config {
        /* [Agent] */
        int log_level;           /* LOG_DEBUG..LOG_EMERG */
        char *state_directory;   /* absolute path */
        char *control_socket;    /* absolute path */
        char *admin_group;       /* group name, NULL: only root is admin */
        char *metadata_endpoint; /* Instance Metadata Service, "http://HOST[:PORT]"; NULL: none */

        /* [Workspace] */
        char *source;          /* http(s) URL of the share, NULL: no workspace configured */
        char *mount_point;     /* absolute path */
        char *credentials;     /* absolute path of the credentials file, NULL if unset */
        char *cache_directory; /* absolute path */
        char *mount_options;   /* comma-separated, NULL if none */
        uint64_t stat_timeout_usec;
        uint64_t check_interval_usec;
        uint64_t recover_after_usec; /* a hung mount is ended and mounted again after this */

        /* [Users] */
        UidRange uid_range;        /* inclusive */
        char *group;               /* members are eligible too, NULL if unset */
        char **deny;               /* NULL-terminated user names, never NULL */
        char *notebooks_directory; /* relative to $HOME, no "..", e.g. "notebooks" */
        char *link_name;           /* one path component inside it, e.g. "remote" */
        mode_t user_directory_mode;
        uint64_t resync_interval_usec; /* a links pass at least this often */

        /* [Health] */
        char *listen_address; /* "HOST:PORT" of the HTTP endpoint (port 0: any), NULL: none */
        uint64_t health_interval_usec;
        uint64_t unhealthy_after; /* consecutive bad cycles before a check is reported bad */
        uint64_t healthy_after;   /* consecutive good cycles before it is reported good again */
        char *root_path;          /* disks checked; NULL: that one is not checked */
        uint64_t root_min_free;   /* bytes: below is unhealthy */
        uint64_t root_warn_free;  /* bytes: below is a warning (>= min) */
        char *tmp_path;
        uint64_t tmp_min_free;
        uint64_t tmp_warn_free;
        char *scratch_path;
        uint64_t scratch_min_free;
        uint64_t scratch_warn_free;
        uint64_t min_free_inodes_percent;  /* 0-100: below is unhealthy */
        uint64_t warn_free_inodes_percent; /* 0-100: below is a warning (>= min) */
        uint64_t top_consumers;            /* largest directories reported for a low disk, 0: off */
        char *tmp_cleanup_age;             /* TmpPath's files older go when low; NULL: off */
        char **required_units;             /* systemd units that must be active, never NULL */
        int expected_gpus;                 /* 0..CONF_GPUS_MAX, or CONF_EXPECTED_GPUS_AUTO */
        uint64_t gpu_check_interval_usec;
        uint64_t gpu_timeout_usec; /* bound of one NVML read */
        char *nvml_library;        /* absolute path; NULL: libnvidia-ml.so.1 via ld.so */

        /* [Drain] */
        bool drain_scheduled_events;            /* poll [Agent] MetadataEndpoint= for events */
        char *drain_vm_name;                    /* NULL: the instance metadata's compute.name */
        uint64_t drain_poll_interval_usec;      /* between polls while the service answers */
        uint64_t drain_flush_budget_usec;       /* jobs get until NotBefore minus this */
        uint64_t drain_manual_job_wait_usec;    /* poolctl drain: jobs get this from its start */
        uint64_t drain_flush_timeout_usec;      /* a flush without an event deadline */
        uint64_t drain_stop_flush_timeout_usec; /* the final flush when the agent stops */
        char *drain_nologin_file;               /* absolute path */
        bool drain_notify_users;                /* message to logged-in users' terminals */
        bool drain_shutdown_inhibitor;          /* logind delay lock on shutdown */
        char *drain_exec_start;                 /* /bin/sh -c command, NULL if unset */
        char *drain_exec_stop;                  /* the same */
        uint64_t drain_hook_timeout_usec;

        /* [Jobs] */
        bool jobs_enabled;             /* run the job queue (poolctl submit) */
        uint64_t jobs_slots;           /* CPU slots of running jobs; 0: two per online CPU */
        int jobs_gpus;                 /* GPUs for jobs: 0..CONF_GPUS_MAX or CONF_JOBS_GPUS_AUTO */
        uint64_t jobs_stop_grace_usec; /* SIGTERM to SIGKILL when a job is stopped */

        /* Where the values came from: the files read (NULL-terminated), and per table entry the
         * "FILE:LINE" that set it last (NULL: default). */
        char **files;
        char **origins;
} Config;

/* Value parsers. value is the raw string (already whitespace-trimmed by inih); ret points to the
 * field; arg is per-key data from the table (range or NULL). They return 0, or -EINVAL / -ERANGE
 * with *reterr_reason set to a static string explaining what is expected. They write *ret only on
 * success. */
typedef struct ConfRange {
        uint64_t min, max;
} ConfRange;

typedef int (*ConfParser)(
        const char *value, void *ret, const void *arg, const char **reterr_reason);

int conf_parse_bool(
        const char *value, void *ret /* bool */, const void *arg, const char **reterr_reason);
int conf_parse_uint(
        const char *value,
        void *ret /* uint64_t */,
        const void *arg /* ConfRange */,
        const char **reterr_reason);
int conf_parse_size(
        const char *value,
        void *ret /* uint64_t bytes */,
        const void *arg /* ConfRange or NULL */,
        const char **reterr_reason);
int conf_parse_duration(
        const char *value,
        void *ret /* uint64_t usec */,
        const void *arg /* ConfRange or NULL */,
        const char **reterr_reason);
int conf_parse_path(
        const char *value, void *ret /* char* */, const void *arg, const char **reterr_reason);
/* The same, but an empty value unsets the key (NULL). */
int conf_parse_path_or_empty(
        const char *value, void *ret /* char* */, const void *arg, const char **reterr_reason);
/* TmpCleanupAge=: "" (off, NULL), or a duration (1min..3650d) optionally after "AGEBY:" (letters
 * of aAbBcCmM, tmpfiles.d(5)); stored as tmpfiles' age field, "[AGEBY:]SECONDSs". */
int conf_parse_cleanup_age(
        const char *value, void *ret /* char* */, const void *arg, const char **reterr_reason);
/* The same, and "/" too (a disk to check). */
int conf_parse_disk_path(
        const char *value, void *ret /* char* */, const void *arg, const char **reterr_reason);
/* A shell command line: printable, no control characters; empty unsets the key (NULL). */
int conf_parse_command(
        const char *value, void *ret /* char* */, const void *arg, const char **reterr_reason);
int conf_parse_relative_path(
        const char *value, void *ret /* char* */, const void *arg, const char **reterr_reason);
int conf_parse_filename(
        const char *value, void *ret /* char* */, const void *arg, const char **reterr_reason);
int conf_parse_url(
        const char *value, void *ret /* char* */, const void *arg, const char **reterr_reason);
int conf_parse_string(
        const char *value, void *ret /* char* */, const void *arg, const char **reterr_reason);
int conf_parse_user_list(
        const char *value, void *ret /* char** */, const void *arg, const char **reterr_reason);
int conf_parse_uid_range(
        const char *value, void *ret /* UidRange */, const void *arg, const char **reterr_reason);
int conf_parse_group_name(
        const char *value, void *ret /* char* */, const void *arg, const char **reterr_reason);
int conf_parse_log_level(
        const char *value, void *ret /* int */, const void *arg, const char **reterr_reason);
/* "HOST:PORT" (IPv4 or [IPv6], port 0-65535); empty: NULL. */
int conf_parse_listen_address(
        const char *value, void *ret /* char* */, const void *arg, const char **reterr_reason);
/* "5%" or "5": a whole percentage 0-100. */
int conf_parse_percent(
        const char *value, void *ret /* uint64_t */, const void *arg, const char **reterr_reason);
/* systemd unit names ("ssh.service jupyterhub.service") separated by spaces. */
int conf_parse_unit_list(
        const char *value, void *ret /* char** */, const void *arg, const char **reterr_reason);
int conf_parse_mode(
        const char *value, void *ret /* mode_t */, const void *arg, const char **reterr_reason);
/* "http://HOST[:PORT]" (or https), nothing after the authority but an optional "/"; empty: NULL. */
int conf_parse_endpoint(
        const char *value, void *ret /* char* */, const void *arg, const char **reterr_reason);
/* "auto", "none" (0) or a number of GPUs 0..CONF_GPUS_MAX (ExpectedGPUs=, [Jobs] GPUs=). */
int conf_parse_expected_gpus(
        const char *value, void *ret /* int */, const void *arg, const char **reterr_reason);

/* A user or group name as the agent accepts it: [A-Za-z0-9_][A-Za-z0-9_.-]*, optional trailing
 * '$', at most 32 characters, not all digits. */
bool conf_valid_user_name(const char *s);

/* A fresh configuration holding the defaults. */
int config_new(Config **ret);
Config *config_free(Config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_free);

/* Parses one file's text into c (settings accumulate; later calls win). filename is used in
 * messages only. Returns 0, -EINVAL on any error in the text (all collected into *reterr), or
 * -ENOMEM. */
int config_parse_text(Config *c, const char *text, const char *filename, char **reterr);

/* Checks cross-key rules (required keys, ranges that involve two keys) after all files. */
int config_verify(const Config *c, char **reterr);

/* Reads main_path (a missing file is fine unless main_required) and then dropin_dir / *.conf in
 * lexical order (a missing directory is fine), verifies, and returns a new Config. */
int config_load(
        const char *main_path,
        bool main_required,
        const char *dropin_dir,
        Config **ret,
        char **reterr);

/* Calls cb for each key whose value differs between a and b, with whether the change takes effect
 * only after a restart. Returns the number of changed keys. */
typedef void (*ConfChangeCallback)(
        const char *section, const char *key, bool needs_restart, void *userdata);
unsigned config_diff(const Config *a, const Config *b, ConfChangeCallback cb, void *userdata);

/* Iterates over the table: for tests and documentation checks. Returns false past the end. */
bool config_table_get(unsigned i, const char **ret_section, const char **ret_key);
