/* SPDX-License-Identifier: MIT */
#pragma once

/* The one table from a File REST answer (HTTP status + x-ms-error-code) to a negative errno, and
 * what may be retried. Pure. Transport errors (CURLcode) are mapped in common/http-client.c.
 *
 *   404 *                                        -ENOENT
 *   409 ResourceAlreadyExists/ShareAlreadyExists -EEXIST, DirectoryNotEmpty -ENOTEMPTY,
 *       ReadOnlyAttribute -EACCES, sharing/lock/lease conflicts -EBUSY
 *   412 ConditionNotMet -ESTALE, lease family    -EBUSY
 *   403 *                                        -EACCES
 *   416 InvalidRange                             -ERANGE (a read at EOF is handled by the caller)
 *   400 InvalidFileOrDirectoryPathName -ENAMETOOLONG, Md5Mismatch -EBADMSG, else -EINVAL
 *   413 -EFBIG, 500 OperationTimedOut / 504 -ETIMEDOUT, other 5xx -EIO, 429 -EAGAIN
 *   anything else that is not 2xx                -EIO (unknown 4xx/5xx) or -EPROTO (1xx/3xx) */

#include <stdbool.h>

/* 0 for 2xx; code may be NULL or empty (HEAD errors carry only the header, or nothing). */
int rest_error_to_errno(long status, const char *code);

/* Statuses worth another try: 408, 429, 500, 502, 503, 504. */
bool rest_status_is_retriable(long status);
/* Transport errors worth another try: connection refused/reset/aborted, timeouts, unreachable. */
bool rest_transport_error_is_retriable(int error);
