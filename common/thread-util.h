/* SPDX-License-Identifier: MIT */
#pragma once

#include <pthread.h>

/* pthread_create() of a thread that takes no signals (they stay with the threads that expect
 * them: the FUSE session's, the agent's event loop). 0 or -errno. */
int thread_create_unsignalled(pthread_t *ret, void *(*fn)(void *), void *userdata);
