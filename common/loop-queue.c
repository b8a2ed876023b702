/* SPDX-License-Identifier: MIT */
#include "loop-queue.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "macro.h"

typedef struct LoopQueueItem {
        struct LoopQueueItem *next;
        LoopQueueFn fn;
        void *userdata;
} LoopQueueItem;

struct LoopQueue {
        sd_event_source *source;
        int efd;
        size_t max;
        pthread_mutex_t lock;
        /* protected by lock: */
        LoopQueueItem *head, *tail;
        size_t n;
        bool closing;
};

static LoopQueueItem *queue_take_all(LoopQueue *q) {
        LoopQueueItem *items;

        (void)pthread_mutex_lock(&q->lock);
        items = q->head;
        q->head = q->tail = NULL;
        q->n = 0;
        (void)pthread_mutex_unlock(&q->lock);
        return items;
}

static void queue_run(LoopQueueItem *items, bool cancelled) {
        while (items) {
                LoopQueueItem *next = items->next;
                items->fn(items->userdata, cancelled);
                free(items);
                items = next;
        }
}

static int queue_on_event(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        LoopQueue *q = userdata;
        uint64_t v;

        /* Read first: a post racing with us pokes again and we come back. */
        (void)read(q->efd, &v, sizeof(v));
        queue_run(queue_take_all(q), false);
        return 0;
}

int loop_queue_new(sd_event *event, size_t max, LoopQueue **ret) {
        LoopQueue *q;
        int r;

        assert(event);
        assert(ret);
        q = calloc(1, sizeof(LoopQueue));
        if (!q)
                return -ENOMEM;
        q->max = max > 0 ? max : 1;
        (void)pthread_mutex_init(&q->lock, NULL);
        q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (q->efd < 0) {
                r = NEG_ERRNO();
                goto fail;
        }
        r = sd_event_add_io(event, &q->source, q->efd, EPOLLIN, queue_on_event, q);
        if (r < 0)
                goto fail;
        (void)sd_event_source_set_description(q->source, "loop-queue");
        *ret = q;
        return 0;
fail:
        (void)loop_queue_free(q);
        return r;
}

LoopQueue *loop_queue_free(LoopQueue *q) {
        if (!q)
                return NULL;
        (void)pthread_mutex_lock(&q->lock);
        q->closing = true;
        (void)pthread_mutex_unlock(&q->lock);
        queue_run(queue_take_all(q), true);
        q->source = sd_event_source_disable_unref(q->source);
        (void)safe_close(q->efd);
        (void)pthread_mutex_destroy(&q->lock);
        free(q);
        return NULL;
}

int loop_queue_post(LoopQueue *q, LoopQueueFn fn, void *userdata) {
        LoopQueueItem *item;
        uint64_t one = 1;
        int r = 0;

        assert(q);
        assert(fn);
        item = malloc(sizeof(LoopQueueItem));
        if (!item)
                return -ENOMEM;
        *item = (LoopQueueItem){.fn = fn, .userdata = userdata};

        (void)pthread_mutex_lock(&q->lock);
        if (q->closing)
                r = -ESHUTDOWN;
        else if (q->n >= q->max)
                r = -EAGAIN;
        else {
                if (q->tail)
                        q->tail->next = item;
                else
                        q->head = item;
                q->tail = item;
                q->n++;
        }
        (void)pthread_mutex_unlock(&q->lock);
        if (r < 0) {
                free(item);
                return r;
        }
        /* An eventfd write only fails when the counter would overflow, i.e. never here. */
        (void)write(q->efd, &one, sizeof(one));
        return 0;
}
