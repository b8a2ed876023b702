/* SPDX-License-Identifier: MIT */
#pragma once

/* A thread-safe queue of closures drained on the thread that runs an sd-event loop.
 *
 * Any thread calls loop_queue_post(q, fn, userdata): the item is appended under a mutex and an
 * eventfd is poked; the loop thread runs fn(userdata) in order from its eventfd callback. Never
 * runs fn from inside loop_queue_post(), not even on the loop thread, so a caller holding its own
 * locks is never re-entered. The queue is capped: loop_queue_post() fails with -EAGAIN when
 * LoopQueue already holds max items, and then fn is not called (the caller still owns userdata).
 *
 * Freeing (loop thread only) drops what is still queued after calling each item's fn with
 * userdata and cancelled = true, so that owners can release what they posted. */

#include <stdbool.h>
#include <stddef.h>

typedef struct sd_event sd_event;
typedef struct LoopQueue LoopQueue;

typedef void (*LoopQueueFn)(void *userdata, bool cancelled);

int loop_queue_new(sd_event *event, size_t max, LoopQueue **ret);
LoopQueue *loop_queue_free(LoopQueue *q);
static inline void loop_queue_freep(LoopQueue **q) {
        *q = loop_queue_free(*q);
}

/* Thread-safe. 0 on success, -EAGAIN when full, -ENOMEM, -ESHUTDOWN after loop_queue_free()
 * started. */
int loop_queue_post(LoopQueue *q, LoopQueueFn fn, void *userdata);
