/* SPDX-License-Identifier: MIT */
/* A write from a write-only descriptor goes around the kernel's page cache, so its range of that
 * cache is dropped before the write is answered (fs-data.c, write_try). Dropping a range waits
 * for every page of it that a read holds locked while its request is in flight, and such a read
 * may wait for a Get Range that only the I/O thread completes. A write that had to wait (for the
 * fetch of a piece it covers only in part, or under max_dirty) is retried on the I/O thread:
 * dropping its range there would wait for ever, and with it every request of the mount (the
 * thread sleeps in the kernel, so not even a kill ends the daemon). Such writes are answered here,
 * on a thread of their own, in the order they came; a write answered on a FUSE worker drops its
 * range there, the I/O thread being free to answer the read. */
#include <pthread.h>

#include "fs-internal.h"
#include "thread-util.h"

static void *inval_thread(void *userdata) {
        Fs *fs = userdata;

        fs_lock(fs);
        for (;;) {
                FsWaiter *w = fs->inval_queue;

                if (!w) {
                        if (fs->inval_quit)
                                break;
                        (void)pthread_cond_wait(&fs->inval_cond, &fs->lock);
                        continue;
                }
                fs->inval_queue = w->next;
                if (!fs->inval_queue)
                        fs->inval_tail = NULL;
                fs_unlock(fs);
                (void)fuse_lowlevel_notify_inval_inode(
                        fs->se, w->ino, (off_t)w->off, (off_t)w->len);
                fuse_reply_write(w->req, (size_t)w->len);
                fs_waiter_free(w);
                fs_lock(fs);
        }
        fs_unlock(fs);
        return NULL;
}

void fs_inval_reply_write(Fs *fs, FsWaiter *w) {
        w->next = NULL;
        fs_lock(fs);
        if (fs->inval_tail)
                fs->inval_tail->next = w;
        else
                fs->inval_queue = w;
        fs->inval_tail = w;
        (void)pthread_cond_signal(&fs->inval_cond);
        fs_unlock(fs);
}

int fs_inval_start(Fs *fs) {
        int r;

        (void)pthread_cond_init(&fs->inval_cond, NULL);
        r = thread_create_unsignalled(&fs->inval_thread, inval_thread, fs);
        if (r < 0) {
                (void)pthread_cond_destroy(&fs->inval_cond);
                return r;
        }
        fs->inval_started = true;
        return 0;
}

void fs_inval_stop(Fs *fs) {
        if (!fs->inval_started)
                return;
        fs_lock(fs);
        fs->inval_quit = true;
        (void)pthread_cond_signal(&fs->inval_cond);
        fs_unlock(fs);
        (void)pthread_join(fs->inval_thread, NULL);
        (void)pthread_cond_destroy(&fs->inval_cond);
        fs->inval_started = false;
}
