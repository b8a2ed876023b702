/* SPDX-License-Identifier: MIT */
#include <stddef.h>
#include <stdlib.h>

#include <check.h>

#include "list.h"

typedef struct Item {
        int id;
        struct Item *next, *prev;
} Item;

/* Checks that head links ids (front first) both ways, and that the first has no prev. */
static void check_list(const Item *head, const int *ids, size_t n) {
        const Item *last = NULL;
        size_t k = 0;

        for (const Item *i = head; i; i = i->next, k++) {
                ck_assert_uint_lt(k, n);
                ck_assert_int_eq(i->id, ids[k]);
                ck_assert_ptr_eq(i->prev, last);
                last = i;
        }
        ck_assert_uint_eq(k, n);
}

START_TEST(test_prepend_remove) {
        Item a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
        Item *head = NULL;

        LIST_PREPEND(head, &a, next, prev);
        check_list(head, (const int[]){1}, 1);
        LIST_PREPEND(head, &b, next, prev);
        LIST_PREPEND(head, &c, next, prev);
        check_list(head, (const int[]){3, 2, 1}, 3);

        LIST_REMOVE(head, &b, next, prev); /* the middle */
        check_list(head, (const int[]){3, 1}, 2);
        ck_assert_ptr_null(b.next);
        ck_assert_ptr_null(b.prev);
        LIST_REMOVE(head, &a, next, prev); /* the last */
        check_list(head, (const int[]){3}, 1);
        LIST_PREPEND(head, &b, next, prev);
        LIST_REMOVE(head, &b, next, prev); /* the first */
        check_list(head, (const int[]){3}, 1);
        LIST_REMOVE(head, &c, next, prev); /* the only one */
        ck_assert_ptr_null(head);
        ck_assert_ptr_null(c.next);
        ck_assert_ptr_null(c.prev);
}
END_TEST

/* item is evaluated once: an expression with a side effect is safe. */
START_TEST(test_item_evaluated_once) {
        Item items[2] = {{.id = 1}, {.id = 2}};
        Item *head = NULL;
        size_t k = 0;

        LIST_PREPEND(head, &items[k++], next, prev);
        LIST_PREPEND(head, &items[k++], next, prev);
        ck_assert_uint_eq(k, 2);
        check_list(head, (const int[]){2, 1}, 2);
        k = 0;
        LIST_REMOVE(head, &items[k++], next, prev);
        ck_assert_uint_eq(k, 1);
        check_list(head, (const int[]){2}, 1);
}
END_TEST

static Suite *list_suite(void) {
        Suite *s = suite_create("list");
        TCase *tc = tcase_create("list");

        tcase_add_test(tc, test_prepend_remove);
        tcase_add_test(tc, test_item_evaluated_once);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(list_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
