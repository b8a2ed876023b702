/* SPDX-License-Identifier: MIT */
#include "thread-util.h"

#include <signal.h>

int thread_create_unsignalled(pthread_t *ret, void *(*fn)(void *), void *userdata) {
        sigset_t all, saved;
        int r;

        /* The new thread inherits the mask in force when it is created. */
        (void)sigfillset(&all);
        (void)pthread_sigmask(SIG_BLOCK, &all, &saved);
        r = -pthread_create(ret, NULL, fn, userdata);
        (void)pthread_sigmask(SIG_SETMASK, &saved, NULL);
        return r;
}
