/* SPDX-License-Identifier: MIT */
#include "child-watch.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "log.h"

struct ChildWatch {
        pid_t pid;                        /* 0: reaped */
        sd_event_source *exit_source;     /* owns the pidfd */
        sd_event_source *deadline_source; /* NULL: no deadline, or passed */
        bool timed_out;
        ChildExitFn cb;
        void *userdata;
};

pid_t child_watch_pid(const ChildWatch *w) {
        return w->pid;
}

static int child_watch_on_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ChildWatch *w = userdata;
        int status = 0;
        pid_t r;

        do
                r = waitpid(w->pid, &status, WNOHANG);
        while (r < 0 && errno == EINTR);
        if (r == 0)
                return 0; /* not yet (spurious wakeup) */
        if (r < 0)
                status = W_EXITCODE(127, 0); /* reaped elsewhere: count it as failed */
        w->pid = 0;
        w->exit_source = sd_event_source_disable_unref(w->exit_source);
        w->deadline_source = sd_event_source_disable_unref(w->deadline_source);
        if (w->cb)
                w->cb(w, status, w->timed_out, w->userdata);
        return 0;
}

static int child_watch_on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        ChildWatch *w = userdata;

        w->timed_out = true;
        w->deadline_source = sd_event_source_disable_unref(w->deadline_source);
        if (w->pid > 0)
                (void)kill(w->pid, SIGKILL);
        return 0;
}

ChildWatch *child_watch_free(ChildWatch *w) {
        if (!w)
                return NULL;
        if (w->pid > 0) {
                (void)kill(w->pid, SIGKILL);
                while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        }
        sd_event_source_disable_unref(w->exit_source);
        sd_event_source_disable_unref(w->deadline_source);
        free(w);
        return NULL;
}

int child_watch_new(
        sd_event *event,
        pid_t pid,
        uint64_t timeout_usec,
        ChildExitFn cb,
        void *userdata,
        ChildWatch **ret) {
        _cleanup_(child_watch_freep) ChildWatch *w = NULL;
        _cleanup_close_ int pidfd = -EBADF;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w) {
                (void)kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0);
                return -ENOMEM;
        }
        *w = (ChildWatch){.pid = pid, .cb = cb, .userdata = userdata};

        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0)
                return NEG_ERRNO(); /* the cleanup kills and reaps it */
        r = sd_event_add_io(event, &w->exit_source, pidfd, EPOLLIN, child_watch_on_exit, w);
        if (r < 0)
                return r;
        (void)sd_event_source_set_io_fd_own(w->exit_source, true);
        TAKE_FD(pidfd);
        if (timeout_usec > 0) {
                r = sd_event_add_time_relative(
                        event, &w->deadline_source, CLOCK_MONOTONIC, timeout_usec, 0,
                        child_watch_on_deadline, w);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(w);
        return 0;
}
