/* SPDX-License-Identifier: MIT */
#pragma once

/* MESSAGE_IDs of azfilesfs's operator events (journalctl MESSAGE_ID=...). Stable: never change or
 * reuse one. Generated with systemd-id128 new. Described in azfilesfs.catalog. */

#define AZFILESFS_MESSAGE_MOUNT_READY "MESSAGE_ID=e18928b9c6274d4194a348e5afabdd20"
#define AZFILESFS_MESSAGE_BACKEND_UNREACHABLE "MESSAGE_ID=d1aad3fa9ec7486986f45ddd370e040b"
#define AZFILESFS_MESSAGE_BACKEND_REACHABLE "MESSAGE_ID=823a65fcac7c40599673d55289d55a53"
