/* SPDX-License-Identifier: MIT */
#pragma once

/* Intrusive doubly linked lists. An item carries two pointers to items of its own type, whose
 * field names the caller passes (next and prev, state_next and state_prev, ...); the list is a
 * head pointer, NULL when empty. An item that is on no list has both pointers NULL. A list that
 * also keeps its tail does so around these (fs-data.c, Fs.state_tail). */

/* Puts item (on no list) at the front of the list that head points to. */
#define LIST_PREPEND(head, item, next, prev)                                                       \
        do {                                                                                       \
                typeof(item) _item = (item);                                                       \
                _item->prev = NULL;                                                                \
                _item->next = (head);                                                              \
                if (_item->next)                                                                   \
                        _item->next->prev = _item;                                                 \
                (head) = _item;                                                                    \
        } while (0)

/* Takes item off the list that head points to; its pointers are NULL afterwards. */
#define LIST_REMOVE(head, item, next, prev)                                                        \
        do {                                                                                       \
                typeof(item) _item = (item);                                                       \
                if (_item->prev)                                                                   \
                        _item->prev->next = _item->next;                                           \
                else                                                                               \
                        (head) = _item->next;                                                      \
                if (_item->next)                                                                   \
                        _item->next->prev = _item->prev;                                           \
                _item->prev = _item->next = NULL;                                                  \
        } while (0)
