/* SPDX-License-Identifier: MIT */
#pragma once

/* Test harness for the agent's integration tests, which run the real poolagentd and poolctl
 * binaries: temporary directories, the NOTIFY_SOCKET a test reads (READY=1, STOPPING=1, the last
 * STATUS=), starting and stopping the agent, running poolctl (or any program) with its output
 * captured, and the private /tmp, /root and /etc the per-user link tests run in.
 *
 * Every function but the two marked "for main()" asserts (check's ck_assert) on any failure, so
 * it runs in a check test or fixture; a failed wait fails the test. No sleeps: every wait is on the
 * real condition (a datagram, a closed pipe, a reaped child), bounded by the wait_ms the caller
 * gives. Strings passed in are borrowed for the call (AgentSpawn, AgentPoolctl: for as long as the
 * struct is used); strings returned (ret_out, ret_err, agent_harness_mkdtemp) belong to the caller,
 * to free(). */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* The most bytes kept of a command's stdout or stderr. */
#define AGENT_HARNESS_OUTPUT_MAX (512 * 1024)

/* now + ms, on the monotonic clock (ns). */
int64_t agent_harness_deadline(int64_t ms);
/* Milliseconds left until deadline, 0 when past. */
int64_t agent_harness_left_ms(int64_t deadline);

/* A new directory from template_path ("/tmp/test-foo-XXXXXX"), chmod'ed to mode unless mode is 0
 * (mkdtemp's 0700 stays). Returns the path; the caller frees it (agent_harness_rm_rf does). */
char *agent_harness_mkdtemp(const char *template_path, mode_t mode);
/* rm -rf *dir (asserting success), frees it and sets it to NULL. NULL-safe. */
void agent_harness_rm_rf(char **dir);
/* Writes text to path (created 0644, truncated). */
void agent_harness_write_file(const char *path, const char *text);

/* ---- the agent's notifications -------------------------------------------------------------- */

typedef struct AgentNotify {
        int fd;            /* the bound datagram socket; -EBADF when closed */
        int64_t wait_ms;   /* how long each wait may take */
        char status[1024]; /* the text of the last STATUS= line received, "" before any */
        char path[108];    /* where it is bound (the agent's NOTIFY_SOCKET) */
} AgentNotify;

/* Binds a datagram socket at path (the agent's NOTIFY_SOCKET); path must not exist. */
void agent_notify_open(AgentNotify *n, const char *path, int64_t wait_ms);
/* Closes the socket (if open). */
void agent_notify_close(AgentNotify *n);
/* Reads notifications until one has a line equal to line (e.g. "READY=1"); bounded by wait_ms.
 * Remembers every STATUS= on the way. */
void agent_notify_wait(AgentNotify *n, const char *line);
/* Returns once the last STATUS= contains part: at once when the one already received does, else
 * reading notifications; bounded by wait_ms. */
void agent_notify_wait_status(AgentNotify *n, const char *part);

/* ---- the agent ------------------------------------------------------------------------------ */

typedef struct AgentSpawn {
        const char *poolagentd;     /* the binary */
        const char *config;         /* --config */
        const char *config_dir;     /* --config-dir ("" for none) */
        const char *log;            /* the agent's stderr, appended to (created 0644) */
        const char *notify_socket;  /* NOTIFY_SOCKET; NULL: unset in the agent's environment */
        const char *const *env;     /* more "NAME=value" (NULL-terminated; "" entries skipped), or
                                     * NULL */
        bool small_asan_quarantine; /* under ASan, a 1 MiB quarantine (VmRSS measures the agent) */
} AgentSpawn;

/* Forks and execs poolagentd as s says; it gets SIGTERM when the calling thread ends. Returns its
 * pid; does not wait for it (agent_notify_wait "READY=1" does). */
pid_t poolagentd_spawn(const AgentSpawn *s);
/* Stops the agent *pid (nothing when *pid <= 0): SIGTERM, then, when stopping is not NULL, waits
 * for its STOPPING=1; reaps it, sets *pid to 0 and asserts it exited with status 0 (copying log,
 * if not NULL, to stderr when it did not). */
void poolagentd_stop(pid_t *pid, const char *log, AgentNotify *stopping);

/* ---- commands ------------------------------------------------------------------------------- */

/* Runs argv (execvp) with stdout, and stderr when capture_stderr (else it stays ours), on pipes
 * read until both close, bounded by wait_ms, then reaps it and asserts it exited (no signal).
 * Returns its exit status. ret_out / ret_err (may be NULL: discarded) get what it wrote, NUL
 * terminated, at most AGENT_HARNESS_OUTPUT_MAX bytes; ret_err is "" when not captured. ret_ms (may
 * be NULL): how long it took. */
int agent_command_run(
        const char *const *argv,
        bool capture_stderr,
        int64_t wait_ms,
        char **ret_out,
        char **ret_err,
        int64_t *ret_ms);

typedef struct AgentPoolctl {
        const char *poolctl;        /* the binary */
        const char *socket;         /* --socket */
        const char *const *setpriv; /* NULL, or setpriv options to run it as another user, e.g.
                                     * {"--reuid=65534", "--regid=65534", "--clear-groups", NULL} */
        bool capture_stderr;        /* see agent_command_run */
        int64_t wait_ms;
} AgentPoolctl;

/* Runs [setpriv OPTIONS] poolctl --socket SOCKET ARGS (args NULL-terminated) with
 * agent_command_run. */
int poolctl_run(
        const AgentPoolctl *c,
        const char *const *args,
        char **ret_out,
        char **ret_err,
        int64_t *ret_ms);

/* ---- mounts --------------------------------------------------------------------------------- */

/* For main(), before any test: 0 with this process in its own mount namespace, / private (a
 * mount made here never reaches the machine); 77 (skip; stderr says why) without root, without
 * /dev/fuse, or when that namespace cannot be made. Asserts nothing. */
int agent_harness_enter_fuse_namespace(void);
/* For main(): whether a child can unshare its mount namespace and make / private (the fixture of
 * agent_harness_private_root will). Asserts nothing. */
bool agent_harness_can_unshare(void);
/* Whether something is mounted at path (from /proc/self/mountinfo; path has no spaces). */
bool agent_harness_is_mounted(const char *path);

/* ---- a private /tmp, /root and /etc --------------------------------------------------------- */

/* Whether path is a tmpfs, and one of ours ("/tmp", or it holds the file "marker"). */
bool agent_harness_on_private_tmpfs(const char *path);
/* Unshares the mount namespace and makes / private; mounts tmpfs over /tmp and /root and
 * bind-mounts /tmp/fake-etc over /etc (nsswitch.conf with files only; passwd and group holding
 * root; /etc/ld.so.cache copied in too when copy_ld_cache); then asserts that /tmp, /root and /etc
 * are those mounts (each test refuses to go on otherwise). The fake passwd is
 * /tmp/fake-etc/passwd, the group /tmp/fake-etc/group. */
void agent_harness_private_root(bool copy_ld_cache);

/* ---- processes ------------------------------------------------------------------------------ */

/* A child of this process (by its parent pid in /proc, so also one it took as the subreaper) whose
 * command is comm, or 0. */
pid_t agent_harness_child_named(const char *comm);
