/* SPDX-License-Identifier: MIT */
#include "rest-error.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "macro.h"

typedef struct RestErrorMapping {
        long status;
        const char *code; /* NULL: any code of this status */
        int error;
} RestErrorMapping;

/* First exact (status, code) match wins, then (status, NULL). */
static const RestErrorMapping rest_error_table[] = {
        {400, "InvalidFileOrDirectoryPathName", -ENAMETOOLONG},
        {400, "Md5Mismatch", -EBADMSG},
        {400, NULL, -EINVAL},
        {401, NULL, -EACCES}, /* credentials refused (a bearer token the share does not take) */
        {403, NULL, -EACCES},
        {404, NULL, -ENOENT},
        {405, NULL, -EOPNOTSUPP},
        {408, NULL, -ETIMEDOUT},
        {409, "ResourceAlreadyExists", -EEXIST},
        {409, "ShareAlreadyExists", -EEXIST},
        {409, "DirectoryNotEmpty", -ENOTEMPTY},
        {409, "ReadOnlyAttribute", -EACCES},
        {409, "ResourceTypeMismatch", -ENOTDIR},
        {409, "OperationNotAllowedOnDirectory", -EISDIR},
        {409, NULL, -EBUSY}, /* SharingViolation, DeletePending, FileLockConflict, leases... */
        {411, NULL, -EINVAL},
        {412, "ConditionNotMet", -ESTALE},
        {412, NULL, -EBUSY}, /* LeaseIdMissing and the lease mismatch family */
        {413, NULL, -EFBIG},
        {416, NULL, -ERANGE},
        {429, NULL, -EIO}, /* throttled past the retry budget, as 503; EAGAIN would invite a retry
                              of close() */
        {500, "OperationTimedOut", -ETIMEDOUT},
        {500, NULL, -EIO},
        {501, NULL, -EOPNOTSUPP},
        {503, NULL, -EIO},
        {504, NULL, -ETIMEDOUT},
};

int rest_error_to_errno(long status, const char *code) {
        const RestErrorMapping *any = NULL;

        if (status >= 200 && status <= 299)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(rest_error_table); i++) {
                const RestErrorMapping *m = &rest_error_table[i];
                if (m->status != status)
                        continue;
                if (!m->code) {
                        if (!any)
                                any = m;
                } else if (!isempty(code) && strcaseeq(m->code, code))
                        return m->error;
        }
        if (any)
                return any->error;
        if (status >= 400 && status <= 599)
                return -EIO;
        return -EPROTO;
}

bool rest_status_is_retriable(long status) {
        return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
               status == 504;
}

bool rest_transport_error_is_retriable(int error) {
        switch (error) {
        case -ECONNREFUSED:
        case -ECONNRESET:
        case -ECONNABORTED:
        case -ETIMEDOUT:
        case -EHOSTUNREACH:
        case -ENETUNREACH:
        case -EPIPE:
                return true;
        default:
                return false;
        }
}
